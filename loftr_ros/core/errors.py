"""Error types of loftr_ros, one per boundary.

Callers (the node, the CLIs) catch :class:`LoftrRosError` subclasses and report them; anything
else is a bug and propagates.
"""
from typing import Iterable


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

    # The cause the node's diagnostics and the bag tools' skip lists count it under.
    cause = 'bad_image'


class ImageTooLargeError(ImageError):
    """An input image is above a resource limit (pixels or compressed bytes): refused before it
    is decoded or converted."""

    cause = 'image_too_large'


class MaskError(ImageError):
    """A mask does not fit its image (another size): the image cannot be used with it."""

    cause = 'bad_mask'


class BagError(LoftrRosError):
    """A bag cannot be read or written (missing topic, corrupt file)."""


class MatchingProcessError(LoftrRosError):
    """The matching process (core.matching_process) ended or failed: a crash, a kill, or a bug
    in the model code; its matches cannot be trusted any more."""


def check_known_keys(keys: Iterable[str], valid: Iterable[str], owner: str) -> None:
    """ConfigError naming the keys not in `valid`, and the valid ones, if there are any."""
    valid = sorted(valid)
    # str(): a YAML key may be a number, and must be named like any other.
    unknown = sorted(str(key) for key in set(keys) - set(valid))
    if unknown:
        msg = (f"unknown option(s) {', '.join(unknown)} for {owner}; "
               f"valid: {', '.join(valid) or '(none)'}")
        raise ConfigError(msg)
