"""Throughput and latency of matcher_node the way ros2_benchmark measures a graph.

The EuRoC stereo bag (../shared/data/euroc_v101_stereo) is replayed by this process into
matcher_node running in ANOTHER process (started here): its left/right images are published
together at a fixed rate, looped, and restamped with the current time (so stamps keep
increasing across loops and latency is image stamp -> Matches received here, on one clock).
Publishers use the sensor-data QoS of a camera driver.

Per backend (``--backend``, repeatable) it reports:

- fixed rates (``--rates``, default 2,5,20,30 Hz), each with a freshly started node, the
  sequence repeated ``--rounds`` times (on a shared machine the load drifts over minutes, so
  rates are compared within a round, and pooled over the rounds): pairs sent, processed pairs
  per second (Matches received for the pairs sent in the measuring window) and its ratio to
  the first rate, latency p50/p95 (and max), the matcher's own
  p50/p95 (the node's /diagnostics), and the node's accounting of every frame it received
  (processed, each drop cause, still pending), checked to add up;
- the maximum sustained rate: ros2_benchmark's search (``determine_max_sustainable_framerate``
  in ros2_benchmark/ros2_benchmark.py): binary search between ``--search-range`` until the
  interval is narrower than 10 %, then a linear scan upwards; a probe rate is sustained when
  at least ``SUSTAINED_FRACTION`` of the pairs sent were matched (latest wins: a node slower
  than its input drops the superseded pairs);
- ``--soak-minutes N``: one node at ``--latency-rate`` for N minutes: the same figures plus
  its memory growth.

    scripts/ros_env.sh python benchmarks/bench_node.py [--backend xfeat]
        [--params-file config/stereo_matcher.yaml [--params-file config/cpu_realtime.yaml]]
        [--set matcher.resize:=512]
        [--rates 2,5,20,30] [--rounds 2] [--seconds 40] [--no-search] [--soak-minutes 10]
        [--profile DIR]

``--profile DIR`` records the node and its matching process with py-spy (``pip install
py-spy``) during each fixed-rate phase, sampling the thread that holds each process's GIL, and
writes the collapsed stacks there and a summary (who holds the GIL, doing what) to stdout.
Each phase also reports the CPU time per thread of both processes (from /proc, named by
py-spy where it is installed).
"""
import argparse
import math
import os
import re
import shutil
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')

REPO = Path(__file__).resolve().parents[1]
EUROC_BAG = REPO.parent / 'shared' / 'data' / 'euroc_v101_stereo' / 'bag'
LEFT_TOPIC, RIGHT_TOPIC = '/cam0/image_raw', '/cam1/image_raw'
# The node's inputs (stereo mode).
TOPICS = ('/left/image', '/right/image')
# A probe rate is sustained when at least this share of the pairs sent in its window were
# matched (ros2_benchmark's acceptable frame loss, tightened: a latest-wins node that cannot keep
# up loses a growing share at once).
SUSTAINED_FRACTION = 0.95
# Binary search stops when upper / lower is below this; the linear scan then steps by it.
SEARCH_RESOLUTION = 1.10


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--backend', action='append',
                        help='matcher.backend; repeat for several (default xfeat)')
    parser.add_argument('--params-file', action='append',
                        help='the node\'s parameters file; repeat for several, later ones win '
                             '(default: config/stereo_matcher.yaml)')
    parser.add_argument('--set', action='append', default=[], metavar='NAME:=VALUE',
                        help='a node parameter over the file, e.g. matcher.device:=cpu')
    parser.add_argument('--label', help='name of the configuration in the tables')
    parser.add_argument('--bag', default=str(EUROC_BAG))
    parser.add_argument('--rates', default='2,5,20,30', help='fixed input rates, Hz')
    parser.add_argument('--rounds', type=int, default=2,
                        help='the fixed rates run this many times, interleaved (a shared '
                             'machine\'s load drifts: compare rates within a round)')
    parser.add_argument('--seconds', type=float, default=40.0,
                        help='measuring window of each fixed rate, after --warmup')
    parser.add_argument('--warmup', type=float, default=6.0,
                        help='seconds played before each measuring window')
    parser.add_argument('--no-search', action='store_true',
                        help='skip the maximum sustained rate search')
    parser.add_argument('--search-range', default='0.25,40', help='lower,upper Hz')
    parser.add_argument('--probe-seconds', type=float, default=25.0)
    parser.add_argument('--latency-rate', type=float, default=20.0,
                        help='the fixed rate of the latency figures and the soak')
    parser.add_argument('--soak-minutes', type=float, default=0.0,
                        help='only the soak: N minutes at --latency-rate')
    parser.add_argument('--profile', type=Path, metavar='DIR',
                        help='py-spy record the node during each fixed-rate phase')
    return parser.parse_args()


