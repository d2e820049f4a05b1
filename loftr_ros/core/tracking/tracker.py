"""Feature tracks with persistent ids, mono or stereo, over any matching backend.

    tracker = Tracker(Matcher(MatcherConfig(backend='xfeat')), TrackerConfig(max_features=150))
    tracker.set_cameras(calibration=load_euroc_calibration('calibration.yaml'))  # optional
    frame = tracker.track(stamp_ns, left_image, right_image)   # right_image=None: mono
    frame.ids, frame.keypoints, frame.right_keypoints, frame.normalized, frame.velocities, ...

Per frame, each image is prepared once (`Matcher.prepare_batch`: the left and right images of
a stereo pair in one batch where the backend can), and the current left image is matched to the
previous left image (temporal) and, in stereo, to the right image of the same stamp; the
previous frame's per-image features are reused as they are.

**A track is a physical point**, defined by the patch around its FIRST observation (its
anchor). Each frame, for every live track:

1. *Prediction.* With a detector (xfeat, lightglue, opencv) the track rides on a keypoint: the
   temporal match of that keypoint (found by its exact position among the matches' image-0
   keypoints) gives the keypoint that carries the track on, where it agrees with the matches
   around it (a wrong match would throw the track off its search window). Detector-free matchers (eloftr,
   loftr, hf) have no per-image keypoints (their image-0 keypoints lie on a coarse grid), and
   neither has a track whose keypoint found no match: there the pair's matches are a motion
   field, and the affine map fitted robustly to the 8 matches nearest to the track's previous
   position (:func:`loftr_ros.core.tracking.motion.local_motion`) predicts its new position.
2. *Location against the anchor.* The anchor patch (15x15 pixels of the frame the track was
   born in, warped by the affine motion between the anchor's frame and this one) is searched
   for within +-4 px of the prediction, and its position polished to the sub-pixel, by the NCC
   search and Lucas-Kanade steps of :mod:`loftr_ros.core.refinement`. The track goes on where
   the best correlation is at least ``min_ncc``.

Locating the first observation's patch, not the previous frame's, keeps errors from adding up
frame after frame (KLT's drift, and a keypoint's re-detection noise): the prediction only has
to land within the search window, and the position always refers to the same patch. The purity
tests on rendered ground truth (test/core/test_tracking.py) check this.

A track ends when it cannot be predicted (no keypoint match and no consistent matches around
it), when its anchor no longer correlates (occlusion, a strong change of view, the image
border), when it keeps moving off the motion of the matches around it (it slides along an edge
or with an occlusion's corner), when the matches under its patch show two motions (an occluding
edge runs through it), when it enters a masked pixel, when its step breaks the epipolar
geometry of the frame's tracks (RANSAC: essential matrix with a camera model, else
fundamental; ``ransac_threshold``), or when it is thinned out. Ended tracks are never revived.

**New features** (VINS's ``setMask`` and ``addPoints``): tracked features are thinned to
``min_distance`` px, longer tracks first; then new ones fill the frame up to ``max_features``,
at least ``min_distance`` px from every kept feature and from each other, strongest corners
first. Candidates are Shi-Tomasi corners with every backend: the anchor patch is what a track
is located by, and a corner's patch pins a position in both directions, where a learned
detector's keypoint may lie on an edge or a blob whose patch slides (on the rendered sequence,
xfeat keypoints as candidates left 98.9 % of the observations within 1 px of their points,
corners 99.5 %); a detector keypoint within a pixel of the new track carries it from the next
frame on. Candidates need structure in every direction (smaller structure-tensor eigenvalue at
least ``min_corner_quality`` of the frame's largest), and they are followed back into the
previous frame as a track would be followed forward: a candidate that fails there, whose patch
shows two motions, or beside which any part of its surroundings moves otherwise than it does
(an occluding edge: the point goes with one surface, its patch may follow the other) is not
started. So new features start only in a frame matched to the previous one: none in the first
frame after a start, a reset or a cut, where nothing could check them (VINS's tracker publishes
no features for its first image either). Ids count up from 0 and are never reused, not even
after a reset.

**Stereo**: every left feature is looked for in the right image of the same stamp the same way
(predicted by the stereo matches, its left patch located in the right image) and kept when it
obeys the stereo epipolar geometry (``stereo_threshold``: the calibrated constraint with a
StereoCalibration, else RANSAC's essential or fundamental matrix). The right observation
carries its left feature's id.

**Undistorted coordinates** (with camera models, :meth:`Tracker.set_cameras`): each
observation's undistorted normalized coordinates (x, y on the z = 1 plane) and its velocity
there, per second, from the same feature's coordinates in the previous frame (0 for new
features), as VINS-Fusion's feature tracker computes them (``ptsVelocity``).

**Stamps going backwards** (a bag restarted) reset the tracker: every track ends and new ones
start with new ids. An image the Matcher refuses (ImageError) changes nothing: the next good
frame continues the tracks.
"""
import dataclasses
import time
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple, Union

