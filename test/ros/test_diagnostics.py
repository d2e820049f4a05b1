"""The diagnostics report on its own: which samples are latencies and what the status says
about stamps from another clock (the node over DDS: test_node_sim_time.py) or about matched
publishers whose images never arrive; the throttled warnings: one per topic, cause and reason,
bounded under varied input."""
from collections import Counter

import pytest
from diagnostic_msgs.msg import DiagnosticStatus

from loftr_ros.ros import diagnostics
from loftr_ros.ros.diagnostics import (MAX_LATENCY_S, MAX_THROTTLE_KEYS, DiagnosticsReport,
                                       Statistics, ThrottledWarnings)


def report(latencies, clock='system_time'):
    stats = Statistics()
    stats.count('frames')
    for latency in latencies:
        stats.published(latency, processing=0.1, matching=0.08, matches=100)
    status = DiagnosticsReport(stats, 'test').status({'latency_clock': clock}, 'cpu', Counter())
    return status, {value.key: value.value for value in status.values}


def test_stamps_within_the_bound_are_latencies_even_slightly_ahead_of_the_clock():
    status, values = report([0.1, -0.02, MAX_LATENCY_S])
    assert values['latency_p50_ms'] == '100.0'
    assert values['stamps_off_clock'] == '0'
    assert (status.level, status.message) == (DiagnosticStatus.OK, 'matching')


def test_stamps_from_another_clock_are_counted_and_reported_not_averaged():
    status, values = report([0.1, 392310493.785])
    assert values['latency_p50_ms'] == '100.0'  # the one real latency
    assert values['stamps_off_clock'] == '1'
    assert status.level == DiagnosticStatus.WARN
    assert status.message.startswith('image stamps 392310494 s behind the node clock '
                                     '(system_time): latency not measured'), status.message
    # With use_sim_time before the first /clock the node's clock is 0: stamps far ahead.
    status, values = report([-1.4e9], clock='sim_time')
    assert values['latency_p50_ms'] == 'n/a'
    assert 'ahead of the node clock (sim_time)' in status.message
    assert '/clock' in status.message
    # The latest pair decides: back on the clock, the warning goes.
    status, _ = report([-1.4e9, 0.1], clock='sim_time')
    assert status.level == DiagnosticStatus.OK


class Log:
    """The logger boundary: what would reach the console."""

    def __init__(self):
        self.lines = []

    def warning(self, text):
        self.lines.append(text)


@pytest.fixture
def clock(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(diagnostics.time, 'monotonic', lambda: now[0])
    return now


def test_a_second_reason_of_a_cause_is_not_hidden_and_numbers_do_not_make_one(clock):
    log = Log()
    warnings = ThrottledWarnings(log)
    warnings.warn('/image', 'bad_image', 'truncated data: 1000 bytes, but 307200')
    warnings.warn('/image', 'bad_image', 'truncated data: 999 bytes, but 307200')
    warnings.warn('/image', 'bad_image', "unsupported encoding 'nv21'")
    warnings.warn('/left/image', 'bad_image', 'truncated data: 5 bytes, but 307200')
    assert log.lines == ['/image: bad_image: truncated data: 1000 bytes, but 307200',
                         "/image: bad_image: unsupported encoding 'nv21'",
                         '/left/image: bad_image: truncated data: 5 bytes, but 307200']
    clock[0] += diagnostics.WARN_THROTTLE_S
    warnings.warn('/image', 'bad_image', 'truncated data: 7 bytes, but 307200')
    assert log.lines[-1] == ('/image: bad_image: truncated data: 7 bytes, but 307200 (1 more '
                             'since the last warning)')


def test_endless_reasons_share_one_throttle_and_long_texts_are_cut(clock):
    log = Log()
    warnings = ThrottledWarnings(log)
    for index in range(10_000):  # an attacker's encoding names
        warnings.warn('/image', 'bad_image', f"unsupported encoding 'x{chr(65 + index % 26)}"
                                             f"{chr(65 + index // 26 % 26)}{index // 676}'")
    assert len(log.lines) == MAX_THROTTLE_KEYS + 1
    # The reasons past the table's size share one throttle: one line per period stands for all
    # of them, so neither the log nor the table grows with them.
    # (Numbers do not make a reason: the names repeat every 676, and the first
    # MAX_THROTTLE_KEYS of them have their own throttle.)
    shared = sum(index % 676 >= MAX_THROTTLE_KEYS for index in range(10_000))
    clock[0] += diagnostics.WARN_THROTTLE_S
    warnings.warn('/image', 'bad_image', "unsupported encoding 'one more'")
    assert log.lines[-1] == ("/image: bad_image: unsupported encoding 'one more' "
                             f'({shared - 1} more since the last warning)')
    warnings.warn('/image', 'duplicate', 'x' * 100_000)
    assert log.lines[-1].endswith('... (100000 characters)') and len(log.lines[-1]) < 600


def test_publishers_without_images_are_named_in_the_status():
    report = DiagnosticsReport(Statistics(), 'matcher')
    identity = {'mode': 'consecutive'}
    status = report.status(identity, 'cpu', Counter(), input_publishers=1)
    assert status.level == DiagnosticStatus.WARN
    assert status.message.startswith('no input images, though 1 publisher(s) are matched')
    assert '32 MiB' in status.message
    assert report.status(identity, 'cpu', Counter()).message == 'no input images'