# -- replay ------------------------------------------------------------------------------

def load_bag_pairs(bag):
    """(left, right) rclpy Image messages of every stereo pair of the bag, in order."""
    from loftr_ros.core.stamps import stamp_to_ns
    from loftr_ros.testing.player import bag_image_messages
    pending: Dict[int, Dict[str, object]] = {}
    pairs = []
    for topic, msg in bag_image_messages(bag, [LEFT_TOPIC, RIGHT_TOPIC]):
        sides = pending.setdefault(stamp_to_ns(msg.header.stamp), {})
        sides[topic] = msg
        if len(sides) == 2:
            pairs.append((sides[LEFT_TOPIC], sides[RIGHT_TOPIC]))
            del pending[stamp_to_ns(msg.header.stamp)]
    if not pairs:
        raise SystemExit(f'no stereo pairs in {bag}')
    return pairs


class Player:
    """Publishes the bag's pairs at a fixed rate, looped, each pair stamped with the current
    time on both sides (a hardware-synchronised camera)."""

    def __init__(self, client, pairs):
        self.client = client
        self.pairs = pairs
        self.index = 0

    def play(self, rate: float, seconds: float) -> List[int]:
        """Publish for `seconds` at `rate` pairs/s; returns the stamps sent (ns). A tick that
        comes late (loaded machine) is published at once, but no burst catches up."""
        period = 1.0 / rate
        stamps = []
        start = next_tick = time.monotonic()
        while next_tick - start < seconds:
            pair = self.pairs[self.index % len(self.pairs)]
            self.index += 1
            stamps.append(self.client.publish_pair(TOPICS, pair))
            next_tick = max(next_tick + period, time.monotonic())
            time.sleep(max(0.0, next_tick - time.monotonic()))
        return stamps


# -- one run of the node -----------------------------------------------------------------

@dataclass
class Phase:
    """What one stretch of input at a fixed rate gave."""

    rate: float
    round: int
    sent: int                      # pairs sent in the measuring window
    seconds: float                 # measuring window, as played
    latencies: List[float]         # seconds, stamp -> Matches received, matched pairs
    load: float                    # 1-min load average at the end
    diagnostics: Dict[str, str] = field(default_factory=dict)
    frames_sent: int = 0           # images sent in the whole phase (warm-up included)
    rss_mib: tuple = ()
    thread_cpu: Dict[str, float] = field(default_factory=dict)  # thread -> CPU s per s

    @property
    def matched(self) -> int:
        return len(self.latencies)

    @property
    def processed_per_s(self) -> float:
        return self.matched / self.seconds

    @property
    def achieved_rate(self) -> float:
        return self.sent / self.seconds

    @property
    def sustained(self) -> bool:
        return self.matched >= SUSTAINED_FRACTION * self.sent