import cv2
import numpy as np

from loftr_ros.core.backends.base import PreparedImage
from loftr_ros.core.camera import CameraModel, StereoCalibration, sampson_distances
from loftr_ros.core.geometry import verify_matches
from loftr_ros.core.masks import usable_points
from loftr_ros.core.refinement import NCCRefinement, patch_ncc, sample_patches
from loftr_ros.core.stamps import NS_PER_S
from loftr_ros.core.tracking.config import TrackerConfig
from loftr_ros.core.tracking.frame import TrackedFrame
from loftr_ros.core.tracking.motion import (NEIGHBOURS, REACH, local_motion, match_noise,
                                            sector_motions)
from loftr_ros.core.tracking.neighbours import nearest_within, spread_out

ImageInput = Union[np.ndarray, PreparedImage]

# Template half-size (15x15 patches, as the matcher's refinement) and search radius around the
# prediction: a detector's keypoint lies within a pixel or two of its true position, and the
# local motion predicts to well under a pixel on smooth surfaces.
PATCH_HALF = 7
SEARCH = 4
# Correlation the whole-pixel search needs before the sub-pixel steps.
_SEARCH_MIN_NCC = 0.5
# A track whose prediction came from the motion field is carried on by a detector keypoint
# lying this close (pixels) to where it was located.
_KEYPOINT_SNAP = 1.0
# A detector keypoint's match carries its track only where it lands this close (pixels) to where
# the matches around the track take it: a wrong match (mutual nearest neighbours keep some)
# would throw the track off its anchor's search window.
_KEYPOINT_AGREEMENT = 0.75
# A track may move this far (pixels per frame, averaged exponentially with this weight for the
# latest frame) off the motion of the matches around it: the matches' noise averages out, a
# track that keeps moving off them slides (along an edge, or with an occlusion's corner). On the
# rendered sequence of test/core/test_tracking.py, (0.2, 0.4) let tracks slide by up to 4.5 px
# (xfeat; 98.9 % within 1 px of their points); (0.1, 0.13) averages over ~7 frames: every track
# within 2.4 px, 99.5 % (xfeat) and 99.7 % (opencv) within 1 px. (0.1, 0.2) ended half the
# real EuRoC tracks early on the matches' own noise; (0.1, 0.1) let an opencv track slide 3.2 px.
_MAX_SLIDE = 0.1
_SLIDE_WEIGHT = 0.13
# A patch (matches this far around its point, pixels) where at least 2 matches, and a share of
# them, move more than a few tenths of a pixel otherwise than its point straddles two motions:
# an occluding edge runs through it, and the point would follow the occluding surface. (pixels,
# share) for a new feature, and, looser (the matches' own noise must not end good tracks), for
# a track.
_PATCH_REACH = 12.0
_BIRTH_TWO_MOTIONS = (0.4, 0.3)
_TRACK_TWO_MOTIONS = (0.6, 0.5)
# A new feature's surroundings (the matches under its patch, within _PATCH_REACH pixels, at most
# _SECTOR_MATCHES of them) fall into _SECTORS angular sectors, and every sector must move with
# it: by the median of its matches, within _SECTOR_MOTION pixels. Beside an occluding edge the
# sectors across it move otherwise by the parallax between the two surfaces, while the point
# goes with one of them and its patch, which both share, with whichever has the stronger
# texture. On the rendered sequences of
# test/core/test_tracking.py a quarter of the new features had an occluding edge in their
# patch, and every track that ended more than 1.5 px off its point was one of them; a refined
# sector on the feature's own surface moves within ~0.1 px of it. (One frame's parallax is all
# there is to see: a track's own position is too noisy from frame to frame for the same check
# later on, and summing the sectors' motion over frames ended most tracks near any edge.)
_SECTORS = 8
_SECTOR_MATCHES = 24
_SECTOR_MOTION = 0.2
# Each of a new feature's limits (_MAX_SLIDE, _BIRTH_TWO_MOTIONS, _SECTOR_MOTION) widens to this
# many standard errors of what it measures where the matches are noisier than the limit allows
# for (a matcher without sub-pixel refinement: 0.25 px per axis for the test matcher of
# test/core/test_tracking.py, 0.06 for refined xfeat matches): with the fixed limits such a
# matcher started a third as many features.
_NOISE_SIGMAS = 3.0
# ... and to this share of the new feature's own step: the smooth part of the motion (zoom,
# rotation, a tilted surface) varies across a neighbourhood in proportion to the motion, and so
# does the parallax at an occluding edge. The sectors' raw steps over up to 12 px take 5 %, the
# slide, against the local affine field, 2 %. On renderings moving 6-8 times faster per frame
# than the 60-frame paths (tracking_path in 10 frames) the fixed limits alone let 0-9 features
# start a frame; with these 15-46 from the second frame on (before this check the first
# frame's 67 unchecked features kept 18-36 alive). On the 60-frame paths they change little
# (opencv's worst track on tracking_path 2.6 -> 2.9 px); 3 % for the slide let one drift 3.2 px.
_SECTOR_SHARE = 0.05
_SLIDE_SHARE = 0.02
# New features are chosen, checked and, where some fail, chosen again this many times.
_BIRTH_ROUNDS = 2
# Block of the structure tensor that ranks new features: the template's size.
_CORNER_BLOCK = 2 * PATCH_HALF + 1
# New features keep this far (pixels) from the border: their patch and the search window of the
# next frame must fit.
_BIRTH_MARGIN = PATCH_HALF + SEARCH + 2


