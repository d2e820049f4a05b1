"""Matcher configuration shared by the node's parameters, the YAML files and the CLIs.

One YAML file serves all of them. It is either a plain mapping with a ``matcher`` section::

    matcher:
      backend: xfeat
      max_matches: 1000

or a ROS 2 parameters file, where the same section sits under ``<node>: ros__parameters``
(``config/*.yaml`` are of that form, so
``loftr-ros eval --config config/stereo_matcher.yaml`` runs the exact settings of the node).
"""
import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml

from loftr_ros.core.backends import BACKENDS as BACKEND_REGISTRY
from loftr_ros.core.backends import RUNTIMES
from loftr_ros.core.errors import ConfigError, check_known_keys
from loftr_ros.core.settings import check_fields, setting, settings_of

# The registry's names, in its order (importing the registry imports no model code).
BACKENDS = tuple(BACKEND_REGISTRY)
DEVICES = "'auto', 'cpu', 'cuda' or 'cuda:N'"


def _with_onnxruntime(config: 'MatcherConfig') -> bool:
    """Whether the runtime settings count in config_id: only off torch, so that the ids of
    torch configurations stay what they were before there was another runtime."""
    return config.runtime != 'torch'


@dataclass(frozen=True)
class MatcherConfig:
    """Every setting of the Matcher, each declared once with its help text and valid values
    (see :mod:`loftr_ros.core.settings`): the node's ``matcher.*`` parameters, the ``matcher``
    section of the YAML files, the tools' flags and the README table follow from here."""

    backend: str = setting(
        'eloftr', 'Matching backend. eloftr is the default on robots (needs its weights); xfeat, '
        'opencv and klt run offline on any CPU (klt: corners followed by optical flow, for small '
        'motions and baselines).', choices=BACKENDS)
    weights: str = setting(
        '', "Weights: '' for the backend's default, else a hub id or a local file or directory.")
    device: str = setting(
        'auto', f'Device: {DEVICES}; auto picks cuda when available, else cpu.',
        identifies=False)
    precision: str = setting(
        'fp32', 'Inference precision: fp16/bf16 on CUDA; bf16 also on a CPU for eloftr (3x '
        'faster on CPUs with AMX, slower without bfloat16 instructions).',
        choices=('fp32', 'fp16', 'bf16'))
    resize: int = setting(
        -1, 'Long side in pixels the images are resized to for the model (aspect kept); 0 keeps '
        'the original size, -1 the backend default.', value_range=(-1, 16384))
    confidence_threshold: float = setting(
        -1.0, "Matches with a lower confidence (scores are in [0, 1]) are dropped; -1: the "
        "backend's own default (a score means something else to each model; each backend "
        'module states its default_confidence_threshold and why).',
        value_range=(-1.0, 1.0), runtime=True)
    max_matches: int = setting(
        0, 'Keep at most this many matches, best scores first; 0 keeps all.',
        value_range=(0, 1_000_000), runtime=True)
    refinement: str = setting(
        'auto', "Sub-pixel refinement of each match's image-1 keypoint against its image-0 "
        "patch (ncc: normalized cross-correlation, see loftr_ros.core.refinement); auto: the "
        "backend's default, ncc for detectors that place keypoints on whole pixels (xfeat, "
        "lightglue, ORB, hf's SuperPoint models), none for SIFT and the LoFTR family.",
        choices=('auto', 'none', 'ncc'))
    geometry: str = setting(
        'none', 'Geometric verification giving the inlier mask (essential needs camera '
        'matrices and falls back to fundamental without them).',
        choices=('none', 'fundamental', 'essential', 'homography'))
    ransac_threshold: float = setting(
        1.0, 'RANSAC (USAC MAGSAC) inlier threshold in pixels.', value_range=(1e-6, 1000.0))
    ransac_confidence: float = setting(
        0.999, 'RANSAC (USAC MAGSAC) confidence.', value_range=(1e-6, 0.999999))
    warmup: bool = setting(
        True, 'Match a warm-up pair at load (640x480, through every stage) so that the first '
        'real pair is not slow; a new image size costs its first pair only the creation of '
        'its kernels (benchmarks/results/bench_warm_start_cpu.md).', identifies=False)
    # On a CPU shared with other work (a robot's VIO, other nodes) every OpenMP region waits for
    # its slowest thread: an XFeat pair took 38 s with two threads and 3 s with one on the loaded
    # 2-core machine (benchmarks/results/choose_defaults_cpu.md).
    threads: int = setting(
        0, "CPU threads of the model: torch's intra-op threads, which ONNX Runtime follows; 0 "
        "leaves the libraries' default (one per core). Set for the whole process that builds "
        "the matcher (the node's matching process is its own).", value_range=(0, 1024),
        identifies=False)
    # The limits bound the node's memory (README: peak memory per image size and backend,
    # measured by benchmarks/bench_memory.py): 4096x4096 takes every common robot camera (4K
    # UHD, 12 MP 4000x3000) and peaked below 4.5 GiB with eloftr, xfeat and SIFT; 24 MP passed
    # 6 GiB with SIFT at native resolution. An incompressible 8-bit colour PNG at the pixel
    # limit is 50 MB.
    max_image_pixels: int = setting(
        4096 * 4096, 'Larger images (width x height) are refused before they are decoded or '
        'converted, counted as image_too_large.', value_range=(1, 10**12), runtime=True,
        identifies=False)
    max_compressed_bytes: int = setting(
        64 * 2**20, 'Larger JPEG/PNG payloads are refused before they are decoded, counted as '
        'image_too_large.', value_range=(1, 2**40), runtime=True, identifies=False)
    runtime: str = setting(
        'torch', 'What runs the model: torch, or onnxruntime (eloftr and xfeat) on ONNX graphs '
        'exported into a cache by `loftr-ros export` (see loftr_ros.core.onnx_runtime).',
        choices=RUNTIMES, identifies=_with_onnxruntime)
    providers: List[str] = setting(
        default_factory=list, help='onnxruntime: execution providers, most wanted first, e.g. '
        '[TensorrtExecutionProvider, CUDAExecutionProvider, CPUExecutionProvider]; empty: from '
        'device (CPU, or CUDA on cuda and, where onnxruntime has it, on auto).',
        identifies=_with_onnxruntime)
    provider_fallback: bool = setting(
        False, 'onnxruntime: leave out a listed provider this machine lacks or cannot start, '
        'with one warning, instead of stopping with an error naming it.',
        identifies=_with_onnxruntime)
    options: Dict[str, Any] = setting(
        default_factory=dict, help="Backend options, key by key (each backend module's "
        'commented DEFAULT_CONF); an unknown key is an error listing the valid ones.')

    def __post_init__(self):
        check_fields(self)
        if -1.0 < self.confidence_threshold < 0.0:
            raise ConfigError(f"confidence_threshold must be in [0, 1] or -1 (the backend's "
                              f'default), got {self.confidence_threshold}')
        device = self.device
        if not (device in ('auto', 'cpu', 'cuda') or
                (device.startswith('cuda:') and device[5:].isdigit())):
            raise ConfigError(f"invalid device '{device}', valid: {DEVICES}")
        if not all(self.providers):  # a list of strings (check_fields)
            raise ConfigError(f'providers must be onnxruntime provider names, got '
                              f'{self.providers!r}')

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> 'MatcherConfig':
        check_known_keys(values, (f.name for f in dataclasses.fields(cls)), 'the matcher')
        values = dict(values)
        options = values.get('options')
        if options is None or isinstance(options, dict):
            values['options'] = dict(options or {})
        if isinstance(values.get('providers'), (list, tuple)):
            values['providers'] = list(values['providers'])
        try:
            return cls(**values)
        except TypeError as error:
            raise ConfigError(f'invalid matcher configuration: {error}') from None

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes) -> 'MatcherConfig':
        return dataclasses.replace(self, **changes)

    def differences(self, other: 'MatcherConfig') -> List[str]:
        """Names of the fields whose values differ from `other`'s, in declaration order."""
        return [f.name for f in dataclasses.fields(self)
                if getattr(self, f.name) != getattr(other, f.name)]

    @property
    def config_id(self) -> str:
        """Short stable id of everything that changes the matches: the settings declared as
        identifying them (``identifies``; not the device, warmup or the input limits)."""
        relevant = {name: value for name, value in self.to_dict().items()
                    if SETTINGS[name].identifies_in(self)}
        text = json.dumps(relevant, sort_keys=True, default=str)
        return hashlib.sha1(text.encode()).hexdigest()[:8]


