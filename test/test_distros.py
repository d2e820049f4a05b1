"""What the package needs from Python and rclpy on the ROS 2 distributions this machine cannot run:
Humble (Python 3.10; no wheels for it here). Kilted runs the whole suite (`make test`), Jazzy too
(`make test ROS_DISTRO=jazzy`).

- Python 3.10: the package compiles with a 3.10 interpreter (skipped where none is found) and
  every standard-library name it imports exists there; without one, the 3.10 grammar is still
  checked through ``ast.parse(feature_version=(3, 10))``.
- rclpy: every rclpy module, name, class member and keyword argument the package uses exists in
  an rclpy source tree, read with ``ast`` (nothing of it is imported). In the suite the tree is
  the installed rclpy (and a copy of it with members removed, to show what a miss looks like);
  for Humble, a checkout of ros2/rclpy's humble branch:
  ``scripts/ros_env.sh python test/test_distros.py PATH/TO/rclpy/rclpy/rclpy``, or the test
  below with ``LOFTR_ROS_HUMBLE_RCLPY=PATH/TO/rclpy/rclpy/rclpy``.

A member counts as "rclpy's" by name: each attribute name the package uses that the installed
rclpy defines on one of its classes (a method, property, class constant or instance attribute) is
looked up under the same class names in the other tree, unless the package assigns that
attribute itself (its own fields: `self.node`, `self._pending`). So a method renamed between
distributions is found; an attribute of some non-rclpy object that shares an rclpy name (a
message's `stamp`) is checked too, which is harmless. Not checked: positional arguments, return
types, behaviour.
"""
import ast
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE = REPO_ROOT / 'loftr_ros'
HUMBLE_PYTHON = (3, 10)
HUMBLE_RCLPY_ENV = 'LOFTR_ROS_HUMBLE_RCLPY'


def package_sources() -> List[Path]:
    return sorted(path for path in PACKAGE.rglob('*.py') if '__pycache__' not in path.parts)


# -- Python 3.10 --------------------------------------------------------------------------------

def find_python(version) -> Optional[str]:
    """An interpreter of `version` (major, minor): pythonX.Y on PATH or pyenv's newest X.Y.*, as
    scripts/setup_venv.sh looks for one; None when there is none."""
    name = 'python%d.%d' % version
    pyenv = Path(os.environ.get('PYENV_ROOT', Path.home() / '.pyenv')) / 'versions'
    candidates = [shutil.which(name)] + sorted(
        (str(path) for path in pyenv.glob('%d.%d.*/bin/python' % version)),
        key=lambda text: [int(n) for n in re.findall(r'\d+', text)], reverse=True)
    for candidate in filter(None, candidates):
        # A pyenv shim exists for every installed version but runs only the selected ones.
        probe = subprocess.run([candidate, '-c', 'import sys; print(sys.version_info[:2])'],
                               capture_output=True, text=True)
        if probe.returncode == 0 and probe.stdout.strip() == str(tuple(version)):
            return candidate
    return None


# Run by the 3.10 interpreter: compile each file, then import each standard-library module the
# file imports (argv[1]: the suite's standard-library names, which hold newer modules such as
# tomllib) and look up the names it takes from it.
COMPILE_CHECK = textwrap.dedent('''
    import ast, importlib, sys
    stdlib = set(sys.argv[1].split(',')) | set(sys.stdlib_module_names)
    problems = []
    for path in sys.argv[2:]:
        source = open(path, encoding='utf-8').read()
        try:
            tree = compile(source, path, 'exec', ast.PyCF_ONLY_AST)
            compile(tree, path, 'exec')
        except SyntaxError as error:
            problems.append(f'{path}:{error.lineno}: {error.msg}')
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                wanted = [(alias.name, None) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                wanted = [(node.module, alias.name) for alias in node.names]
            else:
                continue
            for module, name in wanted:
                if module.split('.')[0] not in stdlib:
                    continue
                try:
                    imported = importlib.import_module(module)
                except ImportError:
                    problems.append(f'{path}:{node.lineno}: no module {module}')
                    continue
                if name is not None and name != '*' and not hasattr(imported, name):
                    problems.append(f'{path}:{node.lineno}: {module} has no {name}')
    print('\\n'.join(problems))
    sys.exit(1 if problems else 0)
''')


