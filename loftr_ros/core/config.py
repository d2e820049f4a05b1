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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml

from loftr_ros.core.backends import BACKENDS as BACKEND_REGISTRY
from loftr_ros.core.errors import ConfigError, check_known_keys

# The registry's names, in its order (importing the registry imports no model code).
BACKENDS = tuple(BACKEND_REGISTRY)
DEVICES_HELP = "'auto', 'cpu', 'cuda' or 'cuda:N'"
PRECISIONS = ('fp32', 'fp16', 'bf16')
GEOMETRY_MODELS = ('none', 'fundamental', 'essential', 'homography')
REFINEMENTS = ('auto', 'none', 'ncc')
# Settings that only act on the matching of each pair: they change while a Matcher runs.
RUNTIME_FIELDS = ('confidence_threshold', 'max_matches')


@dataclass(frozen=True)
class MatcherConfig:
    # Backend name, one of BACKENDS. eloftr is the default on robots (needs its weights);
    # xfeat and opencv run offline on any CPU.
    backend: str = 'eloftr'
    # Weights: '' for the backend's default, else a hub id or a local file/directory.
    weights: str = ''
    # 'auto' picks cuda when available, else cpu.
    device: str = 'auto'
    # fp16/bf16 on CUDA; bf16 also on a CPU for backends with cpu_bf16 (a ConfigError otherwise).
    precision: str = 'fp32'
    # Long side in pixels the images are resized to before the model (aspect kept);
    # 0 keeps the original size, -1 uses the backend's own default.
    resize: int = -1
    # Matches with a lower confidence are dropped (backend scores are in [0, 1]).
    confidence_threshold: float = 0.2
    # Keep at most this many matches, best scores first; 0 keeps all.
    max_matches: int = 0
    # Sub-pixel refinement of each match's image-1 keypoint against its image-0 patch: 'ncc'
    # (see loftr_ros.core.refinement), 'none', or 'auto' for the backend's default (ncc for the
    # detectors that place keypoints on whole pixels: xfeat, lightglue, ORB, hf's SuperPoint
    # models; none for SIFT and the LoFTR family, which are sub-pixel already).
    refinement: str = 'auto'
    # Geometric verification giving the inlier mask: none, fundamental, essential (needs camera
    # matrices, falls back to fundamental without them) or homography.
    geometry: str = 'none'
    # RANSAC (USAC MAGSAC) inlier threshold in pixels and confidence.
    ransac_threshold: float = 1.0
    ransac_confidence: float = 0.999
    # Run one dummy pair at load so that the first real pair is not slow.
    warmup: bool = True
    # Backend-specific options (each backend documents its own DEFAULT_CONF); unknown keys
    # raise a ConfigError listing the valid ones.
    options: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise ConfigError(f"unknown backend '{self.backend}', valid: {', '.join(BACKENDS)}")
        device = self.device
        if not (device in ('auto', 'cpu', 'cuda') or
                (device.startswith('cuda:') and device[5:].isdigit())):
            raise ConfigError(f"invalid device '{device}', valid: {DEVICES_HELP}")
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"invalid precision '{self.precision}', valid: {', '.join(PRECISIONS)}")
        if self.geometry not in GEOMETRY_MODELS:
            raise ConfigError(
                f"invalid geometry '{self.geometry}', valid: {', '.join(GEOMETRY_MODELS)}")
        if self.refinement not in REFINEMENTS:
            raise ConfigError(
                f"invalid refinement '{self.refinement}', valid: {', '.join(REFINEMENTS)}")
        if self.resize < -1:
            raise ConfigError(f'resize must be -1, 0 or a long side in pixels, got {self.resize}')
        if not 0.0 <= self.confidence_threshold <= 1.0:
            raise ConfigError(
                f'confidence_threshold must be in [0, 1], got {self.confidence_threshold}')
        if self.max_matches < 0:
            raise ConfigError(f'max_matches must be >= 0, got {self.max_matches}')
        if self.ransac_threshold <= 0 or not 0 < self.ransac_confidence < 1:
            raise ConfigError('ransac_threshold must be > 0 and ransac_confidence in (0, 1)')

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> 'MatcherConfig':
        check_known_keys(values, (f.name for f in dataclasses.fields(cls)), 'the matcher')
        values = dict(values)
        values['options'] = dict(values.get('options') or {})
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
        """Short stable id of everything that changes the matches (not device or warmup)."""
        relevant = self.to_dict()
        for name in ('device', 'warmup'):
            relevant.pop(name)
        text = json.dumps(relevant, sort_keys=True, default=str)
        return hashlib.sha1(text.encode()).hexdigest()[:8]


def matcher_section(document: Dict[str, Any], source: str) -> Dict[str, Any]:
    """The ``matcher`` mapping of a plain or ROS-parameters YAML document."""
    if not isinstance(document, dict):
        raise ConfigError(f'{source}: expected a YAML mapping')
    if 'matcher' in document:
        section = document['matcher']
    else:
        nodes = [v['ros__parameters'] for v in document.values()
                 if isinstance(v, dict) and isinstance(v.get('ros__parameters'), dict)]
        sections = [params['matcher'] for params in nodes if 'matcher' in params]
        if not sections:
            raise ConfigError(f"{source}: no 'matcher' section (plain or under ros__parameters)")
        section = sections[0]
    if not isinstance(section, dict):
        raise ConfigError(f"{source}: 'matcher' must be a mapping")
    return section


def load_matcher_config(path: Optional[str], **overrides) -> MatcherConfig:
    """Read the matcher section of a YAML file (or the defaults when path is None), then apply
    the overrides whose value is not None (CLI options)."""
    values: Dict[str, Any] = {}
    if path is not None:
        try:
            document = yaml.safe_load(Path(path).read_text())
        except OSError as error:
            raise ConfigError(f'cannot read config file {path}: {error.strerror}') from None
        except yaml.YAMLError as error:
            raise ConfigError(f'config file {path} is not valid YAML: {error}') from None
        values = dict(matcher_section(document, str(path)))
    values.update({k: v for k, v in overrides.items() if v is not None})
    return MatcherConfig.from_dict(values)
