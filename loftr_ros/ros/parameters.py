"""The matcher node's parameters: one table with defaults, descriptions, ranges and which ones
change at runtime.

The ``matcher.*`` parameters are the fields of :class:`loftr_ros.core.config.MatcherConfig`,
derived from its declarations (default, help, choices, range, runtime), so the same YAML file
configures the node (``--params-file``) and the offline tools (``load_matcher_config``). The
node's own parameters are declared here the same way (:class:`~loftr_ros.core.settings.Setting`).
Backend options (``matcher.options`` in the YAML, a nested mapping) arrive as
``matcher.options.<key>`` parameters and are declared from the overrides given.
"""
from dataclasses import dataclass
from typing import Any, Optional

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

from loftr_ros.core.config import OPTIONS, SETTINGS, MatcherConfig
from loftr_ros.core.settings import Setting, defaults_of

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
        return self.setting.check(self.name, value, exact=True)


def _node_parameter(name, default, help, **values) -> ParameterSpec:
    return ParameterSpec(name, default, Setting(help, kind=type(default), **values))


PARAMETERS = (
    _node_parameter('mode', 'consecutive',
                    'consecutive: one image topic, each frame matched to the keyframe or the '
                    'previous frame; stereo: left and right topics paired by stamp.',
                    choices=('consecutive', 'stereo')),
    _node_parameter('transport', 'raw',
                    "raw: sensor_msgs/Image on the image topics; compressed: "
                    "sensor_msgs/CompressedImage on '<topic>/compressed'.",
                    choices=('raw', 'compressed')),
    _node_parameter('qos_reliability', 'best_effort',
                    'Reliability of the image subscriptions (sensor data is best effort).',
                    choices=('best_effort', 'reliable')),
    _node_parameter('qos_depth', 1, 'History depth of the image subscriptions.',
                    value_range=(1, 100)),
    _node_parameter('use_camera_info', False,
                    'Subscribe to camera_info per camera and use the intrinsics for essential '
                    'verification (matcher.geometry: essential).'),
    _node_parameter('stereo.slop', 0.0,
                    'Largest stamp difference in seconds for a left/right pair (0: exact).',
                    value_range=(0.0, 1.0)),
    _node_parameter('stereo.queue_size', 10,
                    'Frames per side waiting for their partner before the oldest is dropped.',
                    value_range=(1, 1000)),
    _node_parameter('consecutive.reference', 'keyframe',
                    'Match each frame to the keyframe (replaced when matches or overlap drop) '
                    'or to the previous frame.', choices=('keyframe', 'previous')),
    _node_parameter('keyframe.min_matches', 100,
                    'Replace the keyframe when fewer (inlier) matches remain.',
                    runtime=True, value_range=(0, 1_000_000)),
    _node_parameter('keyframe.min_overlap', 0.5,
                    'Replace the keyframe when the matches cover less than this fraction of the '
                    'current image.', runtime=True, value_range=(0.0, 1.0)),
    _node_parameter('overlay.max_rate', 5.0,
                    'Overlay images per second at most (only drawn while ~/overlay has a '
                    'subscriber); 0 disables the overlay.', runtime=True,
                    value_range=(0.0, 1000.0)),
    _node_parameter('overlay.max_lines', 300, 'Match lines drawn at most.', runtime=True,
                    value_range=(1, 100_000)),
    _node_parameter('overlay.style', 'auto',
                    'side_by_side, flow (lines on the current image), or auto: flow in '
                    'consecutive mode, side_by_side in stereo.', runtime=True,
                    choices=('auto', 'side_by_side', 'flow')),
    _node_parameter('diagnostics.period', 1.0, 'Seconds between /diagnostics messages.',
                    value_range=(0.01, 3600.0)),
) + tuple(
    # Every MatcherConfig field but the options mapping (see declare_parameters).
    ParameterSpec(f'matcher.{name}', default, SETTINGS[name])
    for name, default in defaults_of(MatcherConfig).items() if name != OPTIONS)

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
