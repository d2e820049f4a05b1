"""The matcher node's parameters: one table with defaults, descriptions, ranges and which ones
change at runtime.

Every parameter is a field of a dataclass declared with :func:`~loftr_ros.core.settings.setting`
(default, help, choices, range, runtime), one per group (``GROUPS``): the ``matcher.*``
parameters are :class:`loftr_ros.core.config.MatcherConfig`'s fields, so the same YAML file
configures the node (``--params-file``) and the offline tools (``load_matcher_config``);
``stereo.*``, ``keyframe.*`` and ``overlay.*`` are those of the components they configure; the
node's own are declared here.
Backend options (``matcher.options`` in the YAML, a nested mapping) arrive as
``matcher.options.<key>`` parameters and are declared from the overrides given.
"""
from dataclasses import dataclass
from typing import Any, Optional

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

from loftr_ros.core.config import OPTIONS, SETTINGS, MatcherConfig
from loftr_ros.core.keyframe import KeyframePolicy
from loftr_ros.core.settings import Setting, defaults_of, setting, settings_of
from loftr_ros.core.sync import StereoPairing
from loftr_ros.core.tracking.config import TracksSettings
from loftr_ros.ros.overlay import OverlaySettings

OPTIONS_PREFIX = f'matcher.{OPTIONS}.'


@dataclass(frozen=True)
class ParameterSpec:
    name: str
    default: Any
    setting: Setting

    @property
    def read_only(self) -> bool:
        """Read at start only; the others change while the node runs (validated by it)."""
        return not self.setting.runtime

    def descriptor(self) -> ParameterDescriptor:
        # Dynamic typing hands a value of the wrong type to `check`, which names the parameter
        # and both types in words; rclpy's own check says only "expected '3' got '2'".
        descriptor = ParameterDescriptor(description=self.setting.describe(),
                                         read_only=self.read_only, dynamic_typing=True)
        if self.setting.value_range is not None:
            low, high = self.setting.value_range
            if isinstance(self.default, float):
                descriptor.floating_point_range = [
                    FloatingPointRange(from_value=float(low), to_value=float(high), step=0.0)]
            else:
                descriptor.integer_range = [
                    IntegerRange(from_value=int(low), to_value=int(high), step=1)]
        return descriptor

    def check(self, value) -> Optional[str]:
        """None when `value` is valid, else the reason it is not (a value of another type in
        words: parameters are typed, so a double parameter refuses the integer 1)."""
        if self.setting.kind is list and value is None:
            return None  # an empty list arrives unset (see declare_parameters)
        return self.setting.check_parameter(self.name, value)


@dataclass(frozen=True)
class NodeSettings:
    """The node's own top-level parameters (how it subscribes)."""

    mode: str = setting(
        'consecutive', 'consecutive: one image topic, each frame matched to the keyframe or the '
        'previous frame; stereo: left and right topics paired by stamp; tracks: feature tracks '
        'with persistent ids (~/tracks, ~/feature) on one image topic or, with tracks.stereo, '
        'a stereo pair.', choices=('consecutive', 'stereo', 'tracks'))
    transport: str = setting(
        'raw', "raw: sensor_msgs/Image on the image topics; compressed: "
        "sensor_msgs/CompressedImage on '<topic>/compressed'.", choices=('raw', 'compressed'))
    qos_reliability: str = setting(
        'best_effort', 'Reliability of the image subscriptions (sensor data is best effort).',
        choices=('best_effort', 'reliable'))
    qos_depth: int = setting(1, 'History depth of the image subscriptions.',
                             value_range=(1, 100))
    use_camera_info: bool = setting(
        False, 'Subscribe to camera_info per camera and use the intrinsics for essential '
        'verification (matcher.geometry: essential) and, in tracks mode, the undistorted '
        'coordinates of ~/tracks and ~/feature.')
    mask: str = setting(
        '', 'Path of a mask image (PNG; nonzero = usable, e.g. black over the robot\'s own body) '
        'applied to every image: no keypoint, match or track lies in a masked pixel. Every image '
        'must have its size. Empty: none.')
    use_mask_topic: bool = setting(
        False, "Subscribe to a mask per camera (sensor_msgs/Image mono8 on 'mask' beside "
        "'image', or 'left/mask' and 'right/mask'; nonzero = usable, as Isaac ROS VSLAM's "
        'seg_mask): the latest one applies to each frame, with the mask parameter\'s.')


@dataclass(frozen=True)
class ConsecutiveSettings:
    """The ``consecutive.*`` parameters (consecutive mode only)."""

    reference: str = setting(
        'keyframe', 'Match each frame to the keyframe (replaced when matches or overlap drop) or '
        'to the previous frame.', choices=('keyframe', 'previous'))


@dataclass(frozen=True)
class DiagnosticsSettings:
    """The ``diagnostics.*`` parameters."""

    period: float = setting(1.0, 'Seconds between /diagnostics messages.',
                            value_range=(0.01, 3600.0))


# The node's parameters by group: name prefix and the dataclass that declares them, each setting
# once (default, help, range, runtime); the YAML files and the README follow in this order.
GROUPS = (('', NodeSettings), ('stereo.', StereoPairing), ('consecutive.', ConsecutiveSettings),
          ('keyframe.', KeyframePolicy), ('tracks.', TracksSettings),
          ('overlay.', OverlaySettings), ('diagnostics.', DiagnosticsSettings),
          ('matcher.', MatcherConfig))

PARAMETERS = tuple(
    ParameterSpec(prefix + name, default, settings_of(declaration)[name])
    for prefix, declaration in GROUPS for name, default in defaults_of(declaration).items()
    # The options mapping has no fixed names (see declare_parameters).
    if (declaration, name) != (MatcherConfig, OPTIONS))

SPECS = {spec.name: spec for spec in PARAMETERS}


def declare_parameters(node):
    """Declare every parameter of the table, plus matcher.options.* given as overrides."""
    for spec in PARAMETERS:
        # ROS 2 parameters have no empty array (an empty YAML list arrives unset): an empty
        # list is declared unset, which reads as None until a list is given.
        default = None if spec.default == [] else spec.default
        node.declare_parameter(spec.name, default, spec.descriptor())
    # Options have no fixed names, so they are declared from the --ros-args/params-file
    # overrides, which rclpy keeps in this attribute (Humble to Kilted) and offers no getter for.
    for name, override in node._parameter_overrides.items():
        if name.startswith(OPTIONS_PREFIX):
            node.declare_parameter(name, override.value, ParameterDescriptor(
                description=SETTINGS[OPTIONS].help, read_only=True))


def matcher_config_from_parameters(node) -> MatcherConfig:
    """The MatcherConfig the node's matcher.* parameters describe (ConfigError if invalid)."""
    values = {spec.name[len('matcher.'):]: node.get_parameter(spec.name).value
              for spec in PARAMETERS if spec.name.startswith('matcher.')}
    # An empty list arrives as None (see declare_parameters).
    values['providers'] = values['providers'] or []
    values['options'] = {name: parameter.value for name, parameter in
                         node.get_parameters_by_prefix(OPTIONS_PREFIX[:-1]).items()}
    return MatcherConfig.from_dict(values)
