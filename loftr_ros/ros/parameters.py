"""The matcher node's parameters: one table with defaults, descriptions, ranges and which ones
change at runtime.

The defaults equal those of ``config/*.yaml`` and, for ``matcher.*``, those of
:class:`loftr_ros.core.config.MatcherConfig` (whose fields they are), so the same YAML file
configures the node (``--params-file``) and the offline tools (``load_matcher_config``).
Backend options (``matcher.options`` in the YAML, a nested mapping) arrive as
``matcher.options.<key>`` parameters and are declared from the overrides given.
"""
import dataclasses
from dataclasses import dataclass
from typing import Any, Optional, Tuple

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

from loftr_ros.core.config import (BACKENDS, DEVICES_HELP, GEOMETRY_MODELS, PRECISIONS,
                                   REFINEMENTS, RUNTIME_FIELDS, MatcherConfig)

MODES = ('consecutive', 'stereo')
TRANSPORTS = ('raw', 'compressed')
RELIABILITIES = ('best_effort', 'reliable')
REFERENCES = ('keyframe', 'previous')
OVERLAY_STYLES = ('auto', 'side_by_side', 'flow')
OPTIONS_PREFIX = 'matcher.options.'


@dataclass(frozen=True)
class ParameterSpec:
    name: str
    default: Any
    description: str
    # False: can be changed while the node runs (validated by the node).
    read_only: bool = True
    # Inclusive (min, max) for numbers.
    value_range: Optional[Tuple[float, float]] = None
    # Allowed values for strings.
    choices: Optional[Tuple[str, ...]] = None

    def descriptor(self) -> ParameterDescriptor:
        text = self.description
        if self.choices:
            text += f" One of: {', '.join(self.choices)}."
        descriptor = ParameterDescriptor(description=text, read_only=self.read_only)
        if self.value_range is not None:
            low, high = self.value_range
            if isinstance(self.default, float):
                descriptor.floating_point_range = [
                    FloatingPointRange(from_value=float(low), to_value=float(high), step=0.0)]
            else:
                descriptor.integer_range = [
                    IntegerRange(from_value=int(low), to_value=int(high), step=1)]
        return descriptor

    def check(self, value) -> Optional[str]:
        """None when `value` is valid, else the reason it is not."""
        if self.choices is not None and value not in self.choices:
            return f"{self.name} must be one of {', '.join(self.choices)}, got '{value}'"
        if self.value_range is not None and not (self.value_range[0] <= value
                                                 <= self.value_range[1]):
            low, high = self.value_range
            return f'{self.name} must be in [{low}, {high}], got {value}'
        return None


_MATCHER_DEFAULTS = MatcherConfig()
_MATCHER_DESCRIPTIONS = {
    'backend': ('Matching backend.', BACKENDS, None),
    'weights': ("Weights: '' for the backend's default, a hub id or a local path.", None, None),
    'device': (f'{DEVICES_HELP}.', None, None),
    'precision': ('Inference precision (fp16/bf16 on CUDA; bf16 also on a CPU for eloftr).',
                  PRECISIONS, None),
    'resize': ('Long side in pixels for the model; 0 keeps the size, -1 the backend default.',
               None, (-1, 16384)),
    'confidence_threshold': ('Matches with a lower confidence are dropped.', None, (0.0, 1.0)),
    'max_matches': ('Keep at most this many matches, best first; 0 keeps all.', None,
                    (0, 1_000_000)),
    'refinement': ("Sub-pixel refinement of the matches by patch correlation (ncc); auto: the "
                   "backend's default (ncc for keypoints detected on whole pixels).",
                   REFINEMENTS, None),
    'geometry': ('Geometric verification giving the inlier mask.', GEOMETRY_MODELS, None),
    'ransac_threshold': ('RANSAC inlier threshold in pixels.', None, (1e-6, 1000.0)),
    'ransac_confidence': ('RANSAC confidence.', None, (1e-6, 0.999999)),
    'warmup': ('Match one dummy pair at start so the first real pair is not slow.', None, None),
}

