"""The Matcher in a process of its own, so that the process taking images in never waits for it.

Python runs one thread at a time per process (the GIL). XFeat with LighterGlue makes thousands
of small torch calls per pair, each releasing and re-taking the GIL; in one process with a ROS
executor every one of them queues behind the executor's Python code, and the executor behind
them, so the faster the camera, the slower the model (benchmarks/results/bench_node_cpu.md).
`MatchingProcess` runs ``python -m loftr_ros.core.matching_process`` instead: it builds the
Matcher, then answers one request at a time over a socket pair. Images travel through a shared
buffer (a memfd both processes map), so a request carries only their shapes and the settings;
results come back as MatchResults. The caller's process never imports torch.

`MatchingSession` is what the matching process keeps between requests: the Matcher and, for a
stream of frames (consecutive mode), the reference frame's features, computed once and reused
for every frame matched against it, or (tracks mode) the Tracker, which keeps the previous
frame's features and the live tracks. The settings that change at runtime (`config`, the keyframe
policy) come with every request from their one owner, the caller.

What matching raises there comes back here: a LoftrRosError as itself (an ImageError keeps its
cause), anything else (a bug, a backend's or OpenCV's error on odd input) as MatchFailedError
naming its type and where it was raised; the process goes on. A process that ended (killed, out
of memory, a crash in native code) is MatchingProcessError, and `restart` starts a new one with
the same settings (the static mask included). Masks (nonzero = usable): a static one for every
image is given when the process starts, a dynamic one with each image it applies to; they travel
like the images. Backends registered in the caller's process (`backends.BACKENDS`) are the
ones the matching process builds.

`close` ends the process, which returns all of the model's memory, CPU and GPU, to the system.
Linux (memfd, descriptor passing over a Unix socket), like the ROS 2 distributions it serves.
"""
import mmap
import os
import signal
import socket
import subprocess
import sys
import threading
import traceback
from multiprocessing import reduction
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Callable, Optional, Sequence, Tuple

import numpy as np

from loftr_ros.core.camera import CameraModel, StereoCalibration
from loftr_ros.core.config import MatcherConfig
from loftr_ros.core.backends import BACKENDS, ONNX_BACKENDS
from loftr_ros.core.errors import ImageError, LoftrRosError, MatchingProcessError
from loftr_ros.core.keyframe import KeyframePolicy
from loftr_ros.core.tracking.config import TrackerConfig
from loftr_ros.core.types import MatchResult

if TYPE_CHECKING:  # torch is imported in the matching process only
    from loftr_ros.core.matcher import Matcher
    from loftr_ros.core.tracking.frame import TrackedFrame
    from loftr_ros.core.tracking.tracker import Tracker

# torch's OpenMP threads wait for each other by spinning by default: with any other busy thread
# on the cores (a robot's VIO, drivers), a thread spins while the one it waits for is not
# scheduled. Measured (benchmarks/results/bench_tracks_cpu.md, 2 cores, xfeat tracks at 384 px)
# beside one busy process: 1.7 frames/s spinning, 17.8-18.9 with passive waits (which cost ~13 %
# on an otherwise idle machine). A user's own OMP_WAIT_POLICY wins.
_OPENMP_ENVIRONMENT = {'OMP_WAIT_POLICY': 'PASSIVE'}
# Each image starts at a multiple of this in the shared buffer.
ALIGNMENT = 64
# The shared buffer grows in steps of this (images of one stream rarely change size).
BUFFER_STEP = 1 << 20
# Seconds a matching process gets to end by itself once its connection is shut (it is idle,
# or finishes the pair in hand), then after SIGTERM, before it is killed.
STOP_GRACE_S = 1.0
STOP_TIMEOUT_S = 5.0

# An image in the shared buffer: (offset, shape, dtype.str); None for an absent mask.
Slot = Optional[Tuple[int, Tuple[int, ...], str]]