def accounting(diagnostics: Dict[str, str]):
    """(frames received, frames accounted for) from the node's counters: every image frame is
    processed, dropped for one cause (bad_camera_info counts camera_info messages) or pending.
    Accounted is None for a node that does not count processed frames (older versions)."""
    frames = int(diagnostics.get('frames_received', 0))
    if 'frames_processed' not in diagnostics:
        return frames, None
    drops = sum(int(value) for key, value in diagnostics.items()
                if key.startswith('drops.') and key != 'drops.bad_camera_info')
    return frames, (int(diagnostics['frames_processed']) + drops
                    + int(diagnostics['frames_pending']))


class NodeRun:
    """matcher_node in another process, the replay client, and an optional profiler."""

    def __init__(self, args, backend: str, pairs, round_: int = 1):
        from rclpy.qos import qos_profile_sensor_data

        from loftr_ros.testing.client import MatcherClient, NodeProcess
        parameters = {'matcher.backend': backend, 'diagnostics.period': 0.5}
        for item in args.set:
            name, _, value = item.partition(':=')
            parameters[name] = value
        files = args.params_file or [str(REPO / 'config' / 'stereo_matcher.yaml')]
        self.node = NodeProcess(parameters, ros_args=[
            argument for path in files for argument in ('--params-file', path)])
        # A camera driver's QoS: best effort, the newest sample only.
        self.client = MatcherClient(name='bench_node_client', qos=qos_profile_sensor_data)
        self.player = Player(self.client, pairs)
        self.round = round_
        try:
            self.client.wait_for_subscribers(TOPICS, timeout=300.0, process=self.node)
        except TimeoutError as error:
            self.close()
            raise SystemExit(f'matcher_node did not start: {error}') from None
        self.profiler = None

    def start_profile(self, path: Path, seconds: float):
        py_spy = shutil.which('py-spy')
        if py_spy is None:
            raise SystemExit('--profile needs py-spy (pip install py-spy)')
        path.parent.mkdir(parents=True, exist_ok=True)
        self.profiler = subprocess.Popen(
            [py_spy, 'record', '--pid', str(self.node.process.pid), '--duration',
             str(int(seconds)), '--rate', '50', '--threads', '--gil', '--subprocesses',
             '--nonblocking', '--format', 'raw', '--output', str(path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

    def phase(self, rate: float, warmup: float, seconds: float, profile: Optional[Path] = None,
              rss: bool = False) -> Phase:
        """Play `warmup` then `seconds` at `rate`; wait for the last Matches; collect."""
        self.player.play(rate, warmup) if warmup else None
        if profile is not None:
            self.start_profile(profile, seconds)
        rss_start = self.node.rss_mib() if rss else None
        clock = ThreadClock(self.node.process.pid)
        stamps = self.player.play(rate, seconds)
        played = (stamps[-1] - stamps[0]) * 1e-9 + 1.0 / rate if stamps else seconds
        cpu = clock.shares(played)
        # The last pairs still in work: wait out two of the matcher's slowest runs.
        matcher_p95 = float(self.client.latest_diagnostics().get('matcher_p95_ms', 'nan'))
        time.sleep(max(1.5, 2e-3 * matcher_p95 if math.isfinite(matcher_p95) else 10.0))
        diagnostics = self.client.diagnostics_after(time.monotonic(), timeout=30)
        rss_end = self.node.rss_mib() if rss else None
        if self.profiler is not None:
            self.profiler.wait(timeout=seconds + 60)
            self.profiler = None
        with self.client.lock:
            received = dict(self.client.received_ns)
        latencies = [(received[stamp] - stamp) * 1e-9 for stamp in stamps if stamp in received]
        return Phase(rate, self.round, len(stamps), played, latencies, os.getloadavg()[0],
                     diagnostics,
                     2 * self.player.index, (rss_start, rss_end) if rss else (), cpu)

    def close(self):
        self.client.close()
        return self.node.stop()


def process_tree(pid: int) -> List[int]:
    """`pid` and its descendants (the node and its matching process)."""
    pids, found = [pid], []
    while pids:
        current = pids.pop()
        found.append(current)
        for task in Path(f'/proc/{current}/task').iterdir():
            try:
                pids += [int(child) for child in (task / 'children').read_text().split()]
            except OSError:  # the thread ended meanwhile
                pass
    return found


def python_thread_names(pid: int) -> Dict[int, str]:
    """tid -> Python thread name of the threads running Python code, from py-spy dump ({}
    without py-spy): the kernel names them all 'python'."""
    py_spy = shutil.which('py-spy')
    if py_spy is None:
        return {}
    dump = subprocess.run([py_spy, 'dump', '--pid', str(pid), '--nonblocking'],
                          capture_output=True, text=True).stdout
    return {int(tid): name for tid, name in
            re.findall(r'^Thread (\d+) \(\w+\): "([^"]*)"', dump, re.MULTILINE)}


class ThreadClock:
    """CPU time per thread of the node's process and its matching process (Linux /proc),
    labelled 'node'/'model' and by Python thread name ('native' for threads without Python:
    DDS, OpenMP)."""

    def __init__(self, pid: int):
        self.labels = {}  # /proc/PID/task/TID -> label
        for role, process in zip(('node', 'model'), process_tree(pid)):
            names = python_thread_names(process)
            for task in Path(f'/proc/{process}/task').iterdir():
                self.labels[task] = f"{role} {names.get(int(task.name), 'native')}"
        self.start = self.seconds()

    def seconds(self) -> Dict[Path, float]:
        ticks = os.sysconf('SC_CLK_TCK')
        used = {}
        for task in self.labels:
            try:
                stat = (task / 'stat').read_text()
            except OSError:  # the thread ended meanwhile
                continue
            fields = stat[stat.rindex(')') + 2:].split()
            used[task] = (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
        return used

    def shares(self, seconds: float) -> Dict[str, float]:
        """CPU seconds per second of wall time since the start, per label (threads of one
        label summed), the idle ones left out."""
        shares = Counter()
        for task, used in self.seconds().items():
            shares[self.labels[task]] += (used - self.start.get(task, used)) / seconds
        return {label: share for label, share in shares.most_common() if share >= 0.005}


# -- the runs ----------------------------------------------------------------------------

def fixed_rates(args, backend, pairs) -> List[Phase]:
    """Each rate of --rates with a fresh node, --rounds times over."""
    phases = []
    for round_ in range(1, args.rounds + 1):
        for rate in (float(r) for r in args.rates.split(',')):
            run = NodeRun(args, backend, pairs, round_)
            try:
                profile = (args.profile / f'{backend}_{rate:g}hz_{round_}.txt' if args.profile
                           else None)
                phases.append(run.phase(rate, args.warmup, args.seconds, profile))
            finally:
                run.close()
            print(phase_line(phases[-1]), flush=True)
            if profile is not None:
                print(profile_summary(profile), flush=True)
    return phases


def max_sustained_rate(args, backend, pairs):
    """ros2_benchmark's search: binary search (in ratios) for the highest sustained rate, then
    a linear scan upwards from it. Returns (rate, probes)."""
    lower, upper = (float(v) for v in args.search_range.split(','))
    run = NodeRun(args, backend, pairs)
    probes = []

    def probe(rate):
        probes.append(run.phase(rate, 2.0, args.probe_seconds))
        print('  probe ' + phase_line(probes[-1]), flush=True)
        time.sleep(1.0)
        return probes[-1].sustained

    try:
        if not probe(lower):
            return 0.0, probes
        while upper / lower > SEARCH_RESOLUTION:
            middle = math.sqrt(lower * upper)
            if probe(middle):
                lower = middle
            else:
                upper = middle
        while lower * SEARCH_RESOLUTION <= float(args.search_range.split(',')[1]):
            if not probe(lower * SEARCH_RESOLUTION):
                break
            lower *= SEARCH_RESOLUTION
    finally:
        run.close()
    return lower, probes


def soak(args, backend, pairs) -> Phase:
    run = NodeRun(args, backend, pairs)
    try:
        return run.phase(args.latency_rate, args.warmup, args.soak_minutes * 60, rss=True)
    finally:
        run.close()


# -- reporting ---------------------------------------------------------------------------

def ms(values_s, q) -> str:
    return f'{np.percentile(values_s, q) * 1e3:.0f}' if len(values_s) else 'n/a'


def drops_text(diagnostics) -> str:
    drops = {key[6:]: value for key, value in diagnostics.items()
             if key.startswith('drops.') and value != '0'}
    return ', '.join(f'{cause} {number}' for cause, number in drops.items()) or 'none'


def phase_line(phase: Phase) -> str:
    d = phase.diagnostics
    frames, accounted = accounting(d)
    return (f'{phase.rate:g} Hz: sent {phase.sent} pairs ({phase.achieved_rate:.2f}/s), '
            f'matched {phase.matched} ({phase.processed_per_s:.2f}/s), latency p50/p95 '
            f'{ms(phase.latencies, 50)}/{ms(phase.latencies, 95)} ms, matcher p50/p95 '
            f"{d.get('matcher_p50_ms')}/{d.get('matcher_p95_ms')} ms; node: frames "
            f'{frames} of {phase.frames_sent} sent, accounted {accounted}, '
            f'{drops_text(d)}; load {phase.load:.1f}; node CPU per thread '
            + ', '.join(f'{name} {share:.2f}' for name, share in phase.thread_cpu.items()))


def accounted_text(frames: int, accounted: Optional[int]) -> str:
    if accounted is None:
        return 'n/a'
    return 'exact' if accounted == frames else f'{accounted} != {frames}'


def model_busy(phase: Phase) -> float:
    """Processed pairs/s times the matcher's median time per pair: the share of the time the
    model was working, about 1 when it never waited for input, whatever the machine's load
    made its time per pair (rates are compared within one run; this compares across loads)."""
    return phase.processed_per_s * float(phase.diagnostics.get('matcher_p50_ms', 'nan')) / 1e3


def fixed_table(label, phases: List[Phase]) -> List[str]:
    firsts = {}
    for phase in phases:
        firsts.setdefault(phase.round, phase.processed_per_s or float('nan'))
    lines = [f'Fixed input rates ({label}); latency = image stamp -> Matches received, ms; '
             'matcher = the model\'s own time in the node, overhead = the rest of image '
             'arrival -> Matches published (both from its /diagnostics), ms.', '',
             '| round | input Hz | pairs sent (/s) | processed pairs/s | vs first | model busy | '
             'latency p50 / p95 / max | matcher p50 / p95 | p95 / matcher p95 | node overhead '
             'p50 / p95 | node frames (of sent) | accounted | drops | load |',
             '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|']
    for phase in phases:
        d = phase.diagnostics
        frames, accounted = accounting(d)
        matcher_p95 = float(d.get('matcher_p95_ms', 'nan'))
        p95 = float(np.percentile(phase.latencies, 95) * 1e3) if phase.latencies else math.nan
        lines.append(
            f'| {phase.round} | {phase.rate:g} | {phase.sent} ({phase.achieved_rate:.2f}) | '
            f'{phase.processed_per_s:.2f} | {phase.processed_per_s / firsts[phase.round]:.0%} | '
            f'{model_busy(phase):.2f} | {ms(phase.latencies, 50)} / {ms(phase.latencies, 95)} / '
            f'{ms(phase.latencies, 100)} | {d.get("matcher_p50_ms")} / '
            f'{d.get("matcher_p95_ms")} | {p95 / matcher_p95:.2f} | {d.get("overhead_p50_ms")} / '
            f'{d.get("overhead_p95_ms")} | {frames} ({phase.frames_sent})'
            f' | {accounted_text(frames, accounted)} | '
            f'{drops_text(d)} | {phase.load:.1f} |')
    return lines


def pooled_table(label, phases: List[Phase]) -> List[str]:
    """Per rate, over the rounds: processed pairs/s (matched / seconds), its ratio to the first
    rate, latency percentiles of all matched pairs, and the matcher's p95 per round."""
    rates = list(dict.fromkeys(phase.rate for phase in phases))
    pooled = {}
    for rate in rates:
        of_rate = [phase for phase in phases if phase.rate == rate]
        matched = sum(phase.matched for phase in of_rate)
        seconds = sum(phase.seconds for phase in of_rate)
        latencies = [value for phase in of_rate for value in phase.latencies]
        matcher = [float(phase.diagnostics.get('matcher_p95_ms', 'nan')) for phase in of_rate]
        pooled[rate] = (matched / seconds, latencies, matcher)
    first = pooled[rates[0]][0] or float('nan')
    lines = [f'Over {max(phase.round for phase in phases)} round(s) ({label}): processed pairs/s '
             '= pairs matched / seconds, all rounds; latency of all matched pairs, ms.', '',
             '| input Hz | processed pairs/s | vs first | latency p50 / p95 | matcher p95 per '
             'round | latency p95 / median matcher p95 |', '|---|---|---|---|---|---|']
    for rate in rates:
        rate_per_s, latencies, matcher = pooled[rate]
        p95 = np.percentile(latencies, 95) * 1e3 if latencies else math.nan
        lines.append(
            f'| {rate:g} | {rate_per_s:.2f} | {rate_per_s / first:.0%} | '
            f'{ms(latencies, 50)} / {ms(latencies, 95)} | '
            f'{", ".join(f"{value:.0f}" for value in matcher)} | '
            f'{p95 / np.median(matcher):.2f} |')
    return lines


def profile_summary(path: Path, top: int = 12) -> str:
    """Share of the GIL-holding samples per process and thread, and the hottest leaf
    functions, of a py-spy raw (collapsed) file."""
    threads, leaves, total = Counter(), Counter(), 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(' ')
        if not count.isdigit():
            continue
        frames = stack.split(';')
        process = ('model' if 'matching_process' in frames[0] else 'node'
                   ) if frames[0].startswith('process') else 'node'
        thread = next((frame for frame in frames if frame.startswith('thread')), '?')
        threads[f'{process} {thread}'] += int(count)
        leaves[f'{process} {frames[-1]}'] += int(count)
        total += int(count)
    if not total:
        return f'py-spy {path.name}: no samples'
    lines = [f'py-spy {path.name}: {total} GIL-holding samples']
    lines += [f'  {count / total:6.1%}  {thread}' for thread, count in threads.most_common()]
    lines += ['  hottest leaves:']
    lines += [f'  {count / total:6.1%}  {leaf}' for leaf, count in leaves.most_common(top)]
    return '\n'.join(lines)


def main():
    args = parse_args()
    pairs = load_bag_pairs(args.bag)
    for backend in args.backend or ['xfeat']:
        label = args.label or ' '.join([backend] + args.set)
        print(f'\n## {label}: {len(pairs)} stereo pairs of {args.bag}, looped, '
              f'{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}\n', flush=True)
        if args.soak_minutes:
            phase = soak(args, backend, pairs)
            print(phase_line(phase))
            print('\n'.join(fixed_table(f'{label}, soak {args.soak_minutes:g} min', [phase])))
            print(f'node RSS {phase.rss_mib[0]:.0f} -> {phase.rss_mib[1]:.0f} MiB')
            continue
        phases = fixed_rates(args, backend, pairs)
        print('\n' + '\n'.join(fixed_table(label, phases)), flush=True)
        print('\n' + '\n'.join(pooled_table(label, phases)), flush=True)
        if not args.no_search:
            rate, probes = max_sustained_rate(args, backend, pairs)
            print(f'\nmaximum sustained rate ({label}): {rate:.2f} Hz '
                  f'({SUSTAINED_FRACTION:.0%} of the pairs matched; {len(probes)} probes of '
                  f'{args.probe_seconds:g} s)')


if __name__ == '__main__':
    main()
