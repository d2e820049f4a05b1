"""The diagnostics report on its own: which samples are latencies and what the status says
about stamps from another clock (the node over DDS: test_node_sim_time.py)."""
from collections import Counter

from diagnostic_msgs.msg import DiagnosticStatus

from loftr_ros.ros.diagnostics import MAX_LATENCY_S, DiagnosticsReport, Statistics


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
