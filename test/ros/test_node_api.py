"""Tests and tools use the matcher node through its public API (matcher, reference,
overlay_subscribers, its topics and parameters), never its private attributes, so that its
internals can change without them."""
import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PRIVATE_USE = re.compile(r'\bnode\._[a-z]|from loftr_ros\.ros\.node import [^\n]*\b_[a-z]')


def test_nothing_reaches_into_the_node():
    files = [path for folder in ('test', 'benchmarks', 'loftr_ros/tools', 'loftr_ros/testing')
             for path in (REPO_ROOT / folder).rglob('*.py') if path != Path(__file__)]
    uses = [f'{path.relative_to(REPO_ROOT)}:{number}: {line.strip()}'
            for path in files
            for number, line in enumerate(path.read_text().splitlines(), start=1)
            if PRIVATE_USE.search(line)]
    assert len(files) > 20 and uses == []
