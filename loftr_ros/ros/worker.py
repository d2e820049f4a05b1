"""The matcher node's worker: the newest job, one at a time, matched in the matching process.

The executor's callbacks only convert, pair and hand over (`submit`); the worker's one thread
takes the newest job, has the MatchingProcess (loftr_ros.core.matching_process) match it,
and hands the result to the node's `publish`. A job still waiting when a newer one arrives is
superseded, so latency and memory stay bounded whatever the input rate. The service's requests
go before the next job. The thread spends a match waiting on a socket, without the GIL: the
model's Python runs in the other process and never competes with the executor's.

Every frame handed over is accounted for in the node's Statistics: matched, dropped with a
cause, or still pending (waiting or in work). Whatever a job raises costs that job only: a
refused image is named on its topic (bad_image, image_too_large; in a stereo pair its partner is
dropped as partner_refused), anything else is match_failed, said with its type and where it was
raised. A lifecycle node's deactivate pauses the worker: the waiting job and a match in progress
are dropped as deactivated, not published. When the matching process ends (killed, out of
memory, a crash in native code), the job in hand is match_failed and the worker starts a new one
with the settings in force (diagnostics: matcher_restarts); a consecutive stream starts again
from its next frame. Only when that fails does the worker stop and the node end (exit code 1).
"""
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Optional, Tuple, Union

import numpy as np
from rclpy.task import Future

from loftr_ros.core.camera import CameraModel
from loftr_ros.core.config import MatcherConfig
from loftr_ros.core.errors import ImageError, MatchingProcessError
from loftr_ros.core.keyframe import KeyframePolicy
from loftr_ros.core.matching_process import (MatchFailedError, MatchingProcess, PairImageError,
                                             error_in_words)
from loftr_ros.core.types import MatchResult
from loftr_ros.ros.diagnostics import Statistics, ThrottledWarnings

# Seconds destroy_node waits for the worker thread once the matching process has ended.
JOIN_TIMEOUT_S = 10.0


@dataclass
class Frame:
    """One converted image with what the worker needs to match and report it."""

    topic: str
    header: Any            # std_msgs/Header as received
    stamp_ns: int
    image: np.ndarray      # HxW or HxWx3 BGR; may be a view of the message buffer
    received: float        # time.monotonic() at arrival
    camera: Optional[CameraModel]
    mask: Optional[np.ndarray] = None  # the camera's latest dynamic mask at arrival


# A stereo pair (left, right) or, in consecutive mode, one frame.
Job = Union[Tuple[Frame, Frame], Frame]


# Where the service's requests are said in warnings.
SERVICE = '~/match_images'


def job_frames(job: Job) -> int:
    return 2 if isinstance(job, tuple) else 1


def job_topic(job: Job) -> str:
    """The topic a job's warnings name (a pair's: its right image's)."""
    return (job[1] if isinstance(job, tuple) else job).topic