@dataclass
class _Tracks:
    """The live tracks, one row each (struct of arrays)."""

    ids: np.ndarray               # [N] int64
    positions: np.ndarray         # [N x 2] float64, current (left) position
    keys: np.ndarray              # [N x 2] float32, the detector keypoint carrying it (NaN: none)
    lengths: np.ndarray           # [N] int64
    scores: np.ndarray            # [N] float32
    anchor_frames: np.ndarray     # [N] int64, serial number of the frame it was born in
    anchor_positions: np.ndarray  # [N x 2] float64, its position there
    slide: np.ndarray             # [N x 2] float64, its motion off the matches', averaged
    normalized: np.ndarray        # [N x 2] float64, current undistorted coordinates (NaN: unknown)
    right_normalized: np.ndarray  # [N x 2] float64, the right observation's (NaN: none)

    @classmethod
    def empty(cls) -> '_Tracks':
        return cls(np.zeros(0, np.int64), np.zeros((0, 2)), np.zeros((0, 2), np.float32),
                   np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, np.int64),
                   np.zeros((0, 2)), np.zeros((0, 2)), np.zeros((0, 2)), np.zeros((0, 2)))

    def __len__(self):
        return len(self.ids)

    def take(self, index) -> '_Tracks':
        return _Tracks(*(getattr(self, f.name)[index] for f in dataclasses.fields(self)))

    def replace(self, **changes) -> '_Tracks':
        return dataclasses.replace(self, **changes)

    def extend(self, other: '_Tracks') -> '_Tracks':
        return _Tracks(*(np.concatenate([getattr(self, f.name), getattr(other, f.name)])
                         for f in dataclasses.fields(self)))


class _Pair:
    """A pair's matches: image-0 keypoints, image-1 keypoints as the backend placed them
    ([N x 2] float32, original pixels), and the latter refined to the sub-pixel where a point
    of interest needs them: the sub-pixel refinement costs as much as the rest of a frame's
    tracking when it runs on every match (thousands with a detector), and a point's motion
    rests on its few nearest matches only. `refine` maps both keypoint arrays to the refined
    image-1 keypoints and whether each refinement succeeded."""

    def __init__(self, keypoints0: np.ndarray, keypoints1: np.ndarray,
                 refine: Optional[Callable[[np.ndarray, np.ndarray], np.ndarray]] = None):
        self.keypoints0, self.keypoints1 = keypoints0, keypoints1
        self._refine = refine
        self.refined1 = keypoints1.copy()
        self._done = np.full(len(keypoints0), refine is None)
        # Whether each refined match was moved to its patch's best fit: where the refinement
        # failed (flat or cut-off patch, weak correlation) it keeps the backend's position,
        # a pixel or so off.
        self.refined = self._done.copy()

    def near(self, points: np.ndarray, side: int = 0) -> np.ndarray:
        """Indices of the matches a point [N x 2] of image `side` moves by (the nearest ones,
        see loftr_ros.core.tracking.motion), refined."""
        sides = (self.keypoints0, self.keypoints1)
        index = nearest_within(points, sides[side], REACH, NEIGHBOURS).reshape(-1)
        index = np.unique(index[index >= 0])
        self.refine(index)
        return index

    def around(self, points: np.ndarray, side: int, radius: float, count: int) -> np.ndarray:
        """[N x count] indices of the matches nearest to each point [N x 2] of image `side`
        within `radius`, refined, where the refinement succeeded (-1 elsewhere)."""
        index = nearest_within(points, (self.keypoints0, self.keypoints1)[side], radius, count)
        self.refine(np.unique(index[index >= 0]))
        return np.where((index >= 0) & self.refined[index], index, -1)

    def refine(self, index: np.ndarray):
        """Refine the matches at `index` (once)."""
        todo = index[~self._done[index]]
        if len(todo):
            self.refined1[todo], self.refined[todo] = self._refine(self.keypoints0[todo],
                                                                   self.keypoints1[todo])
            self._done[todo] = True


