"""What the matcher node counts, how it reports it on /diagnostics, and its throttled warnings.

The subscription callbacks and the worker count into one :class:`Statistics`; a timer turns it
into a ``diagnostic_msgs/DiagnosticStatus`` (:class:`DiagnosticsReport`) with the rates since
the previous report and percentiles of the recent samples.
"""
import re
import threading
import time
from collections import Counter, deque
from typing import Dict, Mapping, Optional

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

# Latency/match-count samples kept for the diagnostics percentiles.
STATS_WINDOW = 200
# Seconds between two warnings with the same topic, cause and reason.
WARN_THROTTLE_S = 5.0
# Latency is the node's ROS clock at publication minus the image stamp. A stamp further from
# that clock than this comes from another clock (a bag played without --clock or a node without
# use_sim_time, /clock not yet received, a camera clock never synchronised): not a latency.
MAX_LATENCY_S = 60.0
# Throttle keys (topic, cause, reason) kept apart at most; see ThrottledWarnings.
MAX_THROTTLE_KEYS = 256
# Longest warning text logged (input-controlled strings such as an encoding can be megabytes).
MAX_WARNING_CHARS = 500
_NUMBERS = re.compile(r'[-+]?\d+(\.\d+)?(e[-+]?\d+)?')


def diagnostics_status_name(node: str) -> str:
    """Name of the /diagnostics status of the matcher node `node` (its fully qualified name):
    what the node publishes and what clients filter on."""
    return f'{node}: matcher'


