"""A setting declared once: its help text, valid values and whether it changes at runtime live
beside its default, and everything that exposes it (ROS parameter descriptors, CLI flags, the
YAML comments, the README table) is derived from that declaration.

    @dataclass(frozen=True)
    class MatcherConfig:
        max_matches: int = setting(0, 'Keep at most this many matches; 0 keeps all.',
                                   value_range=(0, 1_000_000), runtime=True)
"""
import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

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

    def check(self, name: str, value) -> Optional[str]:
        """None when `value` is valid for the setting `name`, else the reason it is not."""
        if self.choices is not None and value not in self.choices:
            return f"invalid {name} '{value}', valid: {', '.join(self.choices)}"
        if self.value_range is not None:
            low, high = self.value_range
            if not low <= value <= high:
                return f'{name} must be in [{low}, {high}], got {value}'
        return None

    def describe(self) -> str:
        """The help text with the choices, for descriptors and CLI help."""
        if self.choices:
            return f"{self.help} One of: {', '.join(self.choices)}."
        return self.help


def setting(default: Any = dataclasses.MISSING, help: str = '', *, default_factory=None,
            choices=None, value_range=None, runtime: bool = False):
    """A dataclass field with its :class:`Setting` (as ``metadata['setting']``)."""
    metadata = {METADATA_KEY: Setting(help, tuple(choices) if choices else None, value_range,
                                      runtime)}
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