SETTINGS = settings_of(MatcherConfig)

# The field holding the backend's own options: a mapping, not one value.
OPTIONS = 'options'
# Settings that only act on the matching of each pair: they change while a Matcher runs.
RUNTIME_FIELDS = tuple(name for name, spec in SETTINGS.items() if spec.runtime)


def config_section(document: Any, name: str, source: str, required: bool = True,
                   ) -> Dict[str, Any]:
    """The `name` mapping (``matcher``, ``tracks``) of a plain or ROS-parameters YAML document;
    an empty one when the document has none and it is not `required`."""
    if not isinstance(document, dict):
        raise ConfigError(f'{source}: expected a YAML mapping')
    if name in document:
        section = document[name]
    else:
        nodes = [v['ros__parameters'] for v in document.values()
                 if isinstance(v, dict) and isinstance(v.get('ros__parameters'), dict)]
        sections = [params[name] for params in nodes if name in params]
        if not sections and required:
            raise ConfigError(f"{source}: no '{name}' section (plain or under ros__parameters)")
        section = sections[0] if sections else {}
    if not isinstance(section, dict):
        raise ConfigError(f"{source}: '{name}' must be a mapping")
    return section


def matcher_section(document: Dict[str, Any], source: str) -> Dict[str, Any]:
    """The ``matcher`` mapping of a plain or ROS-parameters YAML document."""
    return config_section(document, 'matcher', source)


def read_config_file(path) -> Any:
    """The YAML document of a config file; ConfigError when it cannot be read or parsed."""
    try:
        return yaml.safe_load(Path(path).read_text())
    except OSError as error:
        raise ConfigError(f'cannot read config file {path}: {error.strerror}') from None
    except yaml.YAMLError as error:
        raise ConfigError(f'config file {path} is not valid YAML: {error}') from None


def load_matcher_config(path: Optional[str], **overrides) -> MatcherConfig:
    """Read the matcher section of a YAML file (or the defaults when path is None), then apply
    the overrides whose value is not None (CLI options)."""
    values: Dict[str, Any] = {}
    if path is not None:
        values = dict(matcher_section(read_config_file(path), str(path)))
    values.update({k: v for k, v in overrides.items() if v is not None})
    return MatcherConfig.from_dict(values)