class MatchFailedError(LoftrRosError):
    """Matching raised an unexpected exception in the matching process: the text names its type,
    message and where it was raised."""

    cause = 'match_failed'


class PairImageError(ImageError):
    """An ImageError of one image of a pair matched image by image: `index` (0 or 1) says
    which, `error` is the ImageError itself."""

    def __init__(self, index: int, error: ImageError):
        super().__init__(str(error))
        self.index, self.error = index, error
        self.cause = error.cause

    def __reduce__(self):
        return (type(self), (self.index, self.error))


def error_in_words(error: BaseException) -> str:
    """'TypeName: message (at file:line in function)' of an unexpected exception."""
    where = traceback.extract_tb(error.__traceback__)
    at = f' (at {where[-1].filename.rsplit("/", 1)[-1]}:{where[-1].lineno} in ' \
         f'{where[-1].name})' if where else ''
    return f'{type(error).__name__}: {error}{at}'


class MatchingSession:
    """The matching process's state: the Matcher and the reference of a stream of frames."""

    def __init__(self, matcher: 'Matcher'):
        self.matcher = matcher
        self.reference = None   # (PreparedImage, CameraModel or None) of the reference frame
        self.tracker: Optional['Tracker'] = None  # tracks mode, made by the first frame
        self.prepared_images = 0

    def apply(self, config: MatcherConfig):
        """Use `config`'s runtime settings from now on (the fields the node may change)."""
        if config != self.matcher.config:
            self.matcher.config = config

    def match_pair(self, image0: np.ndarray, image1: np.ndarray,
                   camera0: Optional[CameraModel] = None,
                   camera1: Optional[CameraModel] = None,
                   one_by_one: bool = False,
                   masks: Sequence[Optional[np.ndarray]] = (None, None)) -> MatchResult:
        """Match two images (stereo, the service); the stream's reference is untouched.
        `one_by_one`: prepare each image on its own, so that a refused one is named
        (PairImageError), instead of as one batch (Matcher.match). `masks`: each image's
        dynamic mask or None."""
        self.prepared_images += 2
        if not one_by_one:
            prepared = self.matcher.prepare_batch([image0, image1], masks)
        else:
            prepared = [self._prepare_named(index, image, mask)
                        for index, (image, mask) in enumerate(zip((image0, image1), masks))]
        return self.matcher.add_preparation(
            self.matcher.match(*prepared, camera0, camera1), *prepared)

    def _prepare_named(self, index: int, image: np.ndarray, mask: Optional[np.ndarray]):
        """Image `index` of a pair prepared on its own; PairImageError naming it when refused."""
        try:
            return self.matcher.prepare(image, mask)
        except ImageError as error:
            raise PairImageError(index, error) from None

    def match_next(self, image: np.ndarray, camera: Optional[CameraModel],
                   policy: KeyframePolicy, every_frame: bool, reset: bool = False,
                   mask: Optional[np.ndarray] = None,
                   ) -> Tuple[Optional[MatchResult], bool]:
        """The next frame of a stream: matched against the reference (None for the first frame,
        or the first after `reset`), then taken as the new reference when there was none, when
        `every_frame` (match each frame to the one before) or when `policy` says so. Its
        features are computed once, here (with its dynamic `mask`), and kept while it is the
        reference. Returns (result, whether it became the reference)."""
        if reset:
            self.reference = None
        prepared = self.matcher.prepare(image, mask)
        self.prepared_images += 1
        result = None
        if self.reference is not None:
            reference, reference_camera = self.reference
            result = self.matcher.match(reference, prepared, reference_camera, camera)
            # The pair's cost includes this frame's extraction (not the reused reference's).
            result = self.matcher.add_preparation(result, prepared)
        replace = result is None or every_frame or policy.should_replace(result)
        if replace:
            self.reference = (prepared, camera)
        return result, replace

    def track(self, stamp_ns: int, images: Sequence[np.ndarray],
              cameras: Sequence[Optional[CameraModel]],
              calibration: Optional[StereoCalibration], settings: TrackerConfig,
              masks: Sequence[Optional[np.ndarray]], reset: bool = False,
              first_id: int = 0) -> 'TrackedFrame':
        """The next frame of the tracks: `images` (left, or left and right of one stamp,
        prepared as one batch), their camera models (None where unknown; a `calibration`
        stands in for missing ones and gives the stereo epipolar check) and dynamic masks.
        The Tracker is made with `settings` on the first frame, its ids counting from
        `first_id` (the caller's next id when an earlier matching process ended); `reset` ends
        every track first (the node saw the stamps jump back). A refused image of a stereo
        pair is named (PairImageError); nothing changes then."""
        from loftr_ros.core.tracking.tracker import Tracker
        if self.tracker is None:
            self.tracker = Tracker(self.matcher, settings, first_id)
        self.tracker.set_cameras(*cameras, calibration=calibration)
        self.prepared_images += len(images)
        try:
            return self.tracker.track(stamp_ns, images[0], images[1] if len(images) > 1 else None,
                                      masks[0], masks[1] if len(masks) > 1 else None, reset)
        except ImageError:
            if len(images) == 1:
                raise
            # Which one: each prepared on its own (the batch refused the pair as a whole).
            for index, (image, mask) in enumerate(zip(images, masks)):
                self._prepare_named(index, image, mask)
            raise