class Tracker:
    """Feature tracks over a Matcher (see the module's docstring for the method).

    first_id: the id of its first feature (a tracker that takes over from another one, whose
    ids must not come back). Not thread-safe: one caller feeds it frames in stamp order.
    """

    def __init__(self, matcher, config: TrackerConfig = TrackerConfig(), first_id: int = 0):
        self.matcher = matcher
        self.config = config
        # The search's peak is on whole pixels, where the correlation of a sharp texture is
        # lower than at the sub-pixel position the Lucas-Kanade steps find: min_ncc applies
        # there (_located).
        self._search = NCCRefinement(half=PATCH_HALF, search=SEARCH, min_ncc=_SEARCH_MIN_NCC)
        self._left_camera: Optional[CameraModel] = None
        self._right_camera: Optional[CameraModel] = None
        self._calibration: Optional[StereoCalibration] = None
        self._next_id = int(first_id)  # ids count up from here
        self._serial = 0
        self.reset()

    @property
    def next_id(self) -> int:
        """The id the next new feature gets."""
        return self._next_id

    def set_cameras(self, left: Optional[CameraModel] = None,
                    right: Optional[CameraModel] = None,
                    calibration: Optional[StereoCalibration] = None):
        """Camera models for undistorted coordinates, velocities and the essential-matrix
        checks, and the stereo calibration for the calibrated epipolar check (its cameras
        stand in for missing `left`/`right`). None forgets one; applies from the next frame."""
        if calibration is not None:
            left = left or calibration.camera0
            right = right or calibration.camera1
        self._left_camera, self._right_camera = left, right
        self._calibration = calibration

    def reset(self):
        """End every track; the next frame starts new ones (with new ids)."""
        self._tracks = _Tracks.empty()
        # Frame serial -> (gray image, ids and positions of the tracks there) of the frames
        # that live tracks were born in.
        self._anchors: Dict[int, Tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._previous: Optional[PreparedImage] = None
        self._previous_stamp: Optional[int] = None

    def prepare_images(self, left: ImageInput, right: Optional[ImageInput] = None,
                       left_mask: Optional[np.ndarray] = None,
                       right_mask: Optional[np.ndarray] = None,
                       ) -> Tuple[PreparedImage, Optional[PreparedImage]]:
        """The frame's images as PreparedImages: arrays are prepared here with their dynamic
        masks, both in one batch where the backend can; PreparedImages pass as they are.
        Raises the Matcher's ImageError (MaskError for a mask of the wrong size)."""
        pairs = [(image, mask) for image, mask in ((left, left_mask), (right, right_mask))
                 if image is not None and not isinstance(image, PreparedImage)]
        fresh = iter(self.matcher.prepare_batch([image for image, _ in pairs],
                                                [mask for _, mask in pairs]) if pairs else ())
        prepared = [image if image is None or isinstance(image, PreparedImage) else next(fresh)
                    for image in (left, right)]
        return prepared[0], prepared[1]

    def track(self, stamp_ns: int, left: ImageInput, right: Optional[ImageInput] = None,
              left_mask: Optional[np.ndarray] = None, right_mask: Optional[np.ndarray] = None,
              reset: bool = False) -> TrackedFrame:
        """Track one frame: the left image (and in stereo the right image of the same stamp),
        as arrays (see Matcher.prepare; the masks are their dynamic masks) or PreparedImages
        of this tracker's matcher. `reset`: end every track first, as when the stamps go
        backwards (the caller saw its source restart). Raises ImageError (MaskError) for an
        image the Matcher refuses, before anything changes."""
        start = time.perf_counter()
        current, current_right = self.prepare_images(left, right, left_mask, right_mask)
        prepared_here = [image for image, given in ((current, left), (current_right, right))
                         if image is not None and image is not given]
        prepare_seconds = sum(image.timings['preprocess'] + image.timings['model']
                              for image in prepared_here)
        stamp_ns = int(stamp_ns)
        reset = self._previous_stamp is not None and (reset or stamp_ns <= self._previous_stamp)
        lost_in_reset = len(self._tracks) if reset else 0
        if reset:
            self.reset()
        dt = ((stamp_ns - self._previous_stamp) / NS_PER_S if self._previous_stamp is not None
              else 0.0)

        match_start = time.perf_counter()
        temporal = (self._pair(self._previous, current) if self._previous is not None
                    else None)
        stereo = self._pair(current, current_right) if current_right is not None else None
        track_start = time.perf_counter()

        self._serial += 1
        keypoints = self.matcher.keypoints(current)
        tracks, lost = self._follow(self._tracks, current, temporal, keypoints)
        followed = len(tracks)
        tracks = self._thin(tracks)
        lost['thinned'] = followed - len(tracks)
        if reset:
            lost['reset'] = lost_in_reset
        lost = {cause: count for cause, count in lost.items() if count}
        births = self._births(tracks, current, temporal)
        tracks = tracks.extend(births)
        self._anchors[self._serial] = (current.gray, tracks.ids, tracks.positions)
        born_in = set(tracks.anchor_frames.tolist())
        self._anchors = {serial: anchor for serial, anchor in self._anchors.items()
                         if serial in born_in}

        right_positions = right_valid = None
        if current_right is not None:
            right_positions, right_valid = self._right_observations(tracks, current,
                                                                    current_right, stereo)
        normalized, velocities, tracks = self._left_coordinates(tracks, dt)
        right_normalized, right_velocities, tracks = self._right_coordinates(
            tracks, right_positions, right_valid, dt)

        self._tracks = tracks
        self._previous, self._previous_stamp = current, stamp_ns
        end = time.perf_counter()
        timings = {'prepare': prepare_seconds, 'match': track_start - match_start,
                   'track': end - track_start + match_start - start - prepare_seconds}
        timings['total'] = timings['prepare'] + timings['match'] + timings['track']
        return TrackedFrame(
            stamp_ns=stamp_ns, image_size=tuple(current.transform.original_size),
            ids=tracks.ids.copy(), keypoints=tracks.positions.astype(np.float32),
            track_lengths=tracks.lengths.copy(), scores=tracks.scores.copy(),
            right_image_size=(tuple(current_right.transform.original_size)
                              if current_right is not None else None),
            right_keypoints=(right_positions.astype(np.float32)
                             if right_positions is not None else None),
            right_valid=right_valid, normalized=normalized, velocities=velocities,
            right_normalized=right_normalized, right_velocities=right_velocities,
            num_new=len(births), lost=lost, reset=reset, timings=timings)

    # Steps of a frame.

    def _pair(self, image0: PreparedImage, image1: PreparedImage) -> '_Pair':
        """The matches of two prepared images, with the image-1 keypoints both as the backend
        placed them (detector keypoints carry tracks by their exact positions) and after the
        Matcher's sub-pixel refinement (what predicts the tracks' motion)."""
        result = self.matcher.match(image0, image1, refine=False)
        refinement = self.matcher.refinement
        if refinement is None:
            return _Pair(result.keypoints0, result.keypoints1)
        return _Pair(result.keypoints0, result.keypoints1, lambda keypoints0, keypoints1:
                     refinement.refine(image0.gray, image1.gray, keypoints0, keypoints1))

    def _follow(self, tracks: _Tracks, current: PreparedImage, temporal: Optional[_Pair],
                keypoints: Optional[np.ndarray]) -> Tuple[_Tracks, Dict[str, int]]:
        """The tracks that go on into the current frame, at their new positions, and how many
        ended for each cause (see TrackedFrame.lost)."""
        if len(tracks) == 0 or temporal is None:
            return tracks.take(slice(0, 0)), {'motion': len(tracks)}
        lost = _LostCounter(len(tracks))
        predicted, found, keys, field = _predict(tracks.positions, tracks.keys, temporal)
        lost.keep('motion', found)
        # Each anchor frame's patches are warped by the affine motion from that frame to this
        # one, which the tracks seen in both give.
        templates = np.zeros((len(tracks), 2 * PATCH_HALF + 1, 2 * PATCH_HALF + 1), np.float32)
        inside = np.zeros(len(tracks), bool)
        for serial in np.unique(tracks.anchor_frames):
            group = (tracks.anchor_frames == serial) & found
            if not group.any():
                continue
            gray, ids, then = self._anchors[serial]
            common, rows_then, rows_now = np.intersect1d(ids, tracks.ids[found],
                                                         return_indices=True)
            now = predicted[found][rows_now]
            templates[group], inside[group] = self._search.templates(
                gray, tracks.anchor_positions[group], predicted[group],
                motion=(then[rows_then], now))
        lost.keep('border', inside & _inside(predicted, _BIRTH_MARGIN, current.gray.shape))
        positions, located, ncc = self._located(current.gray, templates, predicted,
                                                lost.alive)
        lost.keep('appearance', located)
        # The surface around a track moves as the matches around it do: a track that leaves
        # that motion slides (along an edge, or with an occlusion's corner).
        slide = (1 - _SLIDE_WEIGHT) * tracks.slide + _SLIDE_WEIGHT * (positions - field)
        lost.keep('motion', np.linalg.norm(slide, axis=1) <= _MAX_SLIDE)
        near = temporal.near(tracks.positions)
        lost.keep('motion', ~_two_motions(tracks.positions, positions, temporal.keypoints0[near],
                                          temporal.refined1[near], _TRACK_TWO_MOTIONS))
        lost.keep('mask', usable_points(current.mask, positions))
        inliers = lost.alive.copy()
        inliers[lost.alive] = self._epipolar_inliers(
            tracks.positions[lost.alive], positions[lost.alive], self._left_camera,
            self._left_camera, self.config.ransac_threshold)
        lost.keep('epipolar', inliers)
        keys = _snap_keys(keys, positions, keypoints)
        followed = tracks.replace(positions=positions.astype(np.float64), keys=keys,
                                  lengths=tracks.lengths + 1, scores=ncc.astype(np.float32),
                                  slide=slide)
        return followed.take(lost.alive), lost.counts

    def _located(self, image: np.ndarray, templates: np.ndarray, predicted: np.ndarray,
                 usable: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Where templates [N x S x S] lie in `image` near their predicted positions [N x 2]:
        (positions [N x 2], found [N] bool: located with a sub-pixel correlation of at least
        min_ncc, that correlation [N])."""
        positions, found, _ = self._search.locate(image, templates, predicted, usable)
        ncc = np.zeros(len(positions), np.float32)
        if found.any():
            ncc[found] = patch_ncc(templates[found],
                                   sample_patches(image, positions[found], PATCH_HALF))
        return positions, found & (ncc >= self.config.min_ncc), ncc

    def _epipolar_inliers(self, points0, points1, camera0, camera1, threshold) -> np.ndarray:
        """Which correspondences fit the epipolar geometry RANSAC finds among them (essential
        with both cameras, else fundamental); all of them when too few to tell."""
        model = 'essential' if camera0 is not None and camera1 is not None else 'fundamental'
        inliers, _ = verify_matches(points0, points1, model, threshold, 0.999, camera0, camera1)
        return np.ones(len(points0), bool) if inliers is None else inliers.astype(bool)

    def _thin(self, tracks: _Tracks) -> _Tracks:
        """Tracks at least min_distance apart, longer (then older) tracks kept first."""
        order = np.lexsort((tracks.ids, -tracks.lengths))
        priority = np.empty(len(tracks), np.intp)
        priority[order] = np.arange(len(tracks))
        kept = spread_out(tracks.positions, priority, self.config.min_distance)
        return tracks.take(np.sort(kept))

    def _births(self, tracks: _Tracks, current: PreparedImage,
                temporal: Optional[_Pair]) -> _Tracks:
        """New features filling the frame up to max_features: candidates spread out, strongest
        first, and followed back into the previous frame as a track would be followed forward;
        a candidate that fails there (beside an occluding edge, on an edge, too little texture)
        would drift or end a frame or two later and is not started. None without matches to a
        previous frame, where nothing could check them."""
        need = self.config.max_features - len(tracks)
        if need <= 0 or temporal is None or len(temporal.keypoints0) == 0:
            return tracks.take(slice(0, 0))
        gray = current.gray
        usable = None if current.mask is None else current.mask.astype(np.uint8)
        # Shi-Tomasi corners (smaller structure-tensor eigenvalue at least min_corner_quality of
        # the strongest usable one), with that eigenvalue as their strength.
        found, strength = cv2.goodFeaturesToTrackWithQuality(
            gray, 4 * need, max(self.config.min_corner_quality, 1e-6),
            max(self.config.min_distance, 1.0), usable, blockSize=_CORNER_BLOCK)
        if found is None:  # a flat image: none
            found, strength = np.zeros((0, 2)), np.zeros(0)
        candidates = np.asarray(found, np.float64).reshape(-1, 2)
        strength = np.asarray(strength, np.float64).reshape(-1)
        # (The mask given to OpenCV already kept them off masked pixels.)
        inside = _inside(candidates, _BIRTH_MARGIN, gray.shape)
        candidates, strength = candidates[inside], strength[inside]
        priority = np.empty(len(candidates), np.intp)
        priority[np.argsort(-strength, kind='stable')] = np.arange(len(candidates))
        rejected = np.zeros(len(candidates), bool)
        checked = np.zeros(len(candidates), bool)
        for _ in range(_BIRTH_ROUNDS):
            open_ = np.flatnonzero(~rejected)
            chosen = open_[spread_out(candidates[open_], priority[open_],
                                      self.config.min_distance, occupied=tracks.positions,
                                      limit=need)]
            unchecked = chosen[~checked[chosen]]
            checked[unchecked] = True
            rejected[unchecked] = ~self._trackable_back(candidates[unchecked], current,
                                                        temporal)
            if not rejected[chosen].any():
                break
        positions = candidates[chosen[~rejected[chosen]]]
        count = len(positions)
        ids = np.arange(self._next_id, self._next_id + count, dtype=np.int64)
        self._next_id += count
        # A detector keypoint takes the new track on from the next frame (_snap_keys).
        keys = np.full((count, 2), np.nan, np.float32)
        unknown = np.full((count, 2), np.nan)
        return _Tracks(ids, positions, keys, np.ones(count, np.int64),
                       np.ones(count, np.float32), np.full(count, self._serial, np.int64),
                       positions.copy(), np.zeros((count, 2)), unknown, unknown.copy())

    def _trackable_back(self, positions: np.ndarray, current: PreparedImage,
                        temporal: _Pair) -> np.ndarray:
        """[N] bool: candidates whose patch is found in the previous frame (matched to this
        one by `temporal`) where the matches around them say (within _MAX_SLIDE px), with one
        motion under the patch and none otherwise around it (_SECTOR_MOTION)."""
        if len(positions) == 0:
            return np.ones(0, bool)
        near = temporal.near(positions, side=1)
        back = _Pair(temporal.refined1[near], temporal.keypoints0[near])
        predicted, found, _, field = _predict(
            positions, np.full((len(positions), 2), np.nan, np.float32), back)
        templates, inside = self._search.templates(current.gray, positions, predicted,
                                                   motion=(back.keypoints0, back.keypoints1))
        located, valid, _ = self._located(self._previous.gray, templates, predicted,
                                          found & inside)
        around = temporal.around(positions, 1, _PATCH_REACH, _SECTOR_MATCHES)
        noise = match_noise(positions, temporal.refined1, temporal.keypoints0, around)
        steps = located - positions
        # The field rests on NEIGHBOURS matches.
        slide_limit = np.maximum(_noisy_limit(_MAX_SLIDE, noise, NEIGHBOURS),
                                 _SLIDE_SHARE * np.linalg.norm(steps, axis=1))
        valid &= np.linalg.norm(located - field, axis=1) <= slide_limit
        pixels, share = _BIRTH_TWO_MOTIONS
        valid &= ~_two_motions(positions, located, back.keypoints0, back.keypoints1,
                               (_noisy_limit(pixels, noise, 1), share))
        return valid & ~_beside_another_motion(positions, steps, temporal.refined1,
                                               temporal.keypoints0, around, noise)

    def _right_observations(self, tracks: _Tracks, current: PreparedImage,
                            right: PreparedImage, stereo: _Pair,
                            ) -> Tuple[np.ndarray, np.ndarray]:
        """Each feature's position in the right image ([N x 2], NaN where not found) and
        whether it was found."""
        count = len(tracks)
        positions = np.full((count, 2), np.nan)
        if count == 0:
            return positions, np.zeros(0, bool)
        predicted, found, _, _ = _predict(tracks.positions, tracks.keys, stereo)
        templates, inside = self._search.templates(current.gray, tracks.positions, predicted)
        located, valid, _ = self._located(right.gray, templates, predicted, found & inside)
        valid &= usable_points(right.mask, located)
        if self._calibration is not None:
            valid[valid] = (sampson_distances(tracks.positions[valid], located[valid],
                                              self._calibration)
                            <= self.config.stereo_threshold)
        else:
            valid[valid] = self._epipolar_inliers(
                tracks.positions[valid], located[valid], self._left_camera,
                self._right_camera, self.config.stereo_threshold)
        positions[valid] = located[valid]
        return positions, valid

    def _left_coordinates(self, tracks: _Tracks, dt: float):
        """(normalized, velocities) of the left observations (None without a camera model),
        and the tracks with their normalized coordinates stored for the next frame."""
        if self._left_camera is None:
            return None, None, tracks.replace(normalized=np.full((len(tracks), 2), np.nan))
        normalized = self._left_camera.normalize(tracks.positions)
        velocities = _velocities(normalized, tracks.normalized, dt)
        return normalized, velocities, tracks.replace(normalized=normalized)

    def _right_coordinates(self, tracks: _Tracks, positions, valid, dt: float):
        unknown = np.full((len(tracks), 2), np.nan)
        if positions is None or self._right_camera is None:
            return None, None, tracks.replace(right_normalized=unknown)
        normalized = unknown.copy()
        normalized[valid] = self._right_camera.normalize(positions[valid])
        velocities = _velocities(normalized, tracks.right_normalized, dt)
        velocities[~valid] = np.nan
        return normalized, velocities, tracks.replace(right_normalized=normalized)


class _LostCounter:
    """Which tracks are still alive, and how many each check ended (the first that fails)."""

    def __init__(self, count: int):
        self.alive = np.ones(count, bool)
        self.counts: Dict[str, int] = {}

    def keep(self, cause: str, passed: np.ndarray):
        ended = self.alive & ~passed
        self.counts[cause] = self.counts.get(cause, 0) + int(ended.sum())
        self.alive &= passed


def _predict(positions: np.ndarray, keys: np.ndarray, matches: _Pair,
             ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where points of image 0 lie in image 1 of a pair: a point carried by a detector keypoint
    (keys [N x 2] float32, NaN for none) that has a match goes to its partner, which carries it
    on; the others go where the local motion of the matches around them takes them.
    Returns (predicted [N x 2], found [N] bool, the keypoints of image 1 carrying them [N x 2]
    float32, NaN for none, and the local motion's prediction [N x 2], NaN where it has none)."""
    near = matches.near(positions)
    predicted, _, found = local_motion(positions, matches.keypoints0[near],
                                       matches.refined1[near])
    field = np.where(found[:, None], predicted, np.nan)
    index = {point: row for row, point in enumerate(map(tuple, matches.keypoints0.tolist()))}
    partners = np.array([index.get(key, -1) for key in
                         map(tuple, np.asarray(keys, np.float32).reshape(-1, 2).tolist())],
                        np.intp)
    matched = partners >= 0
    matches.refine(partners[matched])
    partner_positions = np.full((len(positions), 2), np.nan)
    partner_positions[matched] = matches.refined1[partners[matched]]
    matched &= ~found | (np.linalg.norm(partner_positions - predicted, axis=1)
                         <= _KEYPOINT_AGREEMENT)
    carried = np.full((len(positions), 2), np.nan, np.float32)
    carried[matched] = matches.keypoints1[partners[matched]]
    predicted[matched] = partner_positions[matched]
    return predicted, found | matched, carried, field


def _two_motions(points0: np.ndarray, points1: np.ndarray, keypoints0: np.ndarray,
                 keypoints1: np.ndarray, limits: Tuple[float, float]) -> np.ndarray:
    """[N] bool: points that moved from points0 to points1 [N x 2] where the matches under
    their patch (keypoints0 -> keypoints1) show two motions: at least 2 of them, and a share
    of them, move more than some pixels otherwise (limits: pixels, share)."""
    other_motion, share = limits
    if len(keypoints0) == 0:  # no matches (after a blank frame): nothing to tell
        return np.zeros(len(points0), bool)
    index = nearest_within(points0, keypoints0, _PATCH_REACH, NEIGHBOURS)
    has = index >= 0
    safe = np.where(has, index, 0)
    steps = keypoints1[safe] - keypoints0[safe]
    other = has & (np.linalg.norm(steps - (points1 - points0)[:, None], axis=2) > other_motion)
    count = other.sum(axis=1)
    return (count >= 2) & (count >= share * has.sum(axis=1))


def _beside_another_motion(points: np.ndarray, steps: np.ndarray, source: np.ndarray,
                           target: np.ndarray, index: np.ndarray, noise: float) -> np.ndarray:
    """[N] bool: points [N x 2] that moved by steps [N x 2] where a sector of their
    surroundings (matches source -> target with `noise`, index [N x K] as in sector_motions)
    moved otherwise (see _SECTOR_MOTION)."""
    medians, counts = sector_motions(points, steps, source, target, index, _SECTORS)
    limit = np.maximum(_noisy_limit(_SECTOR_MOTION, noise, np.maximum(counts, 1)),
                       _SECTOR_SHARE * np.linalg.norm(steps, axis=1)[:, None])
    return (np.nan_to_num(np.linalg.norm(medians, axis=2)) > limit).any(axis=1)


def _noisy_limit(limit: float, noise: float, samples):
    """A new feature's limit on a motion measured from `samples` matches (a mean or median of
    them) whose noise is `noise` (pixels, per axis): `limit`, or _NOISE_SIGMAS standard errors
    where the matches are that noisy."""
    return np.maximum(limit, _NOISE_SIGMAS * noise / np.sqrt(samples))


def _snap_keys(keys: np.ndarray, positions: np.ndarray,
               keypoints: Optional[np.ndarray]) -> np.ndarray:
    """The keypoints carrying each track on: its match's partner, or for a track the motion
    field predicted, the detector keypoint nearest to where it was located (within
    _KEYPOINT_SNAP px), so that the next frame follows a keypoint again."""
    if keypoints is None or len(keypoints) == 0:
        return keys
    missing = np.flatnonzero(~np.isfinite(keys).all(axis=1))
    nearest = nearest_within(positions[missing], keypoints, _KEYPOINT_SNAP, 1)[:, 0]
    keys = keys.copy()
    keys[missing[nearest >= 0]] = keypoints[nearest[nearest >= 0]]
    return keys


def _inside(points: np.ndarray, margin: float, shape) -> np.ndarray:
    """[N] bool: points [N x 2] at least `margin` px inside an image of `shape` (H, W)."""
    height, width = shape[:2]
    return ((points >= margin).all(axis=1) & (points[:, 0] <= width - 1 - margin) &
            (points[:, 1] <= height - 1 - margin))


def _velocities(current: np.ndarray, previous: np.ndarray, dt: float) -> np.ndarray:
    """(current - previous) / dt where the previous coordinates are known, else 0."""
    if dt <= 0:
        return np.zeros_like(current)
    velocities = (current - previous) / dt
    return np.where(np.isfinite(previous).all(axis=1)[:, None], velocities, 0.0)
