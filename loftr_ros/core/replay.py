"""Replaying a bag's image pairs through a Matcher, as the node matches them live.

    options = ReplayOptions(mode='consecutive', topic='/cam0/image_raw', max_pairs=100)
    with BagReader(path) as reader:
        for prepared in prepared_pairs(matcher, iterate_pairs(reader, options), skipped.append):
            result = match_pair(matcher, prepared)

A frame that ends one pair and starts the next (consecutive mode) is prepared once and its
features reused, as the node does, and each result's timings hold what its pair cost. Used by
``loftr-ros eval`` and ``loftr-ros record``; in their tracks mode, `tracked_frames` feeds the
pairs' frames to a Tracker instead.
"""
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, NamedTuple, Optional, Tuple

import numpy as np

from loftr_ros.core.bag import BagReader, Frame, FramePair, consecutive_pairs, stereo_pairs
from loftr_ros.core.camera import CameraModel
from loftr_ros.core.errors import ImageError
from loftr_ros.core.sync import StereoSynchronizer
from loftr_ros.core.types import MatchResult

if TYPE_CHECKING:  # torch is imported only when a Matcher is built
    from loftr_ros.core.backends.base import PreparedImage
    from loftr_ros.core.matcher import Matcher
    from loftr_ros.core.tracking import TrackedFrame, Tracker

MODES = ('stereo', 'consecutive')


@dataclass(frozen=True)
class ReplayOptions:
    """Which pairs of a bag are matched."""

    # 'stereo': left/right frames paired by header stamp; 'consecutive': frames of one topic.
    mode: str = 'stereo'
    left: str = '/cam0/image_raw'
    right: str = '/cam1/image_raw'
    topic: str = '/cam0/image_raw'
    # Stereo: largest stamp difference of a pair (0: exact).
    slop_ns: int = 0
    # Consecutive: frame i is paired with frame i + step, for every step-th frame.
    step: int = 1
    # Frame index range (of the left or only topic), inclusive; None: unbounded.
    first: Optional[int] = None
    last: Optional[int] = None
    # Time window in seconds from the bag's start, inclusive; None: unbounded.
    start: Optional[float] = None
    end: Optional[float] = None
    # Stop after this many pairs.
    max_pairs: Optional[int] = None


def iterate_pairs(reader: BagReader, options: ReplayOptions,
                  synchronizer: Optional[StereoSynchronizer] = None) -> Iterator[FramePair]:
    """The pairs the options select, at most `max_pairs`. Pass a synchronizer to read its
    stereo drop counts afterwards."""
    if options.mode == 'stereo':
        pairs = stereo_pairs(reader, options.left, options.right, options.slop_ns,
                             options.first, options.last, options.start, options.end,
                             synchronizer)
    else:
        pairs = consecutive_pairs(reader, options.topic, options.step, options.first,
                                  options.last, options.start, options.end)
    for count, pair in enumerate(pairs):
        if options.max_pairs is not None and count >= options.max_pairs:
            return
        yield pair


class PreparedPair(NamedTuple):
    """A pair with its decoded images and their PreparedImages; `fresh`: those prepared for this
    pair (the other one, if any, is the previous pair's current frame, reused)."""
    pair: FramePair
    image0: np.ndarray
    image1: np.ndarray
    prepared0: 'PreparedImage'
    prepared1: 'PreparedImage'
    fresh: Tuple['PreparedImage', ...]


def prepared_pairs(matcher: 'Matcher', pairs: Iterable[FramePair],
                   on_skip: Callable[[ImageError], None]) -> Iterator[PreparedPair]:
    """Each pair, its images decoded and prepared. A pair with an image that does not decode,
    is above the limits or that the Matcher refuses is skipped and `on_skip` gets the
    ImageError, its message naming the frame and its `cause` (bad_image, image_too_large): one
    bad frame does not end a run. A frame that ends one pair and starts the next
    (consecutive mode) is prepared once and its features reused, as the node does; the two
    images of a stereo pair are prepared as one batch, as Matcher.match prepares them in the
    node. Match with `match_pair`."""
    last_frame, last_prepared = None, None
    for pair in pairs:
        reused = pair.frame0 is last_frame
        try:
            image0, image1 = pair.frame0.image, pair.frame1.image
            if reused:
                prepared0, prepared1 = last_prepared, _prepare(matcher, pair.frame1, image1)
            else:
                prepared0, prepared1 = _prepare_both(matcher, pair, image0, image1)
        except ImageError as error:
            on_skip(error)
            last_frame = None
            continue
        last_frame, last_prepared = pair.frame1, prepared1
        fresh = (prepared1,) if reused else (prepared0, prepared1)
        yield PreparedPair(pair, image0, image1, prepared0, prepared1, fresh)


def _prepare(matcher: 'Matcher', frame, image: np.ndarray) -> 'PreparedImage':
    """matcher.prepare(image), its ImageError naming the frame as a decoding error does."""
    try:
        return matcher.prepare(image)
    except ImageError as error:
        raise type(error)(f'{frame.topic} message {frame.index}: {error.cause}: {error}'
                          ) from None


def _prepare_both(matcher: 'Matcher', pair: FramePair, image0: np.ndarray, image1: np.ndarray):
    """Both images of a pair prepared as one batch (a stereo pair), an ImageError naming the
    frame the matcher refuses."""
    try:
        return matcher.prepare_batch([image0, image1])
    except ImageError:
        # Again one by one, which names the frame.
        return (_prepare(matcher, pair.frame0, image0), _prepare(matcher, pair.frame1, image1))


def match_pair(matcher: 'Matcher', prepared: PreparedPair, camera0: Optional[CameraModel] = None,
               camera1: Optional[CameraModel] = None) -> MatchResult:
    """The MatchResult of a prepared pair; its timings count the images prepared for it, i.e.
    the pair's whole cost but for a reused reference frame."""
    result = matcher.match(prepared.prepared0, prepared.prepared1, camera0, camera1)
    return matcher.add_preparation(result, *prepared.fresh)


def tracked_frames(tracker: 'Tracker', pairs: Iterable[FramePair],
                   on_skip: Callable[[ImageError], None],
                   ) -> Iterator[Tuple[Frame, Optional[Frame], 'TrackedFrame']]:
    """(left frame, right frame or None, TrackedFrame) of each frame of the pairs, in order: a
    stereo pair is one frame (left and right), consecutive pairs give their frames once each.
    A frame with an image that does not decode or that the Matcher refuses is skipped and
    `on_skip` gets the ImageError naming it."""
    last = None
    for pair in pairs:
        if pair.frame0.topic != pair.frame1.topic:
            frames = [(pair.frame0, pair.frame1)]
        else:
            frames = [(frame, None) for frame in (pair.frame0, pair.frame1) if frame is not last]
            last = pair.frame1
        for left, right in frames:
            try:
                images = [frame.image for frame in (left, right) if frame is not None]
            except ImageError as error:  # decoding errors name their frame
                on_skip(error)
                continue
            try:
                tracked = tracker.track(left.stamp_ns, *images)
            except ImageError as error:
                on_skip(type(error)(f'{left.topic} message {left.index}: {error.cause}: {error}'))
                continue
            yield left, right, tracked