def _process_environment() -> dict:
    """The matching process's environment: this process's, with passive OpenMP waits unless
    set otherwise."""
    return {**_OPENMP_ENVIRONMENT, **os.environ}


class MatchingProcess:
    """A Matcher in another process (see the module docstring), used by one thread at a time.

    Raises what building the Matcher raises (ConfigError, BackendError, WeightsError), or
    MatchingProcessError when the process ends before it is ready. `config` is the owner of the
    matcher settings in force: assign a config that differs in its runtime settings to change
    them; every request sends it, and `used_config` is the one the last request was sent with
    (read it in the thread that made the request).
    """

    def __init__(self, config: MatcherConfig, mask: Optional[np.ndarray] = None):
        self.config = config
        # The config the last request was sent with (its results' settings and config_id).
        self.used_config = config
        # The static mask (HxW, nonzero = usable) applied to every image.
        self.mask = mask
        self.restarts = 0   # times `restart` started a new process
        self._lock = threading.Lock()
        self._start()

    def _start(self):
        ours, theirs = socket.socketpair()
        self._buffer: Optional[mmap.mmap] = None
        self._closed = False
        with theirs:
            # A session of its own: a terminal's Ctrl-C reaches the whole process group, and
            # one that came while this process still imported (before main ignores SIGINT)
            # printed a KeyboardInterrupt traceback. The caller ends it: closing the
            # connection, or SIGTERM (see close); it ends by itself when the caller dies.
            self.process = subprocess.Popen(
                [sys.executable, '-m', __name__, str(theirs.fileno())],
                pass_fds=[theirs.fileno()], start_new_session=True, env=_process_environment())
        self._connection = Connection(ours.detach())
        try:
            self.model_name, self.device = self._request((), lambda slots, config: (
                'start', config, self.mask, dict(BACKENDS), dict(ONNX_BACKENDS)))
        except BaseException:  # a bad configuration, or Ctrl-C while the model loads
            self.close()
            raise

    def restart(self):
        """End this process (if it still runs) and start a new one with the settings in force:
        after a MatchingProcessError. Raises what starting raises."""
        self.close()
        self.restarts += 1
        self._start()

    # -- requests ------------------------------------------------------------------------

    def match(self, image0: np.ndarray, image1: np.ndarray,
              camera0: Optional[CameraModel] = None,
              camera1: Optional[CameraModel] = None, one_by_one: bool = False,
              masks: Sequence[Optional[np.ndarray]] = (None, None)) -> MatchResult:
        """MatchingSession.match_pair of two images in the matching process."""
        return self._request([image0, image1, *masks], lambda slots, config: (
            'pair', config, slots[:2], camera0, camera1, one_by_one, slots[2:]))

    def match_next(self, image: np.ndarray, camera: Optional[CameraModel],
                   policy: KeyframePolicy, every_frame: bool, reset: bool = False,
                   mask: Optional[np.ndarray] = None,
                   ) -> Tuple[Optional[MatchResult], bool]:
        """MatchingSession.match_next in the matching process."""
        return self._request([image, mask], lambda slots, config: (
            'next', config, slots[0], camera, policy, every_frame, reset, slots[1]))

    def track(self, stamp_ns: int, images: Sequence[np.ndarray],
              cameras: Sequence[Optional[CameraModel]],
              calibration: Optional[StereoCalibration], settings: TrackerConfig,
              masks: Sequence[Optional[np.ndarray]], reset: bool = False,
              first_id: int = 0) -> 'TrackedFrame':
        """MatchingSession.track in the matching process."""
        count = len(images)
        return self._request([*images, *masks], lambda slots, config: (
            'track', config, stamp_ns, slots[:count], tuple(cameras), calibration,
            settings, slots[count:], reset, first_id))

    def prepared_images(self) -> int:
        """How many images the matching process has prepared (extracted features of)."""
        return self._request((), lambda slots, config: ('prepared_images',))

    def _request(self, images: Sequence[np.ndarray],
                 message: Callable[[list, MatcherConfig], tuple]):
        """Share `images`, send message(their slots, the config in force), return the reply's
        payload; `used_config` is that config from then on."""
        with self._lock:
            if self._closed:
                raise MatchingProcessError('matching process closed')
            # Read once: what the reply is computed with, whatever is assigned meanwhile.
            config = self.config
            self.used_config = config
            try:
                self._connection.send(message(self._share(images), config))
                kind, payload = self._connection.recv()
            except (EOFError, OSError):
                raise MatchingProcessError(
                    f'matching process (pid {self.process.pid}) ended with exit code '
                    f'{self._exit_code()}') from None
        if kind == 'error':
            raise payload
        if kind == 'failure':
            raise MatchFailedError(payload)
        return payload

    def _exit_code(self, timeout: float = STOP_TIMEOUT_S) -> Optional[int]:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def _share(self, images: Sequence[Optional[np.ndarray]]) -> list:
        """Copy `images` into the shared buffer (grown and handed over first when they do not
        fit); returns their slots (None for a None: no mask)."""
        slots, end = [], 0
        if all(image is None for image in images):
            return [None] * len(images)
        for image in images:
            if image is None:
                slots.append(None)
                continue
            offset = -(-end // ALIGNMENT) * ALIGNMENT
            slots.append((offset, image.shape, image.dtype.str))
            end = offset + image.nbytes
        if self._buffer is None or end > len(self._buffer):
            self._grow(-(-end // BUFFER_STEP) * BUFFER_STEP)
        for image, slot in zip(images, slots):
            if slot is not None:
                offset, shape, dtype = slot
                np.ndarray(shape, dtype, self._buffer, offset)[...] = image
        return slots

    def _grow(self, size: int):
        descriptor = os.memfd_create('loftr_ros_images', os.MFD_CLOEXEC)
        try:
            os.ftruncate(descriptor, size)
            buffer = mmap.mmap(descriptor, size)
            self._connection.send(('buffer', size))
            reduction.send_handle(self._connection, descriptor, self.process.pid)
        finally:
            os.close(descriptor)
        if self._buffer is not None:
            self._buffer.close()
        self._buffer = buffer

    # -- end -----------------------------------------------------------------------------

    def close(self) -> int:
        """End the matching process and return its exit code (0 when it ended by itself).
        A request in progress in another thread raises MatchingProcessError at once."""
        try:
            # Wakes a thread waiting for a reply (EOF), and the process sees EOF or EPIPE.
            with socket.socket(fileno=os.dup(self._connection.fileno())) as connection:
                connection.shutdown(socket.SHUT_RDWR)
        except OSError:  # closed already
            pass
        code = self._exit_code(STOP_GRACE_S)
        if code is None:
            self.process.terminate()
            code = self._exit_code()
        if code is None:
            self.process.kill()
            code = self.process.wait()
        with self._lock:
            if not self._closed:
                self._closed = True
                self._connection.close()
                if self._buffer is not None:
                    self._buffer.close()
                    self._buffer = None
        return code


# -- the matching process ------------------------------------------------------------------

def _image(buffer: mmap.mmap, slot: Slot) -> Optional[np.ndarray]:
    """A copy of an image of the shared buffer (the caller overwrites the buffer with the next
    request, and a reference frame is kept longer than that); None for no slot."""
    if slot is None:
        return None
    offset, shape, dtype = slot
    return np.array(np.ndarray(shape, dtype, buffer, offset))


def _handle(session: MatchingSession, buffer: mmap.mmap, message):
    kind, config, *arguments = message
    session.apply(config)
    if kind == 'pair':
        slots, camera0, camera1, one_by_one, masks = arguments
        return session.match_pair(*(_image(buffer, slot) for slot in slots), camera0, camera1,
                                  one_by_one, [_image(buffer, slot) for slot in masks])
    if kind == 'track':
        stamp_ns, slots, cameras, calibration, settings, masks, reset, first_id = arguments
        return session.track(stamp_ns, [_image(buffer, slot) for slot in slots], cameras,
                             calibration, settings, [_image(buffer, slot) for slot in masks],
                             reset, first_id)
    slot, camera, policy, every_frame, reset, mask = arguments
    return session.match_next(_image(buffer, slot), camera, policy, every_frame, reset,
                              _image(buffer, mask))


def serve(connection: Connection):
    """Answer requests until the connection closes: the first one builds the Matcher."""
    from loftr_ros.core.matcher import Matcher  # torch: here, not in the caller's process
    _, config, mask, backends, onnx_backends = connection.recv()
    BACKENDS.update(backends)
    ONNX_BACKENDS.update(onnx_backends)
    try:
        session = MatchingSession(Matcher(config, mask))
    except LoftrRosError as error:
        connection.send(('error', error))
        return
    matcher = session.matcher
    connection.send(('ready', (matcher.model_name, str(matcher.device))))
    buffer = None
    while True:
        try:
            message = connection.recv()
        except EOFError:  # the caller closed the connection or ended
            return
        if message[0] == 'buffer':
            descriptor = reduction.recv_handle(connection)
            if buffer is not None:
                buffer.close()
            buffer = mmap.mmap(descriptor, message[1])
            os.close(descriptor)
            continue
        if message[0] == 'prepared_images':
            connection.send(('result', session.prepared_images))
            continue
        try:
            reply = ('result', _handle(session, buffer, message))
        except LoftrRosError as error:
            reply = ('error', error)
        # Whatever else one request raises (a bug, a backend's or OpenCV's error on odd input,
        # out of memory) costs that request only.
        except Exception as error:  # noqa: BLE001
            reply = ('failure', error_in_words(error))
        connection.send(reply)


def main(argv=None) -> int:
    # The caller decides when this process ends (a SIGINT sent to it by pid too).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    descriptor = int((argv or sys.argv)[1])
    with Connection(descriptor) as connection:
        try:
            serve(connection)
        except (BrokenPipeError, ConnectionResetError):  # the caller ended mid-request
            pass
    return 0


if __name__ == '__main__':
    # Run by its package name, not as __main__: the exceptions and results sent back are
    # pickled by their module's name, which the caller imports.
    from loftr_ros.core import matching_process
    code = matching_process.main()
    # At once: the interpreter's teardown with torch loaded takes seconds and frees nothing
    # that ending the process does not.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