def test_package_compiles_with_python_3_10_and_its_standard_library():
    python = find_python(HUMBLE_PYTHON)
    if python is None:
        pytest.skip('no Python 3.10 interpreter (python3.10 on PATH or in pyenv): the grammar '
                    'is checked by test_package_parses_with_the_python_3_10_grammar only')
    sources = [str(path) for path in package_sources()]
    run = subprocess.run([python, '-c', COMPILE_CHECK, ','.join(sys.stdlib_module_names),
                          *sources], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr


def test_package_parses_with_the_python_3_10_grammar():
    # Best effort by CPython's own account, but it needs no 3.10 interpreter.
    for path in package_sources():
        ast.parse(path.read_text(encoding='utf-8'), str(path), feature_version=HUMBLE_PYTHON)


# -- rclpy ----------------------------------------------------------------------------------------

@dataclass
class RclpyTree:
    """What the rclpy package in `root` (the directory holding its __init__.py) defines."""

    root: Path
    # module ('rclpy.qos') -> the names bound at its top level
    modules: Dict[str, Set[str]] = field(default_factory=dict)
    # member name -> class-qualified name ('Node.create_timer') -> its parameters (None when
    # the member is not a function)
    members: Dict[str, Dict[str, Optional[ast.arguments]]] = field(
        default_factory=lambda: defaultdict(dict))
    # 'rclpy.qos.QoSProfile' / 'rclpy.init' -> the parameters of the function or __init__
    callables: Dict[str, Optional[ast.arguments]] = field(default_factory=dict)

    def __post_init__(self):
        for path in sorted(self.root.rglob('*.py')):
            parts = path.relative_to(self.root.parent).with_suffix('').parts
            module = '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)
            tree = ast.parse(path.read_text(encoding='utf-8'), str(path))
            self.modules[module] = set()
            for node in tree.body:
                self.modules[module].update(_bound_names(node))
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    self.callables[f'{module}.{node.name}'] = node.args
                elif isinstance(node, ast.ClassDef):
                    self._read_class(node, node.name, f'{module}.{node.name}')

    def _read_class(self, cls: ast.ClassDef, qualname: str, full_name: str):
        self.callables.setdefault(full_name, None)
        for node in cls.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self.members[node.name][f'{qualname}.{node.name}'] = node.args
                if node.name == '__init__':
                    self.callables[full_name] = node.args
                for inner in ast.walk(node):  # self.x = ... in any method
                    targets = (inner.targets if isinstance(inner, ast.Assign) else
                               [inner.target] if isinstance(inner, ast.AnnAssign) else [])
                    for target in targets:
                        if (isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name)
                                and target.value.id == 'self'):
                            self.members[target.attr].setdefault(f'{qualname}.{target.attr}', None)
            elif isinstance(node, ast.ClassDef):
                self._read_class(node, f'{qualname}.{node.name}', f'{full_name}.{node.name}')
            else:
                for name in _bound_names(node):
                    self.members[name].setdefault(f'{qualname}.{name}', None)

    def resolve(self, dotted: str) -> bool:
        """Whether 'rclpy.qos.QoSProfile' (a module, or a name bound in one) exists."""
        if dotted in self.modules:
            return True
        module, _, name = dotted.rpartition('.')
        return module in self.modules and name in self.modules[module]


def _bound_names(node: ast.stmt) -> Iterator[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        yield node.name
    elif isinstance(node, (ast.Import, ast.ImportFrom)):
        for alias in node.names:
            yield alias.asname or alias.name.split('.')[0]
    elif isinstance(node, (ast.Assign, ast.AnnAssign)):
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target]):
            for name in ast.walk(target):
                if isinstance(name, ast.Name):
                    yield name.id
    elif isinstance(node, (ast.If, ast.Try)):  # try: from x import y / except ImportError
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.stmt):
                yield from _bound_names(child)
            elif isinstance(child, ast.ExceptHandler):
                for stmt in child.body:
                    yield from _bound_names(stmt)