class Statistics:
    """Counters and recent samples for /diagnostics; written by several threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.frames = 0            # images received (all topics)
        self.jobs = 0              # pairs (stereo) or frames (consecutive) handed to the worker
        self.processed = 0         # Matches published
        self.frames_processed = 0  # frames the worker finished: in a published pair, or the
        #                            first frame of a stream (a reference, matched later)
        self.frames_in_worker = 0  # frames handed to the worker, waiting or in work
        self.resets = 0            # stamps jumped backwards: state reset
        self.overlays = 0          # overlay images published
        self.keyframes = 0         # consecutive mode: reference frames taken
        self.drops = Counter()     # cause -> image frames that were not matched
        self.camera_info_refused = Counter()  # reason -> camera_info messages not used
        self.service_requests = 0  # ~/match_images calls
        self.service_refused = Counter()      # cause -> calls answered without matches
        self.latency = deque(maxlen=STATS_WINDOW)     # image stamp -> publish, seconds
        self.off_clock = 0         # Matches whose stamp was beyond MAX_LATENCY_S of the clock
        self.clock_offset = None   # the last one's clock - stamp in seconds; None if in range
        self.processing = deque(maxlen=STATS_WINDOW)  # arrival -> publish, seconds
        self.matching = deque(maxlen=STATS_WINDOW)    # the matcher's own time, seconds
        self.overhead = deque(maxlen=STATS_WINDOW)    # processing - matching: the node's part
        self.matches = deque(maxlen=STATS_WINDOW)

    def count(self, attribute: str):
        with self.lock:
            setattr(self, attribute, getattr(self, attribute) + 1)

    def drop(self, cause: str, number: int = 1):
        with self.lock:
            self.drops[cause] += number

    def count_camera_info(self, reason: str):
        """A camera_info message not used: 'invalid' (refused when it arrived) or 'wrong_size'
        (valid, but for another image size than the frames')."""
        with self.lock:
            self.camera_info_refused[reason] += 1

    def service_call(self, refused_cause: Optional[str] = None):
        """A ~/match_images call answered: with matches, or refused for `refused_cause`."""
        with self.lock:
            self.service_requests += 1
            if refused_cause is not None:
                self.service_refused[refused_cause] += 1

    def submitted(self, frames: int):
        """A job of `frames` frames handed to the worker."""
        with self.lock:
            self.jobs += 1
            self.frames_in_worker += frames

    def superseded(self, frames: int):
        """A waiting job of `frames` frames replaced by a newer one."""
        self.finished(frames, 'superseded')

    def finished(self, frames: int, cause: Optional[str] = None):
        """The worker is done with a job of `frames` frames: processed, or dropped for
        `cause`."""
        with self.lock:
            self.frames_in_worker -= frames
            if cause is None:
                self.frames_processed += frames
            else:
                self.drops[cause] += frames

    def published(self, latency: float, processing: float, matching: float, matches: int):
        """One Matches published: its latency (a clock offset beyond MAX_LATENCY_S), processing
        and matcher time (seconds) and match count."""
        with self.lock:
            self.processed += 1
            if abs(latency) <= MAX_LATENCY_S:
                self.latency.append(latency)
                self.clock_offset = None
            else:
                self.off_clock += 1
                self.clock_offset = latency
            self.processing.append(processing)
            self.matching.append(matching)
            self.overhead.append(processing - matching)
            self.matches.append(matches)


def _percentile_ms(samples, q) -> str:
    return f'{np.percentile(samples, q) * 1e3:.1f}' if samples else 'n/a'


def _off_clock_message(offset: float, clock: str) -> str:
    hint = ('is /clock published (ros2 bag play --clock)?' if clock == 'sim_time' else
            'replaying a bag? play it with --clock and set use_sim_time')
    return (f"image stamps {abs(offset):.0f} s {'behind' if offset > 0 else 'ahead of'} the "
            f'node clock ({clock}): latency not measured; {hint}')


class DiagnosticsReport:
    """The node's DiagnosticStatus, from its Statistics and the rates since the last report."""

    def __init__(self, stats: Statistics, name: str):
        self.stats = stats
        self.name = name
        self._last = (time.monotonic(), 0, 0, 0)  # (time, frames, jobs, processed)

    def restart_rates(self):
        """The next report's rates start now (after an inactive period of a lifecycle node)."""
        stats = self.stats
        with stats.lock:
            self._last = (time.monotonic(), stats.frames, stats.jobs, stats.processed)

    def status(self, identity: Mapping[str, str], hardware_id: str,
               other_drops: Counter, other_pending: int = 0,
               input_publishers: int = 0) -> DiagnosticStatus:
        """The status now. `identity`: the first values (mode, model, device, config_id, ...);
        `other_drops`, `other_pending`: frames dropped and frames waiting outside the
        Statistics (in the stereo synchronizer); `input_publishers`: publishers matched on the
        image topics (all of them). Every image frame received is processed, dropped or
        pending: frames_received = frames_processed + the drops (but bad_camera_info) +
        frames_pending, at every report."""
        now = time.monotonic()
        stats = self.stats
        with stats.lock:
            frames, jobs, processed = stats.frames, stats.jobs, stats.processed
            frames_processed = stats.frames_processed
            pending = stats.frames_in_worker + other_pending
            resets, overlays, keyframes = stats.resets, stats.overlays, stats.keyframes
            drops = dict(stats.drops + other_drops)
            camera_info_refused = dict(stats.camera_info_refused)
            service_requests, service_refused = stats.service_requests, dict(stats.service_refused)
            latency, processing = list(stats.latency), list(stats.processing)
            matching, overhead = list(stats.matching), list(stats.overhead)
            matches = list(stats.matches)
            off_clock, clock_offset = stats.off_clock, stats.clock_offset
        last_time, last_frames, last_jobs, last_processed = self._last
        elapsed = max(now - last_time, 1e-9)
        self._last = (now, frames, jobs, processed)
        values: Dict[str, str] = dict(identity)
        values.update({
            'input_frames_per_s': f'{(frames - last_frames) / elapsed:.2f}',
            'input_pairs_per_s': f'{(jobs - last_jobs) / elapsed:.2f}',
            'processed_pairs_per_s': f'{(processed - last_processed) / elapsed:.2f}',
            'frames_received': str(frames),
            'pairs_processed': str(processed),
            'frames_processed': str(frames_processed),
            'frames_pending': str(pending),
            'latency_p50_ms': _percentile_ms(latency, 50),
            'latency_p95_ms': _percentile_ms(latency, 95),
            'stamps_off_clock': str(off_clock),
            'processing_p50_ms': _percentile_ms(processing, 50),
            'processing_p95_ms': _percentile_ms(processing, 95),
            'matcher_p50_ms': _percentile_ms(matching, 50),
            'matcher_p95_ms': _percentile_ms(matching, 95),
            'overhead_p50_ms': _percentile_ms(overhead, 50),
            'overhead_p95_ms': _percentile_ms(overhead, 95),
            'matches_per_pair': f'{np.mean(matches):.1f}' if matches else 'n/a',
            'stamp_resets': str(resets),
            'overlays_published': str(overlays),
            'keyframes': str(keyframes),
            'drops_total': str(sum(drops.values())),
        })
        values.update({f'drops.{cause}': str(number) for cause, number in sorted(drops.items())})
        values.update({f'camera_info_refused.{reason}': str(number)
                       for reason, number in sorted(camera_info_refused.items())})
        values['service_requests'] = str(service_requests)
        values.update({f'service_refused.{cause}': str(number)
                       for cause, number in sorted(service_refused.items())})
        level = DiagnosticStatus.OK
        message = 'matching'
        if frames == last_frames and input_publishers:
            # What the node can tell of images DDS does not deliver: with the shipped
            # shared-memory profile a sample larger than its segment never arrives, silently.
            level, message = DiagnosticStatus.WARN, (
                f'no input images, though {input_publishers} publisher(s) are matched: if they '
                f'publish, their QoS may be incompatible, or their images too large for the DDS '
                f'transport (under best effort, images above the 32 MiB segment of '
                f'config/fastdds_local_shm.xml mostly never arrive)')
        elif frames == last_frames:
            level, message = DiagnosticStatus.WARN, 'no input images'
        elif processed == last_processed:
            level, message = DiagnosticStatus.WARN, 'input received but nothing matched'
        elif clock_offset is not None:
            level = DiagnosticStatus.WARN
            message = _off_clock_message(clock_offset, identity.get('latency_clock'))
        return DiagnosticStatus(
            level=level, name=self.name, message=message, hardware_id=hardware_id,
            values=[KeyValue(key=key, value=value) for key, value in values.items()])


class ThrottledWarnings:
    """Warnings at most every WARN_THROTTLE_S per (topic, cause, reason), each with the number
    of repeats it stood for.

    The reason is the text with its numbers taken out, so that one check's messages share a
    throttle whatever sizes or stamps they name, and a second, different reason of the same
    cause still shows. Input can vary the text without end (an encoding name, a format
    string), so after MAX_THROTTLE_KEYS keys the new reasons of a (topic, cause) share one
    throttle: the table and the log stay bounded.
    """

    def __init__(self, logger):
        self.logger = logger
        self._lock = threading.Lock()
        # (topic, cause, reason or None) -> (last time, suppressed)
        self._warned: Dict[tuple, tuple] = {}

    def warn(self, topic: str, cause: str, text: str):
        if len(text) > MAX_WARNING_CHARS:
            text = f'{text[:MAX_WARNING_CHARS]}... ({len(text)} characters)'
        key = (topic, cause, _NUMBERS.sub('#', text))
        now = time.monotonic()
        with self._lock:
            if key not in self._warned and len(self._warned) >= MAX_THROTTLE_KEYS:
                key = (topic, cause, None)
            last, suppressed = self._warned.get(key, (-1e9, 0))
            if now - last < WARN_THROTTLE_S:
                self._warned[key] = (last, suppressed + 1)
                return
            self._warned[key] = (now, 0)
        more = f' ({suppressed} more since the last warning)' if suppressed else ''
        self.logger.warning(f'{topic}: {cause}: {text}{more}')
