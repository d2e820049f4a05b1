"""The ONNX Runtime runtime of a backend (``matcher.runtime: onnxruntime``).

A backend that has one defines, in its own module, a subclass of :class:`OnnxBackend` and of its
torch backend: ``class XFeatOnnxBackend(OnnxBackend, XFeatBackend)``. It inherits the torch
backend's class settings (stride, resize, refinement, options) and its code around the model,
and replaces the model calls (``extract_batch``, the matching step) by ONNX graphs. The torch
backend exports those graphs (``onnx_export(part, sizes)``) once, into the cache of
:mod:`loftr_ros.core.onnx_runtime`; the ONNX backend loads them from there without building the
torch model, or exports what is missing first (with a warning: ``loftr-ros export`` does it
ahead of time). Features travel as CPU tensors made from the graphs' numpy outputs.

Graphs of a fixed size (``any_size = False``: EfficientLoFTR, whose position encoding is baked
in per size) are exported per model input size; ``warmup_sizes`` then lists the sizes already
in the cache, so that a matcher loads and warms up those at start (and ONNX Runtime builds their
TensorRT engines there, not at the first camera frame).
"""
import warnings
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch

from loftr_ros.core.backends.base import Backend
from loftr_ros.core.errors import ConfigError
from loftr_ros.core.onnx_runtime import (OnnxGraph, ProviderChoice, ProviderFallbackWarning,
                                         ProviderStartError, cache_dir, export_graph, export_id,
                                         graph_path)

Size = Tuple[int, int]


class OnnxExportWarning(UserWarning):
    """A graph was not in the cache and is being exported while the matcher runs."""


class OnnxBackend(Backend):
    """Base of the ONNX Runtime backends (see the module docstring)."""

    # The torch backend that exports the graphs (also a base class of the subclass).
    torch_backend = Backend
    # True: the graphs take any model input size (dynamic axes); False: one file per size.
    any_size = False
    # Options that only concern the torch runtime; a non-default value is a ConfigError here.
    torch_only_options: Dict[str, object] = {}

    def __init__(self, weights: str, options: Mapping[str, Any], providers: ProviderChoice,
                 provider_fallback: bool = False):
        # The graphs exchange float32 arrays; TensorRT's fp16 mode is inside its engines.
        Backend.__init__(self, weights, options, providers.device, torch.float32)
        self.providers = providers
        self.provider_fallback = provider_fallback
        self.weights_setting = weights
        for key, default in self.torch_only_options.items():
            if self.conf[key] not in (default, False):
                msg = (f"{self.name} backend: option {key} is for runtime 'torch', not "
                       f"'onnxruntime' (got {self.conf[key]!r})")
                raise ConfigError(msg)
        self.directory = cache_dir() / 'onnx'
        self.graph_id = export_id(self.graph_settings())
        self._graphs: Dict[Tuple[str, Optional[Tuple[Size, ...]]], OnnxGraph] = {}
        self._exporter: Optional[Backend] = None

    @property
    def model_name(self) -> str:
        return f'{self.torch_backend.model_name.fget(self)} (onnxruntime)'

    @property
    def input_device(self) -> torch.device:
        return torch.device('cpu')

    @property
    def loaded_graphs(self) -> List[Path]:
        """The graphs loaded so far (at warm-up, or on first use)."""
        return [graph.path for graph in self._graphs.values()]

    def graph_settings(self) -> dict:
        """Everything that shapes this backend's graphs (its export id is made from it)."""
        return {'backend': self.name, 'weights': self.weights_setting, 'options': self.conf}

    def graph_parts(self, sizes: Sequence[Size]) -> List[Tuple[str, Optional[Tuple[Size, ...]]]]:
        """(part, sizes) of each graph that matching images of these model input sizes uses;
        sizes None for a graph that takes any size."""
        raise NotImplementedError

    def graph_file(self, part: str, sizes: Optional[Tuple[Size, ...]]) -> Path:
        return graph_path(self.directory, self.name, self.graph_id, part, sizes)

    def graph(self, part: str, *sizes: Size) -> OnnxGraph:
        """The session of one graph, loaded on first use (exported first when not cached)."""
        key = (part, None if self.any_size else sizes)
        if key not in self._graphs:
            path = self.graph_file(*key)
            if not path.exists():
                warnings.warn(f'{path.name} is not in {self.directory}: exporting it now (run '
                              f'`loftr-ros export` beforehand to start without this delay)',
                              OnnxExportWarning, stacklevel=2)
                self._export(*key)
            self._graphs[key] = self._load(path)
        return self._graphs[key]

    def _load(self, path: Path) -> OnnxGraph:
        """A graph's session; with provider_fallback, a provider that fails to start is left
        out (one warning) for this graph and the next ones."""
        while True:
            try:
                return OnnxGraph(path, self.providers)
            except ProviderStartError as error:
                names, options = self.providers
                if not self.provider_fallback or len(names) == 1:
                    raise
                warnings.warn(f'{error}; running on {", ".join(names[1:])}',
                              ProviderFallbackWarning, stacklevel=3)
                self.providers = ProviderChoice(names[1:], options[1:])
                self.device = self.providers.device

    def export(self, sizes: Sequence[Size], force: bool = False) -> List[Path]:
        """Write the graphs that matching images of these model input sizes (width, height) uses
        into the cache (all of them with `force`, else those missing); returns their paths."""
        paths = []
        for part, part_sizes in self.graph_parts(sizes):
            path = self.graph_file(part, part_sizes)
            if force or not path.exists():
                self._export(part, part_sizes)
            paths.append(path)
        return paths

    def _export(self, part: str, sizes: Optional[Tuple[Size, ...]]) -> Path:
        if self._exporter is None:
            # The torch model, on the CPU in float32: the graphs do not depend on the device.
            self._exporter = self.torch_backend(self.weights_setting, self.conf,
                                                torch.device('cpu'), torch.float32)
        return export_graph(self._exporter.onnx_export(part, sizes),
                            self.graph_file(part, sizes))

    def cached_sizes(self) -> List[Size]:
        """Model input sizes whose 'extract' graph is in the cache (fixed-size graphs only)."""
        prefix = f'{self.name}-{self.graph_id}-extract-'
        sizes = []
        for path in sorted(self.directory.glob(f'{prefix}*.onnx')):
            width, height = path.stem[len(prefix):].split('x')
            sizes.append((int(width), int(height)))
        return sizes

    def warmup_sizes(self, default: Tuple[int, int], long_side: int) -> List[Tuple[int, int]]:
        if self.any_size:
            return [default]
        # A cached size is its own model input when its long side is the matcher's.
        sizes = [(width, height) for width, height in self.cached_sizes()
                 if long_side in (0, max(width, height))]
        if not sizes:
            warnings.warn(f'no {self.name} graphs of this configuration in {self.directory}: '
                          f'the first image of each size exports them (`loftr-ros export '
                          f'--size WxH` does it ahead of time)', OnnxExportWarning, stacklevel=2)
        return sizes