def _accepts(parameters: Optional[ast.arguments], keywords: Set[str]) -> bool:
    if parameters is None or parameters.kwarg is not None:
        return True
    names = {arg.arg for arg in parameters.args + parameters.kwonlyargs}
    return keywords <= names


@dataclass(frozen=True)
class Use:
    """One use of rclpy in the package: 'rclpy.qos.QoSProfile', or a member name such as
    'create_timer', with the keyword arguments of its calls."""

    name: str
    where: str
    keywords: frozenset = frozenset()


def rclpy_uses(sources: List[Path]) -> Iterator[Use]:
    """Each rclpy name the package imports or reaches through a module, and each attribute it
    reads or calls but does not assign itself (whatever the object: the caller knows which are
    rclpy's), with the keywords of calls."""
    owned = set().union(*map(_assigned_attributes, sources))
    for path in sources:
        tree = ast.parse(path.read_text(encoding='utf-8'), str(path))
        where = str(path.relative_to(REPO_ROOT))
        aliases = {}  # local name -> 'rclpy.module.Name'
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for alias in node.names:
                    if isinstance(node, ast.Import):
                        local, name = alias.asname or alias.name.split('.')[0], alias.name
                        imported = name if alias.asname else local
                    else:
                        local = alias.asname or alias.name
                        name = imported = f'{node.module}.{alias.name}'
                    if name.split('.')[0] == 'rclpy':
                        aliases[local] = imported
                        yield Use(name, f'{where}:{node.lineno}')
        for node in ast.walk(tree):
            keywords = frozenset()
            if isinstance(node, ast.Call):
                keywords = frozenset(k.arg for k in node.keywords if k.arg is not None)
                node = node.func
            dotted = _dotted(node, aliases)
            if dotted is not None:
                yield Use(dotted, f'{where}:{node.lineno}', keywords)
            elif isinstance(node, ast.Attribute) and node.attr not in owned:
                yield Use(node.attr, f'{where}:{node.lineno}', keywords)


