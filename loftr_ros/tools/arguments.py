"""Command-line arguments shared by the tools.

The matcher flags are derived from the :class:`~loftr_ros.core.config.MatcherConfig`
declarations (help, choices, type), so a new setting reaches ``loftr-ros match`` by itself.
Every flag defaults to None: the ``--config`` file's value holds unless the flag is given, and
the declared default without a file (:func:`loftr_ros.core.config.load_matcher_config`).
"""
import argparse
from typing import Any, Dict, Iterable, Optional

from loftr_ros.core.config import OPTIONS, SETTINGS, MatcherConfig
from loftr_ros.core.settings import defaults_of


def add_matcher_arguments(parser, names: Optional[Iterable[str]] = None,
                          exclude: Iterable[str] = (), repeatable: Iterable[str] = ()):
    """``--<setting>`` for the MatcherConfig settings in `names` (all when None) but those in
    `exclude`; one in `repeatable` may be given several times and gives a list."""
    defaults = defaults_of(MatcherConfig)
    names = list(SETTINGS) if names is None else list(names)
    for name in names:
        if name == OPTIONS or name in exclude:
            continue
        spec, default = SETTINGS[name], defaults[name]
        text = f"{spec.describe()} Default: the --config file's, else {default!r}."
        arguments: Dict[str, Any] = {'default': None, 'help': text.replace('%', '%%')}
        if isinstance(default, bool):
            arguments['action'] = argparse.BooleanOptionalAction
        elif isinstance(default, list):
            arguments['nargs'] = '+'
        else:
            arguments['type'] = type(default)
            arguments['choices'] = spec.choices
        if name in repeatable:
            arguments['action'] = 'append'
            arguments['help'] += ' Repeat to run several, side by side.'
        parser.add_argument('--' + name.replace('_', '-'), **arguments)


def matcher_overrides(args) -> Dict[str, Any]:
    """The values of the matcher flags in `args` (None where not given), by setting name."""
    return {name: getattr(args, name) for name in SETTINGS if hasattr(args, name)}
