"""A setting declared once: its help text, valid values and whether it changes at runtime live
beside its default, and everything that exposes it (ROS parameter descriptors, CLI flags, the
YAML comments, the README table) is derived from that declaration.

    @dataclass(frozen=True)
    class MatcherConfig:
        max_matches: int = setting(0, 'Keep at most this many matches; 0 keeps all.',
                                   value_range=(0, 1_000_000), runtime=True)
"""
import dataclasses
import numbers
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple, Union

from loftr_ros.core.errors import ConfigError

METADATA_KEY = 'setting'


@dataclass(frozen=True)
class Setting:
    """What a setting means and which values it takes (its default is the field's)."""

    help: str
    # Allowed values (strings).
    choices: Optional[Tuple[str, ...]] = None
    # Inclusive (min, max) for numbers.
    value_range: Optional[Tuple[float, float]] = None
    # True: may change while the component runs (`ros2 param set`); False: read at start.
    runtime: bool = False
    # Whether the value is part of what the component's results depend on (MatcherConfig's
    # config_id): True, False (the device, the input limits: same results), or a function of
    # the whole configuration (settings of a runtime that count only where it is chosen).
    identifies: Union[bool, Callable[[Any], bool]] = True
    # The type of the value (the default's): bool, int, float, str, list (of strings) or dict;
    # None checks no type.
    kind: Optional[type] = None

    def check(self, name: str, value) -> Optional[str]:
        """None when `value` is valid for the setting `name`, else the reason it is not.

        Its type first, in words: a bool is no number and a number no bool; a float setting
        takes an integer (YAML's ``1``)."""
        return self._reason(name, value, exact=False)

    def check_parameter(self, name: str, value) -> Optional[str]:
        """As `check`, for a typed ROS parameter: rclpy keeps the integer 1 an integer, so a
        double parameter refuses it, and a list parameter takes a list only."""
        return self._reason(name, value, exact=True)

    def _reason(self, name: str, value, exact: bool) -> Optional[str]:
        reason = self._type_reason(name, value, exact)
        if reason:
            return reason
        if self.choices is not None and value not in self.choices:
            return f"invalid {name} '{value}', valid: {', '.join(self.choices)}"
        if self.value_range is not None:
            low, high = self.value_range
            if not low <= value <= high:
                return f'{name} must be in [{low}, {high}], got {value}'
        return None

    def _type_reason(self, name: str, value, exact: bool) -> Optional[str]:
        kind = self.kind
        if kind is None:
            return None
        if kind is bool:
            valid = isinstance(value, bool)
        elif kind is int:
            valid = (type(value) is int if exact else
                     isinstance(value, numbers.Integral) and not isinstance(value, bool))
        elif kind is float:
            valid = (type(value) is float if exact else
                     isinstance(value, numbers.Real) and not isinstance(value, bool))
        elif kind is list:
            valid = (isinstance(value, list if exact else (list, tuple)) and
                     all(isinstance(item, str) for item in value))
        else:
            valid = isinstance(value, kind)
        if valid:
            return None
        expected = _TYPE_WORDS[kind] if exact or kind is not float else 'a number'
        return f'{name} must be {expected}, got {value_in_words(value)}'

    def identifies_in(self, config) -> bool:
        """Whether the value counts in the identity of `config` (see `identifies`)."""
        return self.identifies(config) if callable(self.identifies) else self.identifies

    def describe(self) -> str:
        """The help text with the choices, for descriptors and CLI help."""
        if self.choices:
            return f"{self.help} One of: {', '.join(self.choices)}."
        return self.help


_TYPE_WORDS = {bool: 'a boolean (true or false)', int: 'an integer',
               float: 'a double (a number with a decimal point, such as 1.0)', str: 'a string',
               list: 'a list of strings', dict: 'a mapping'}


def value_in_words(value) -> str:
    """`value` for a message saying what was given: 'the integer 1', 'the string '1.0''."""
    if value is None:
        return 'no value'
    if type(value) in (bool, int, float, str):
        kind = _TYPE_WORDS[type(value)].split(' (')[0].split(' ', 1)[1]
        shown = str(value).lower() if isinstance(value, bool) else repr(value)
        return f'the {kind} {shown[:100]}'
    return f'a {type(value).__name__} value'


def setting(default: Any = dataclasses.MISSING, help: str = '', *, default_factory=None,
            choices=None, value_range=None, runtime: bool = False,
            identifies: Union[bool, Callable[[Any], bool]] = True):
    """A dataclass field with its :class:`Setting` (as ``metadata['setting']``); the setting's
    type is its default's."""
    example = default_factory() if default_factory is not None else default
    metadata = {METADATA_KEY: Setting(help, tuple(choices) if choices else None, value_range,
                                      runtime, identifies, type(example))}
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def settings_of(cls) -> Dict[str, Setting]:
    """Field name -> Setting of a dataclass declared with :func:`setting`, in field order."""
    return {field.name: field.metadata[METADATA_KEY] for field in dataclasses.fields(cls)
            if METADATA_KEY in field.metadata}


def defaults_of(cls) -> Dict[str, Any]:
    """Field name -> default value of a dataclass (default factories called)."""
    return {field.name: (field.default_factory() if field.default is dataclasses.MISSING
                         else field.default) for field in dataclasses.fields(cls)}


def check_fields(instance):
    """ConfigError with the reason when a field of a dataclass declared with :func:`setting`
    holds a value its setting refuses (for ``__post_init__``)."""
    for name, spec in settings_of(type(instance)).items():
        reason = spec.check(name, getattr(instance, name))
        if reason:
            raise ConfigError(reason)