def _assigned_attributes(path: Path) -> Set[str]:
    """The attributes a source file gives its classes and objects: `self.x = ...`, and names
    assigned in class bodies (dataclass fields, constants)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'), str(path))):
        if isinstance(node, ast.ClassDef):
            names.update(name for stmt in node.body if isinstance(stmt, (ast.Assign, ast.AnnAssign))
                         for name in _bound_names(stmt))
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target]):
                if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
                    names.add(target.attr)
    return names


def _dotted(node: ast.expr, aliases: Dict[str, str]) -> Optional[str]:
    """'rclpy.logging.get_logger' for rclpy.logging.get_logger, 'rclpy.qos.QoSProfile' for an
    imported QoSProfile; None for anything not reached through an rclpy import."""
    chain = []
    while isinstance(node, ast.Attribute):
        chain.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name) or node.id not in aliases:
        return None
    return '.'.join([aliases[node.id]] + chain[::-1])


def missing_rclpy_api(reference: RclpyTree, target: RclpyTree,
                      sources: List[Path]) -> Dict[str, List[str]]:
    """What the package uses of `reference`'s rclpy (the installed one) that `target` lacks:
    description -> where it is used."""
    missing = defaultdict(set)
    for use in rclpy_uses(sources):
        if use.name.split('.')[0] == 'rclpy':
            # A dotted name may end in attributes of a module-level object
            # (qos_profile_sensor_data.reliability): check the longest prefix that names one.
            parts = use.name.split('.')
            prefix = next(('.'.join(parts[:n]) for n in range(len(parts), 0, -1)
                           if reference.resolve('.'.join(parts[:n]))), None)
            if prefix is None:
                continue  # not in the installed rclpy either: the import would have failed
            if not target.resolve(prefix):
                missing[prefix].add(use.where)
            elif use.keywords and not _accepts(target.callables.get(prefix), use.keywords):
                missing[f'{prefix}({", ".join(sorted(use.keywords))}=)'].add(use.where)
            continue
        known = reference.members.get(use.name)
        if not known:
            continue  # no rclpy class has it: not rclpy's
        found = {qualname: parameters for qualname, parameters
                 in target.members.get(use.name, {}).items() if qualname in known}
        if not found:
            missing[' or '.join(sorted(known))].add(use.where)
        elif use.keywords and not any(_accepts(parameters, use.keywords)
                                      for parameters in found.values()):
            missing[f'{" or ".join(sorted(found))}({", ".join(sorted(use.keywords))}=)'].add(
                use.where)
    return {name: sorted(places) for name, places in missing.items()}


def installed_rclpy() -> RclpyTree:
    import rclpy
    return RclpyTree(Path(rclpy.__file__).parent)


def test_package_uses_only_rclpy_api_the_installed_rclpy_defines():
    tree = installed_rclpy()
    assert missing_rclpy_api(tree, tree, package_sources()) == {}
    # The uses found are the node's real ones (the check is not vacuous).
    uses = {use.name for use in rclpy_uses(package_sources())}
    assert {'rclpy.try_shutdown', 'rclpy.executors.ExternalShutdownException',
            'get_parameters_by_prefix', '_parameter_overrides', 'add_on_set_parameters_callback',
            'resolve_topic_name', 'create_timer'} <= uses


def test_rclpy_api_check_reports_what_an_older_rclpy_lacks(tmp_path):
    # The installed rclpy with members that did not always exist taken out, as in an older
    # distribution: the check names each, with where the package uses it.
    reference = installed_rclpy()
    older = tmp_path / 'rclpy'
    shutil.copytree(reference.root, older, ignore=shutil.ignore_patterns('*.so', '__pycache__'))
    node_py = older / 'node.py'
    source = node_py.read_text()
    source = source.replace('def get_parameters_by_prefix(', 'def _gone_get_parameters_by_prefix(')
    source = re.sub(r'(def create_timer\(.*?)clock:', r'\1timer_clock:', source, count=1,
                    flags=re.S)
    node_py.write_text(source)
    executors_py = older / 'executors.py'
    executors_py.write_text(executors_py.read_text().replace(
        'class ExternalShutdownException(', 'class _GoneExternalShutdownException('))
    missing = missing_rclpy_api(reference, RclpyTree(older), package_sources())
    assert set(missing) == {'Node.get_parameters_by_prefix',
                            'Node.create_timer(clock=)',
                            'rclpy.executors.ExternalShutdownException'}, missing
    assert all(where.startswith('loftr_ros/ros/') for places in missing.values()
               for where in places), missing


def test_package_uses_only_rclpy_api_humble_defines():
    source = os.environ.get(HUMBLE_RCLPY_ENV)
    if not source:
        pytest.skip(f'{HUMBLE_RCLPY_ENV} not set: give it the rclpy/rclpy/rclpy directory of a '
                    f'ros2/rclpy checkout of the humble branch')
    assert missing_rclpy_api(installed_rclpy(), RclpyTree(Path(source)), package_sources()) == {}


def main(argv):
    """Print the rclpy API the package uses and what the tree in argv[1] lacks of it."""
    if len(argv) != 2:
        sys.exit(f'usage: {argv[0]} PATH/TO/rclpy  (the directory holding rclpy/__init__.py)')
    reference, target = installed_rclpy(), RclpyTree(Path(argv[1]))
    print(f'rclpy API used by {PACKAGE.name} (as the installed rclpy names it; checked in '
          f'{target.root}):')
    for name in sorted({use.name if use.name.startswith('rclpy') else
                        ' or '.join(sorted(reference.members[use.name]))
                        for use in rclpy_uses(package_sources())
                        if use.name.startswith('rclpy') or reference.members.get(use.name)}):
        print(f'  {name}')
    missing = missing_rclpy_api(reference, target, package_sources())
    for name, places in sorted(missing.items()):
        print(f'MISSING {name}: used at {", ".join(places)}')
    print(f'{len(missing)} missing')
    sys.exit(1 if missing else 0)


if __name__ == '__main__':
    main(sys.argv)