class MatchingWorker:
    """Latest-wins matching of the node's jobs on one thread (see the module docstring).

    publish(result, its config, reference frame, current frame) runs on the worker thread; on_failure(text)
    too, once, when the matching process ended and could not be started again: the worker
    stops. running() is False once the node shuts down (a publish failing then is no error).
    wake_executor() makes the executor look at the service's awaited futures.
    """

    def __init__(self, matching: MatchingProcess, stats: Statistics,
                 warnings: ThrottledWarnings,
                 publish: Callable[[MatchResult, MatcherConfig, Frame, Frame], None],
                 running: Callable[[], bool], on_failure: Callable[[str], None],
                 wake_executor: Callable[[], None],
                 keyframe_policy: KeyframePolicy, every_frame: bool):
        self.matching = matching
        # Consecutive mode: when the current frame becomes the reference (changeable at
        # runtime; sent with every frame).
        self.keyframe_policy = keyframe_policy
        self.every_frame = every_frame
        self._stats = stats
        self._warnings = warnings
        self._publish = publish
        self._running = running
        self._on_failure = on_failure
        self._wake_executor = wake_executor
        self._cond = threading.Condition()
        self._pending: Optional[Job] = None    # newest job not yet taken
        self._reset = False                    # the next frame starts a new stream
        self._calls = deque()                  # the service's (image0, image1, future)
        self._stopping = False
        # False while a lifecycle node is inactive: nothing is published (see pause).
        self.publishing = True
        self._publish_lock = threading.Lock()
        # Consecutive mode: the frame new frames are matched against (the matching process
        # holds its features).
        self.reference: Optional[Frame] = None
        # Tracks mode: what tracks and publishes each job instead (loftr_ros.ros.tracks_mode).
        self.tracks = None
        self._thread = threading.Thread(target=self._run, name='matcher_worker', daemon=True)
        self._thread.start()

    # -- the executor's side -------------------------------------------------------------

    def submit(self, job: Job):
        """Hand a job over; a job still waiting is superseded by it."""
        self._stats.submitted(job_frames(job))
        with self._cond:
            if self._pending is not None:
                self._stats.superseded(job_frames(self._pending))
            self._pending = job
            self._cond.notify()

    def reset(self):
        """The input restarted (stamps jumped back): drop the waiting job, and the next frame
        starts a new stream (no reference)."""
        with self._cond:
            if self._pending is not None:
                self._stats.superseded(job_frames(self._pending))
                self._pending = None
            self._reset = True

    def pause(self):
        """Publish nothing from now on (a lifecycle node's deactivate): the waiting job is
        dropped (deactivated), a match in progress is not published (a publication under way
        ends first), and the next job starts a new stream."""
        with self._publish_lock:
            self.publishing = False
        with self._cond:
            if self._pending is not None:
                self._stats.finished(job_frames(self._pending), 'deactivated')
                self._pending = None
            self._reset = True

    def resume(self):
        """Publish again (a lifecycle node's activate)."""
        self.publishing = True

    def match_images(self, image0: np.ndarray, image1: np.ndarray) -> Future:
        """A Future of (MatchResult, the MatcherConfig it was matched with) of two images (the
        service), matched before the next job; it holds the LoftrRosError when they cannot be matched, and is cancelled when the
        worker stops first."""
        future = Future()
        with self._cond:
            if self._stopping:
                future.cancel()
                return future
            self._calls.append((image0, image1, future))
            self._cond.notify()
        return future

    def close(self):
        """Stop: end the matching process (a match in progress ends with it), then the
        thread. Requests not answered yet are cancelled."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self.matching.close()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=JOIN_TIMEOUT_S)
        with self._cond:
            for _, _, future in self._calls:
                future.cancel()
            self._calls.clear()

    # -- the worker thread ---------------------------------------------------------------

    def _run(self):
        while True:
            with self._cond:
                while not (self._calls or self._pending is not None or self._stopping):
                    self._cond.wait()
                if self._stopping:
                    return
                call, job, reset = None, None, False
                if self._calls:
                    call = self._calls.popleft()
                else:
                    job, self._pending = self._pending, None
                    reset, self._reset = self._reset, False
            if call is not None:
                ended, topic = self._answer(*call), SERVICE
            else:
                ended, topic = self._process(job, reset), job_topic(job)
            if self._stopping or not self._running():
                return  # the node ended the process, or shut down under the match
            if ended is not None and not self._restart(ended, topic):
                return

    def _restart(self, error: MatchingProcessError, topic: str) -> bool:
        """Start a new matching process after `error` (met on `topic`); False (said by
        on_failure) when that fails."""
        self._warnings.warn(topic, 'matcher_restart', f'{error}; starting a new one')
        self.reference = None  # its features were in the process that ended
        try:
            self.matching.restart()
        except Exception as restart_error:  # noqa: BLE001 -- the node ends, saying why
            if not self._stopping:
                self._on_failure(f'{error}; starting it again failed: '
                                 f'{error_in_words(restart_error)}')
            return False
        return True

    def _answer(self, image0, image1, future: Future) -> Optional[MatchingProcessError]:
        """Answer a service call; the MatchingProcessError when the process ended."""
        try:
            result = self.matching.match(image0, image1)
            future.set_result((result, self.matching.used_config))
        except Exception as error:  # noqa: BLE001 -- the future carries it to the service
            future.set_exception(error)
            return error if isinstance(error, MatchingProcessError) else None
        finally:
            self._wake_executor()
        return None

    def _process(self, job: Job, reset: bool) -> Optional[MatchingProcessError]:
        """Match and publish a job, counting its frames; the MatchingProcessError when the
        process ended."""
        frames = job if isinstance(job, tuple) else (job,)
        ended = None
        try:
            cause = self._size_mismatch(*job) if isinstance(job, tuple) else None
            if cause is None:
                cause = self._match_and_publish(job, frames, reset)
            self._stats.finished(len(frames), cause)
        except PairImageError as error:
            topic = frames[error.index].topic
            self._warnings.warn(topic, error.cause, f'{error.error}; skipped')
            self._stats.finished(1, error.cause)
            self._stats.finished(1, 'partner_refused')
        except ImageError as error:
            self._warnings.warn(job_topic(job), error.cause, f'{error}; skipped')
            self._stats.finished(len(frames), error.cause)
        except Exception as error:  # noqa: BLE001 -- costs this job only
            if isinstance(error, MatchingProcessError):
                ended = error
            if self._running() and not self._stopping:
                text = str(error) if isinstance(error, (MatchingProcessError, MatchFailedError)) \
                    else error_in_words(error)
                self._warnings.warn(job_topic(job), 'match_failed', f'{text}; skipped')
            self._stats.finished(len(frames), 'match_failed')
        return ended

    def _size_mismatch(self, left: Frame, right: Frame) -> Optional[str]:
        """The drop cause (said) when a pair's images differ in size, else None."""
        if left.image.shape[:2] == right.image.shape[:2]:
            return None
        (lh, lw), (rh, rw) = left.image.shape[:2], right.image.shape[:2]
        self._warnings.warn(right.topic, 'size_mismatch',
                            f'stereo images of different sizes: {lw}x{lh} on {left.topic}, '
                            f'{rw}x{rh} on {right.topic}; pair skipped')
        return 'size_mismatch'

    def _match_and_publish(self, job: Job, frames: Tuple[Frame, ...], reset: bool,
                           ) -> Optional[str]:
        """The drop cause when the job is not published."""
        if self.tracks is not None:
            return self._if_active(self.tracks.publish, self.tracks.track(frames, reset), frames)
        if isinstance(job, tuple):
            return self._process_stereo(*job)
        return self._process_consecutive(job, reset)

    def _process_stereo(self, left: Frame, right: Frame) -> Optional[str]:
        """Match and publish a pair; the drop cause when it is not published."""
        result = self.matching.match(left.image, right.image, left.camera, right.camera,
                                     one_by_one=True, masks=(left.mask, right.mask))
        return self._publish_if_active(result, left, right)

    def _publish_if_active(self, result: MatchResult, reference: Frame, current: Frame,
                           ) -> Optional[str]:
        """Publish unless paused; 'deactivated' (the drop cause) when paused."""
        # The config this result was matched with (the node may have changed it since).
        return self._if_active(self._publish, result, self.matching.used_config, reference,
                               current)

    def _if_active(self, publish: Callable, *arguments) -> Optional[str]:
        """publish(*arguments) unless paused; 'deactivated' (the drop cause) when paused."""
        with self._publish_lock:
            if not self.publishing:
                return 'deactivated'
            publish(*arguments)
        return None

    def _process_consecutive(self, frame: Frame, reset: bool) -> Optional[str]:
        if reset:
            self.reference = None
        result, replaced = self.matching.match_next(frame.image, frame.camera,
                                                    self.keyframe_policy, self.every_frame,
                                                    reset, frame.mask)
        cause = None
        if result is not None:
            cause = self._publish_if_active(result, self.reference, frame)
        if replaced:
            self.reference = frame
            self._stats.count('keyframes')
        return cause
