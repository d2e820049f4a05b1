"""Error types of loftr_ros, one per boundary.

Callers (the node, the CLIs) catch :class:`LoftrRosError` subclasses and report them; anything
else is a bug and propagates.
"""


class LoftrRosError(Exception):
    """Base class of every error loftr_ros raises on purpose."""


class ConfigError(LoftrRosError):
    """A configuration value (YAML, parameter, CLI option) is invalid."""


class BackendError(LoftrRosError):
    """A matching backend cannot be built: missing dependency, weights, device or precision."""


class WeightsError(BackendError):
    """Model weights cannot be found, downloaded or loaded."""


class ImageError(LoftrRosError):
    """An input image cannot be decoded or converted (encoding, size, corrupt data)."""


class BagError(LoftrRosError):
    """A bag cannot be read or written (missing topic, corrupt file)."""
