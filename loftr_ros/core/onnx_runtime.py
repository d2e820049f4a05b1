"""ONNX Runtime for the matching backends: execution providers in the configured order, the
export cache, and writing a torch module as ONNX.

Providers. ``matcher.providers`` lists ONNX Runtime execution providers, most wanted first, e.g.
``[TensorrtExecutionProvider, CUDAExecutionProvider, CPUExecutionProvider]``; an empty list
means the configured ``device`` (cpu: CPU; cuda or cuda:N: CUDA; auto: CUDA where this
onnxruntime build has it, else CPU). ONNX Runtime runs each graph node on the first provider of
the list that supports it. A provider this onnxruntime build lacks (``pip install
onnxruntime-gpu`` brings CUDA and TensorRT), or that it has but cannot start (missing CUDA
libraries), is a BackendError naming it, or, with ``matcher.provider_fallback``, is left out
with one ProviderFallbackWarning naming it and the providers that run instead.

Cache. Exported graphs live in ``$LOFTR_ROS_CACHE/onnx`` (default
``$XDG_CACHE_HOME/loftr_ros``, i.e. ``~/.cache/loftr_ros``), TensorRT engines that ONNX Runtime
builds from them in ``$LOFTR_ROS_CACHE/tensorrt``. A graph's file name carries the backend, the
export id of the settings that shape the graph, the part of the model and, for graphs of a fixed
size, the model input size: ``eloftr-1a2b3c4d-extract-640x480.onnx``.
"""
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch

from loftr_ros.core.errors import BackendError, ConfigError

CPU = 'CPUExecutionProvider'
CUDA = 'CUDAExecutionProvider'
TENSORRT = 'TensorrtExecutionProvider'
# ONNX opset of the exports (ONNX Runtime >= 1.14 and TensorRT >= 8.6 run it).
OPSET = 17
CACHE_ENV = 'LOFTR_ROS_CACHE'
_INSTALL_HINT = ('pip install onnxruntime (CPU), or onnxruntime-gpu for the CUDA and TensorRT '
                 'providers')


class ProviderFallbackWarning(UserWarning):
    """A configured ONNX Runtime provider is not available and the next ones run instead."""


def import_onnxruntime():
    """The onnxruntime module; BackendError naming the package when it is not installed."""
    try:
        import onnxruntime
    except ModuleNotFoundError:
        msg = f"runtime 'onnxruntime' needs the Python package 'onnxruntime': {_INSTALL_HINT}"
        raise BackendError(msg) from None
    return onnxruntime