PARAMETERS = (
    ParameterSpec('mode', 'consecutive',
                  'consecutive: one image topic, each frame matched to the keyframe or the '
                  'previous frame; stereo: left and right topics paired by stamp.',
                  choices=MODES),
    ParameterSpec('transport', 'raw',
                  "raw: sensor_msgs/Image on the image topics; compressed: "
                  "sensor_msgs/CompressedImage on '<topic>/compressed'.", choices=TRANSPORTS),
    ParameterSpec('qos_reliability', 'best_effort',
                  'Reliability of the image subscriptions (sensor data is best effort).',
                  choices=RELIABILITIES),
    ParameterSpec('qos_depth', 1, 'History depth of the image subscriptions.',
                  value_range=(1, 100)),
    ParameterSpec('use_camera_info', False,
                  'Subscribe to camera_info per camera and use the intrinsics for essential '
                  'verification (matcher.geometry: essential).'),
    ParameterSpec('stereo.slop', 0.0,
                  'Largest stamp difference in seconds for a left/right pair (0: exact).',
                  value_range=(0.0, 1.0)),
    ParameterSpec('stereo.queue_size', 10,
                  'Frames per side waiting for their partner before the oldest is dropped.',
                  value_range=(1, 1000)),
    ParameterSpec('consecutive.reference', 'keyframe',
                  'Match each frame to the keyframe (replaced when matches or overlap drop) or '
                  'to the previous frame.', choices=REFERENCES),
    ParameterSpec('keyframe.min_matches', 100,
                  'Replace the keyframe when fewer (inlier) matches remain.',
                  read_only=False, value_range=(0, 1_000_000)),
    ParameterSpec('keyframe.min_overlap', 0.5,
                  'Replace the keyframe when the matches cover less than this fraction of the '
                  'current image.', read_only=False, value_range=(0.0, 1.0)),
    ParameterSpec('overlay.max_rate', 5.0,
                  'Overlay images per second at most (only drawn while ~/overlay has a '
                  'subscriber); 0 disables the overlay.', read_only=False,
                  value_range=(0.0, 1000.0)),
    ParameterSpec('overlay.max_lines', 300, 'Match lines drawn at most.', read_only=False,
                  value_range=(1, 100_000)),
    ParameterSpec('overlay.style', 'auto',
                  'side_by_side, flow (lines on the current image), or auto: flow in '
                  'consecutive mode, side_by_side in stereo.', read_only=False,
                  choices=OVERLAY_STYLES),
    ParameterSpec('diagnostics.period', 1.0, 'Seconds between /diagnostics messages.',
                  value_range=(0.01, 3600.0)),
) + tuple(
    ParameterSpec(f'matcher.{field.name}', getattr(_MATCHER_DEFAULTS, field.name),
                  _MATCHER_DESCRIPTIONS[field.name][0],
                  read_only=field.name not in RUNTIME_FIELDS,
                  choices=_MATCHER_DESCRIPTIONS[field.name][1],
                  value_range=_MATCHER_DESCRIPTIONS[field.name][2])
    for field in dataclasses.fields(MatcherConfig) if field.name != 'options')

SPECS = {spec.name: spec for spec in PARAMETERS}


def declare_parameters(node):
    """Declare every parameter of the table, plus matcher.options.* given as overrides."""
    for spec in PARAMETERS:
        node.declare_parameter(spec.name, spec.default, spec.descriptor())
    # Options have no fixed names, so they are declared from the --ros-args/params-file
    # overrides, which rclpy keeps in this attribute (Humble to Kilted) and offers no getter for.
    for name, override in node._parameter_overrides.items():
        if name.startswith(OPTIONS_PREFIX):
            node.declare_parameter(name, override.value, ParameterDescriptor(
                description='Backend option (see the backend DEFAULT_CONF).', read_only=True))


def matcher_config_from_parameters(node) -> MatcherConfig:
    """The MatcherConfig the node's matcher.* parameters describe (ConfigError if invalid)."""
    values = {spec.name[len('matcher.'):]: node.get_parameter(spec.name).value
              for spec in PARAMETERS if spec.name.startswith('matcher.')}
    values['options'] = {name: parameter.value for name, parameter in
                         node.get_parameters_by_prefix(OPTIONS_PREFIX[:-1]).items()}
    return MatcherConfig.from_dict(values)