def cache_dir() -> Path:
    """The root of the ONNX and TensorRT cache (see the module docstring)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get('XDG_CACHE_HOME') or Path('~/.cache').expanduser()
    return Path(base) / 'loftr_ros'


def device_index(device: str) -> int:
    """The GPU index of a device setting ('cuda:1' -> 1; 'cuda', 'auto' -> 0)."""
    return int(device[5:]) if device.startswith('cuda:') else 0


class ProviderChoice(NamedTuple):
    """The providers a session runs with, most wanted first, and their options."""

    names: List[str]
    options: List[Dict[str, Any]]

    @property
    def uses_gpu(self) -> bool:
        return self.names[0] in (CUDA, TENSORRT)

    @property
    def device(self) -> torch.device:
        """Where the graphs run: cuda:N on the CUDA and TensorRT providers, else cpu."""
        return (torch.device('cuda', self.options[0]['device_id']) if self.uses_gpu
                else torch.device('cpu'))


def choose_providers(requested: Sequence[str], device: str, precision: str, fallback: bool,
                     available: Optional[Sequence[str]] = None) -> ProviderChoice:
    """The providers of a matcher configuration (see the module docstring) among those
    `available` in this onnxruntime build (default: the installed onnxruntime's; BackendError
    naming the package when it is missing).

    Raises BackendError for an unavailable provider unless `fallback`, ConfigError for a
    precision the providers cannot run (fp16 needs TensorRT first; bf16 none). A precision
    fp16 that falls back from TensorRT runs in fp32 (the warning says so).
    """
    if available is None:
        available = import_onnxruntime().get_available_providers()
    names = list(requested)
    if not names:
        if device == 'cpu' or (device == 'auto' and CUDA not in available):
            names = [CPU]
        else:
            names = [CUDA]
    if precision == 'bf16' or (precision == 'fp16' and names[0] != TENSORRT):
        msg = (f"precision '{precision}' with runtime 'onnxruntime' needs "
               f"TensorrtExecutionProvider first in matcher.providers (fp16: its engines "
               f"compute in half precision; the graphs are float32); use precision 'fp32'")
        raise ConfigError(msg)
    missing = [name for name in names if name not in available]
    if missing:
        usable = [name for name in names if name in available]
        if not fallback or not usable:
            msg = (f"onnxruntime provider(s) {', '.join(missing)} not available in this "
                   f"onnxruntime build (available: {', '.join(available)}); {_INSTALL_HINT}"
                   + ('' if fallback else ", or set matcher.provider_fallback to run on the "
                      "next providers of the list"))
            raise BackendError(msg)
        half = (' in fp32 (fp16 needs TensorRT)' if precision == 'fp16' and usable[0] != TENSORRT
                else '')
        warnings.warn(f"onnxruntime provider(s) {', '.join(missing)} not available (available: "
                      f"{', '.join(available)}); running on {', '.join(usable)}{half}",
                      ProviderFallbackWarning, stacklevel=3)
        names = usable
    index = device_index(device)
    options = []
    for name in names:
        if name == TENSORRT:
            # Building an engine takes minutes: ONNX Runtime keeps them, per graph and input
            # shape, for the next start.
            engines = cache_dir() / 'tensorrt'
            options.append({'device_id': index, 'trt_fp16_enable': precision == 'fp16',
                            'trt_engine_cache_enable': True,
                            'trt_engine_cache_path': str(engines),
                            'trt_timing_cache_enable': True,
                            'trt_timing_cache_path': str(engines)})
        elif name == CUDA:
            options.append({'device_id': index})
        else:
            options.append({})
    return ProviderChoice(names, options)


class ProviderStartError(BackendError):
    """ONNX Runtime has the provider but could not start it (its libraries, say)."""


class OnnxGraph:
    """One exported graph in an ONNX Runtime session: numpy arrays in and out by name."""

    def __init__(self, path: Path, providers: ProviderChoice):
        onnxruntime = import_onnxruntime()
        options = onnxruntime.SessionOptions()
        # As many threads as torch uses (OMP_NUM_THREADS, torch.set_num_threads): both runtimes
        # take the same share of the CPU, and compare fairly.
        options.intra_op_num_threads = torch.get_num_threads()
        try:
            self.session = onnxruntime.InferenceSession(
                str(path), options, providers=providers.names, provider_options=providers.options)
        except Exception as error:  # onnxruntime raises its own exception types per failure
            raise BackendError(f'cannot load ONNX graph {path}: {error}') from None
        # ONNX Runtime replaces a provider that fails to start (missing CUDA libraries, say)
        # by the CPU with a printed message: that must not pass for the configured runtime.
        if self.session.get_providers()[0] != providers.names[0]:
            msg = (f'ONNX graph {path.name}: onnxruntime could not start {providers.names[0]} '
                   f'(it would run on {", ".join(self.session.get_providers())}); check its '
                   f'libraries (CUDA, cuDNN, TensorRT) against the onnxruntime-gpu release')
            raise ProviderStartError(msg)
        self.path = path
        self.input_names = [graph_input.name for graph_input in self.session.get_inputs()]
        self.output_names = [output.name for output in self.session.get_outputs()]

    def __call__(self, **inputs: np.ndarray) -> Dict[str, np.ndarray]:
        """Run the graph on the inputs it has (an exported graph may leave out an input its
        computation does not use)."""
        feed = {name: np.asarray(inputs[name]) for name in self.input_names}
        return dict(zip(self.output_names, self.session.run(self.output_names, feed)))


class ExportSpec(NamedTuple):
    """What to trace into one ONNX graph: the module, example inputs (names -> tensors) and
    outputs; `dynamic`: the axes of inputs and outputs that vary (name -> {axis: label})."""

    module: torch.nn.Module
    inputs: Dict[str, torch.Tensor]
    outputs: Tuple[str, ...]
    dynamic: Dict[str, Dict[int, str]]


def export_graph(spec: ExportSpec, path: Path) -> Path:
    """Trace `spec` into an ONNX file at `path`, written whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f'.{path.name}.{os.getpid()}.partial')
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # The TorchScript exporter: the torch.export-based one needs the onnxscript package,
            # which is not a dependency here. Its warnings (its own deprecation, values taken
            # from traced shapes -- intended where a graph has a fixed size --, constant-folding
            # notes) say nothing about these graphs; the tests compare their results with torch.
            warnings.simplefilter('ignore')
            torch.onnx.export(spec.module.eval(), tuple(spec.inputs.values()), str(partial),
                              input_names=list(spec.inputs), output_names=list(spec.outputs),
                              dynamic_axes=spec.dynamic, opset_version=OPSET, dynamo=False)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def export_id(settings: Dict[str, Any]) -> str:
    """Short stable id of the settings that shape a backend's graphs."""
    from loftr_ros import __version__
    text = json.dumps({'settings': settings, 'loftr_ros': __version__, 'opset': OPSET},
                      sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def size_label(sizes: Sequence[Tuple[int, int]]) -> str:
    """'640x480' for one (width, height), '640x480-752x480' for two."""
    return '-'.join(f'{width}x{height}' for width, height in sizes)


def graph_path(directory: Path, backend: str, graph_id: str, part: str,
               sizes: Optional[Sequence[Tuple[int, int]]]) -> Path:
    """Cache file of one graph; `sizes` None for a graph that takes any size."""
    suffix = f'-{size_label(sizes)}' if sizes else ''
    return directory / f'{backend}-{graph_id}-{part}{suffix}.onnx'
