"""Feature tracks with persistent ids, mono or stereo, over any matching backend.

    tracker = Tracker(Matcher(MatcherConfig(backend='xfeat')), TrackerConfig(max_features=150))
    tracker.set_cameras(calibration=load_euroc_calibration('calibration.yaml'))  # optional
    frame = tracker.track(stamp_ns, left_image, right_image)   # right_image=None: mono
    frame.ids, frame.keypoints, frame.right_keypoints, frame.normalized, frame.velocities, ...

Per frame, each image is prepared once (`Matcher.prepare`: extraction, per-image features) and
the current left image is matched to the previous left image (temporal) and, in stereo, to the
right image of the same stamp; the previous frame's features are reused as they are.

**Where a track goes (every backend).** A track is a physical point, defined by the patch of its
FIRST observation (its anchor): a (2 * 14 + 1)^2 pixel region kept with the track. Each frame:

1. *Prediction*: the temporal matches are a motion field sampled where the matcher found
   correspondences; the 8 matches nearest to the track's previous position (within 40 px) give a
   local affine map, fitted robustly (median, then residual trimming), which predicts the new
   position and the local linear deformation. For a detector's sparse matches the track's own
   keypoint is among them; for a detector-free matcher (eloftr, loftr, hf), whose image-0
   keypoints lie on a coarse grid and cannot carry ids, the field interpolates between cells.
2. *Refinement against the anchor*: the anchor region is warped by the track's accumulated
   linear map (first observation -> now; the product of the per-frame local linear parts) and
   located in the current image around the prediction by the NCC search and Lucas-Kanade polish
   of :mod:`loftr_ros.core.refinement` (+-4 px, 15x15 template). The track goes on where the
   best correlation is at least ``min_ncc``.

Refining against the previous frame's patch would add each frame's localization error to the
next (a random walk: KLT's drift); against the anchor, errors do not accumulate: an error of the
linear map only deforms the template a little, symmetrically, and does not move its centre. The
purity test on rendered ground truth (test/core/test_tracking.py) checks that the error after
30 frames is no larger than after 2. A track ends when it cannot be predicted (no consistent
matches around it), when the anchor no longer correlates (occlusion, strong perspective change,
the image border: the template and search window must fit), when its linear map has shrunk the
anchor by more than 1.5x, when it enters a masked pixel, when its step breaks the epipolar
geometry of the frame's tracks (RANSAC: essential matrix with a camera model, else fundamental;
``ransac_threshold``), or when it is thinned out. Ended tracks are never revived.

**New features** (VINS's ``setMask`` and ``addPoints``): tracked features are thinned to
``min_distance`` px, longer tracks first; then new ones fill the frame up to ``max_features``,
at least ``min_distance`` px from every kept feature and from each other. Candidates are the
current frame's own keypoints for detector backends (xfeat, lightglue, opencv), and the current
frame's matched positions for detector-free ones (the temporal matches' current side, the
stereo matches' left side; so a mono detector-free tracker starts on its second frame); they
need a patch with structure in every direction (smaller structure-tensor eigenvalue at least
``min_corner_quality`` of the frame's largest) and are taken strongest first. Ids count up
from 0 and are never reused, not even after a reset.

**Stereo**: every left feature is looked for in the right image of the same stamp the same way
(the stereo matches' local motion predicts, the left patch is located in the right image) and
kept when it obeys the stereo epipolar geometry (``stereo_threshold``: the calibrated constraint
with a StereoCalibration, else RANSAC's essential or fundamental matrix). The right observation
carries its left feature's id.

**Undistorted coordinates** (with camera models, :meth:`Tracker.set_cameras`): each observation's
undistorted normalized coordinates (x, y on the z = 1 plane) and its velocity there, per second,
from the same feature's coordinates in the previous frame (0 for new features), as VINS-Fusion's
feature tracker computes them (``ptsVelocity``).

**Stamps going backwards** (a bag restarted) reset the tracker: every track ends and new ones
start with new ids. An image the Matcher refuses (ImageError) changes nothing: the next good
frame continues the tracks.
"""
import dataclasses
import os
import time
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple, Union

import cv2
import numpy as np

from loftr_ros.core.backends.base import PreparedImage
from loftr_ros.core.camera import CameraModel, StereoCalibration, sampson_distances
from loftr_ros.core.geometry import verify_matches
from loftr_ros.core.masks import usable_points
from loftr_ros.core.refinement import NCCRefinement
from loftr_ros.core.stamps import NS_PER_S
from loftr_ros.core.tracking.alignment import align_affine
from loftr_ros.core.tracking.config import TrackerConfig
from loftr_ros.core.tracking.motion import local_motion
from loftr_ros.core.tracking.neighbours import spread_out
from loftr_ros.core.tracking.patches import cut_regions, inside, warped_templates
from loftr_ros.core.types import MatchResult

ImageInput = Union[np.ndarray, PreparedImage]

# Template half-size (15x15 patches, as the matcher's refinement) and search radius around the
# predicted position: the local motion predicts to well under a pixel on smooth surfaces, the
# margin covers depth edges and detector noise.
PATCH_HALF = 7
SEARCH = 4
# Correlation the NCC search needs to hand its peak to the affine alignment: the template,
# deformed by the predicted motion, fits less well than after the alignment.
_SEARCH_MIN_NCC = 0.5
# Pixels a bicubic sample reads beyond its position.
_BICUBIC_REACH = 2
# The affine alignment may move a track this far (pixels) from the NCC peak, and change its
# deformation this much (Frobenius norm), in one frame.
_MAX_ALIGNMENT_STEP = float(__import__('os').environ.get('MAS', 0.5))
_MAX_DEFORMATION_STEP = float(__import__('os').environ.get('MDS', 0.1))
_AGREEMENT = float(os.environ.get('AGR', 0.25))
_MAX_UNSEARCHED_STEP = float(__import__('os').environ.get('MUS', 2.0))
_MOTION_DEFORMATION_NOISE = float(__import__('os').environ.get('MDN', 0.05))
# The accumulated linear map may shrink the anchor by at most this much (its region must hold
# the template's grid), and grow it by at most _MAX_GROWTH (details finer than a pixel of the
# anchor do not exist).
_MAX_SHRINK = 1.5
_MAX_GROWTH = 4.0
# Radius of the anchor region: the shrunk template grid, the sub-pixel offset and the bicubic
# kernel's reach.
REGION_RADIUS = int(np.ceil(PATCH_HALF * _MAX_SHRINK)) + 3
# New features are chosen, tried and, for those that cannot be followed back a frame,
# chosen again this many times.
_BIRTH_ROUNDS = 2
# Block of the structure tensor that ranks new features: the template's size.
_CORNER_BLOCK = 2 * PATCH_HALF + 1


@dataclass(frozen=True)
class TrackedFrame:
    """The features of one frame, in id order (oldest tracks first, new features last).

    stamp_ns: the left image's stamp. image_size, right_image_size: (width, height); the latter
        None in mono.
    ids: [N] int64, persistent over the frames, never reused.
    keypoints: [N x 2] float32, the left image's pixels as observed (distorted), sub-pixel,
        OpenCV convention (the centre of the top-left pixel is (0, 0)).
    track_lengths: [N] int64, frames the feature has been seen in, this one included (1: new).
    scores: [N] float32, normalized cross-correlation of the feature's patch with its first
        observation's patch (1 for a new feature).
    right_keypoints, right_valid: [N x 2] float32 (NaN where not found) and [N] bool, the same
        features in the right image; None in mono.
    normalized, velocities: [N x 2] float64, undistorted normalized coordinates (z = 1) of the
        left observations and their velocity in that plane per second (0 for new features);
        None without a left camera model. right_normalized, right_velocities: the same for the
        right observations (NaN where not found); None in mono or without a right camera model.
    num_new: features started in this frame.
    lost: how many tracks of the previous frame ended, per cause: 'motion' (no consistent
        matches around it, or no previous frame to match), 'border' (too close to the image
        border), 'appearance' (its patch no longer correlates with its first observation's),
        'mask', 'epipolar' (outlier of the epipolar geometry), 'thinned' (too close to a longer
        track), 'reset' (stamps went backwards); causes with no track are left out.
    reset: the tracker was reset before this frame (its stamp did not follow the previous one).
    timings: seconds: 'prepare' (images prepared in this call), 'match' (temporal and stereo
        matching), 'track' (the tracker's own work), 'total'.
    """

    stamp_ns: int
    image_size: Tuple[int, int]
    ids: np.ndarray
    keypoints: np.ndarray
    track_lengths: np.ndarray
    scores: np.ndarray
    right_image_size: Optional[Tuple[int, int]] = None
    right_keypoints: Optional[np.ndarray] = None
    right_valid: Optional[np.ndarray] = None
    normalized: Optional[np.ndarray] = None
    velocities: Optional[np.ndarray] = None
    right_normalized: Optional[np.ndarray] = None
    right_velocities: Optional[np.ndarray] = None
    num_new: int = 0
    lost: Dict[str, int] = field(default_factory=dict)
    reset: bool = False
    timings: Dict[str, float] = field(default_factory=dict)

    def __len__(self):
        return len(self.ids)

    @property
    def stereo(self) -> bool:
        return self.right_keypoints is not None

    @property
    def num_lost(self) -> int:
        """Tracks of the previous frame that ended in this one."""
        return sum(self.lost.values())


@dataclass
class _Tracks:
    """The live tracks, one row each (struct of arrays)."""

    ids: np.ndarray          # [N] int64
    positions: np.ndarray    # [N x 2] float64, current (left) position
    lengths: np.ndarray      # [N] int64
    scores: np.ndarray       # [N] float32
    regions: np.ndarray      # [N x R x R] float32, the anchor's pixels
    offsets: np.ndarray      # [N x 2] float64, the anchor position's offset from its pixel
    linear: np.ndarray       # [N x 2 x 2] float64, anchor -> current linear deformation
    normalized: np.ndarray   # [N x 2] float64, current undistorted coordinates (NaN: unknown)
    right_normalized: np.ndarray  # [N x 2] float64, the right observation's (NaN: none)

    @classmethod
    def empty(cls) -> '_Tracks':
        size = 2 * REGION_RADIUS + 1
        return cls(np.zeros(0, np.int64), np.zeros((0, 2)), np.zeros(0, np.int64),
                   np.zeros(0, np.float32), np.zeros((0, size, size), np.float32),
                   np.zeros((0, 2)), np.zeros((0, 2, 2)), np.zeros((0, 2)), np.zeros((0, 2)))

    def __len__(self):
        return len(self.ids)

    def take(self, index) -> '_Tracks':
        return _Tracks(*(getattr(self, f.name)[index] for f in dataclasses.fields(self)))

    def replace(self, **changes) -> '_Tracks':
        return dataclasses.replace(self, **changes)

    def extend(self, other: '_Tracks') -> '_Tracks':
        return _Tracks(*(np.concatenate([getattr(self, f.name), getattr(other, f.name)])
                         for f in dataclasses.fields(self)))


class Tracker:
    """Feature tracks over a Matcher (or any object with its `prepare`, `match` and `keypoints`).

    Not thread-safe: one caller feeds it frames in stamp order.
    """

    def __init__(self, matcher, config: TrackerConfig = TrackerConfig()):
        self.matcher = matcher
        self.config = config
        # The search only finds the peak for the alignment, which has the last word on NCC.
        self._search = NCCRefinement(half=PATCH_HALF, search=SEARCH, min_ncc=_SEARCH_MIN_NCC)
        self._stereo_search = NCCRefinement(half=PATCH_HALF, search=SEARCH,
                                            min_ncc=config.min_ncc)
        self._left_camera: Optional[CameraModel] = None
        self._right_camera: Optional[CameraModel] = None
        self._calibration: Optional[StereoCalibration] = None
        self._next_id = 0
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
        self._previous: Optional[PreparedImage] = None
        self._previous_stamp: Optional[int] = None

    def prepare_images(self, left: ImageInput, right: Optional[ImageInput] = None,
                       left_mask: Optional[np.ndarray] = None,
                       right_mask: Optional[np.ndarray] = None,
                       ) -> Tuple[PreparedImage, Optional[PreparedImage]]:
        """The frame's images as PreparedImages (arrays are prepared here with their dynamic
        masks; PreparedImages pass as they are). One call for both images, so that a batched
        preparation can take its place. Raises the Matcher's ImageError."""
        prepared = [image if isinstance(image, PreparedImage) or image is None
                    else self.matcher.prepare(image, mask)
                    for image, mask in ((left, left_mask), (right, right_mask))]
        return prepared[0], prepared[1]

    def track(self, stamp_ns: int, left: ImageInput, right: Optional[ImageInput] = None,
              left_mask: Optional[np.ndarray] = None, right_mask: Optional[np.ndarray] = None,
              ) -> TrackedFrame:
        """Track one frame: the left image (and in stereo the right image of the same stamp),
        as arrays (see Matcher.prepare; the masks are their dynamic masks) or PreparedImages
        of this tracker's matcher. Raises ImageError (MaskError) for an image the Matcher
        refuses, before anything changes."""
        start = time.perf_counter()
        current, current_right = self.prepare_images(left, right, left_mask, right_mask)
        prepared_here = [image for image, given in ((current, left), (current_right, right))
                         if image is not None and image is not given]
        prepare_seconds = sum(image.timings.get('preprocess', 0.0) + image.timings.get('model', 0.0)
                              for image in prepared_here)
        stamp_ns = int(stamp_ns)
        reset = self._previous_stamp is not None and stamp_ns <= self._previous_stamp
        lost_in_reset = len(self._tracks) if reset else 0
        if reset:
            self.reset()
        dt = ((stamp_ns - self._previous_stamp) / NS_PER_S if self._previous_stamp is not None
              else 0.0)

        match_start = time.perf_counter()
        temporal = (_trusted(self.matcher.match(self._previous, current))
                    if self._previous is not None else None)
        stereo = (_trusted(self.matcher.match(current, current_right))
                  if current_right is not None else None)
        track_start = time.perf_counter()

        tracks, lost = self._follow(self._tracks, current, temporal)
        followed = len(tracks)
        tracks = self._thin(tracks)
        lost['thinned'] = followed - len(tracks)
        if reset:
            lost['reset'] = lost_in_reset
        lost = {cause: count for cause, count in lost.items() if count}
        births = self._births(tracks, current, temporal, stereo)
        tracks = tracks.extend(births)

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

    def _follow(self, tracks: _Tracks, current: PreparedImage,
                temporal: Optional[MatchResult]) -> Tuple[_Tracks, Dict[str, int]]:
        """The tracks that go on into the current frame, at their new positions, and how many
        ended for each cause (see TrackedFrame.lost)."""
        if len(tracks) == 0 or temporal is None:
            return tracks.take(slice(0, 0)), {'motion': len(tracks)}
        positions, linear, ncc, lost = self._relocate(
            tracks.regions, tracks.offsets, tracks.positions, tracks.linear, current,
            temporal.keypoints0, temporal.keypoints1)
        alive = lost.alive
        inliers = alive.copy()
        inliers[alive] = self._epipolar_inliers(tracks.positions[alive], positions[alive],
                                                self._left_camera, self._left_camera)
        lost.keep('epipolar', inliers)
        followed = tracks.replace(positions=positions, linear=linear,
                                  lengths=tracks.lengths + 1, scores=ncc.astype(np.float32))
        return followed.take(lost.alive), lost.counts

    def _relocate(self, regions: np.ndarray, offsets: np.ndarray, positions: np.ndarray,
                  linear: np.ndarray, image: PreparedImage, source: np.ndarray,
                  target: np.ndarray):
        """Where anchor patches (regions, offsets; at `positions` with deformation `linear`
        in the image the matches `source` -> `target` start from) lie in `image`: the local
        motion of the matches predicts, the NCC search and the affine alignment locate.
        Returns (positions, linear, ncc, _LostCounter of the ones not found)."""
        gray = image.gray
        lost = _LostCounter(len(positions))
        predicted, motion, found = local_motion(positions, source, target)
        lost.keep('motion', found)
        # The alignment needs the template's footprint in the image, the NCC search its
        # window too: nearer the border the alignment starts from the prediction.
        lost.keep('border', inside(predicted, PATCH_HALF + _BICUBIC_REACH + 1, gray.shape))
        searchable = inside(predicted, PATCH_HALF + SEARCH + _BICUBIC_REACH, gray.shape)
        # The local motion's linear part is noisy (a few percent per frame from detector
        # keypoints): below that it only adds noise to the deformation, which the alignment
        # then corrects.
        noisy = np.linalg.norm(motion - np.eye(2), axis=(1, 2)) < _MOTION_DEFORMATION_NOISE
        motion[noisy] = np.eye(2)
        predicted_linear = motion @ linear
        lost.keep('appearance', _deformation_fits(predicted_linear))
        predicted_linear[~lost.alive] = np.eye(2)
        templates = warped_templates(regions, offsets, np.linalg.inv(predicted_linear),
                                     PATCH_HALF)
        peaks, located, _ = self._search.locate(gray, templates, predicted,
                                                lost.alive & searchable)
        located |= ~searchable
        anchors = _anchor_patches(regions)
        aligned, aligned_linear, ncc = align_affine(gray, anchors, offsets, peaks,
                                                    predicted_linear)
        # A unique optimum: the alignment started from the motion's prediction ends where the
        # one started from the NCC peak does. Two ends mean an edge (a valley of solutions)
        # or repeated texture, where the position is a guess.
        if os.environ.get('TWO', '1') == '1':
            second = align_affine(gray, anchors, offsets, predicted, predicted_linear)[0]
            unique = np.linalg.norm(aligned - second, axis=1) <= _AGREEMENT
        else:
            unique = (np.linalg.norm(aligned - peaks, axis=1) <=
                   np.where(searchable, _MAX_ALIGNMENT_STEP, _MAX_UNSEARCHED_STEP))
        deformation_step = np.minimum(
            np.linalg.norm(aligned_linear - predicted_linear, axis=(1, 2)),
            np.linalg.norm(aligned_linear - linear, axis=(1, 2)))
        lost.keep('appearance', located & (ncc >= self.config.min_ncc) & unique &
                  (deformation_step <= _MAX_DEFORMATION_STEP) &
                  _deformation_fits(aligned_linear))
        lost.keep('border', inside(aligned, PATCH_HALF + _BICUBIC_REACH, gray.shape))
        lost.keep('mask', usable_points(image.mask, aligned))
        return aligned, aligned_linear, ncc, lost

    def _epipolar_inliers(self, points0, points1, camera0, camera1) -> np.ndarray:
        """Which correspondences fit the epipolar geometry RANSAC finds among them (essential
        with both cameras, else fundamental); all of them when too few to tell."""
        model = 'essential' if camera0 is not None and camera1 is not None else 'fundamental'
        inliers, _ = verify_matches(points0, points1, model, self.config.ransac_threshold,
                                    0.999, camera0, camera1)
        return np.ones(len(points0), bool) if inliers is None else inliers.astype(bool)

    def _thin(self, tracks: _Tracks) -> _Tracks:
        """Tracks at least min_distance apart, longer (then older) tracks kept first."""
        order = np.lexsort((tracks.ids, -tracks.lengths))
        priority = np.empty(len(tracks), np.intp)
        priority[order] = np.arange(len(tracks))
        kept = spread_out(tracks.positions, priority, self.config.min_distance)
        return tracks.take(np.sort(kept))

    def _births(self, tracks: _Tracks, current: PreparedImage,
                temporal: Optional[MatchResult], stereo: Optional[MatchResult]) -> _Tracks:
        """New features filling the frame up to max_features."""
        need = self.config.max_features - len(tracks)
        candidates = self.matcher.keypoints(current)
        if candidates is None:
            sides = [result.keypoints1 for result in (temporal,) if result is not None]
            sides += [result.keypoints0 for result in (stereo,) if result is not None]
            candidates = np.concatenate(sides) if sides else np.zeros((0, 2))
        candidates = np.asarray(candidates, np.float64).reshape(-1, 2)
        gray = current.gray
        candidates = candidates[inside(candidates, REGION_RADIUS, gray.shape) &
                                usable_points(current.mask, candidates)]
        if need <= 0 or len(candidates) == 0:
            return tracks.take(slice(0, 0))
        pixels = np.floor(candidates + 0.5).astype(np.intp)
        corners = cv2.cornerMinEigenVal(gray, _CORNER_BLOCK, 3)
        strength = corners[pixels[:, 1], pixels[:, 0]]
        strong = strength >= self.config.min_corner_quality * corners.max()
        candidates, strength = candidates[strong], strength[strong]
        priority = np.empty(len(candidates), np.intp)
        priority[np.argsort(-strength, kind='stable')] = np.arange(len(candidates))
        rejected = np.zeros(len(candidates), bool)
        for _ in range(_BIRTH_ROUNDS):
            chosen = spread_out(candidates[~rejected], priority[~rejected],
                                self.config.min_distance, occupied=tracks.positions,
                                limit=need)
            chosen = np.flatnonzero(~rejected)[chosen]
            trackable = self._trackable_back(candidates[chosen], current, temporal)
            if trackable.all():
                break
            rejected[chosen[~trackable]] = True
        chosen = chosen[trackable]
        positions = candidates[chosen]
        count = len(positions)
        regions, offsets = cut_regions(gray, positions, REGION_RADIUS)
        ids = np.arange(self._next_id, self._next_id + count, dtype=np.int64)
        self._next_id += count
        unknown = np.full((count, 2), np.nan)
        return _Tracks(ids, positions, np.ones(count, np.int64), np.ones(count, np.float32),
                       regions, offsets, np.tile(np.eye(2), (count, 1, 1)), unknown,
                       unknown.copy())

    def _trackable_back(self, positions: np.ndarray, current: PreparedImage,
                        temporal: Optional[MatchResult]) -> np.ndarray:
        """Whether each candidate for a new feature can be followed back into the previous
        frame as a track would be followed forward: a candidate that would fail a track's
        checks (on an occlusion boundary, on an edge, on too little texture) is not started,
        where it would only end a frame or two later. All True without a previous frame."""
        if temporal is None or self._previous is None or len(positions) == 0:
            return np.ones(len(positions), bool)
        regions, offsets = cut_regions(current.gray, positions, REGION_RADIUS)
        identity = np.tile(np.eye(2), (len(positions), 1, 1))
        lost = self._relocate(regions, offsets, positions, identity, self._previous,
                              temporal.keypoints1, temporal.keypoints0)[3]
        return lost.alive

    def _right_observations(self, tracks: _Tracks, current: PreparedImage,
                            right: PreparedImage, stereo: MatchResult,
                            ) -> Tuple[np.ndarray, np.ndarray]:
        """Each feature's position in the right image ([N x 2], NaN where not found) and
        whether it was found."""
        count = len(tracks)
        positions = np.full((count, 2), np.nan)
        if count == 0:
            return positions, np.zeros(0, bool)
        predicted, motion, found = local_motion(tracks.positions, stereo.keypoints0,
                                                stereo.keypoints1)
        usable = found & _deformation_fits(motion) & inside(tracks.positions, REGION_RADIUS,
                                                             current.gray.shape)
        regions, offsets = cut_regions(current.gray, tracks.positions[usable], REGION_RADIUS)
        inverse = np.linalg.inv(motion[usable])
        templates = warped_templates(regions, offsets, inverse, PATCH_HALF)
        located, valid, _ = self._stereo_search.locate(right.gray, templates, predicted[usable])
        found = np.zeros(count, bool)
        found[usable] = valid
        positions[found] = located[valid]
        found[found] = usable_points(right.mask, positions[found])
        found[found] = self._stereo_inliers(tracks.positions[found], positions[found])
        positions[~found] = np.nan
        return positions, found

    def _stereo_inliers(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        if self._calibration is None:
            return self._epipolar_inliers(left, right, self._left_camera, self._right_camera)
        return sampson_distances(left, right, self._calibration) <= self.config.stereo_threshold

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


def _trusted(result: MatchResult) -> MatchResult:
    """The matches the Matcher's own verification kept (all when it did not run)."""
    if result.inliers is None:
        return result
    keep = result.inliers.astype(bool)
    return dataclasses.replace(result, keypoints0=result.keypoints0[keep],
                               keypoints1=result.keypoints1[keep], scores=result.scores[keep],
                               inliers=result.inliers[keep])


def _anchor_patches(regions: np.ndarray) -> np.ndarray:
    """The (2 PATCH_HALF + 1)^2 pixels at the centre of anchor regions."""
    cut = slice(REGION_RADIUS - PATCH_HALF, REGION_RADIUS + PATCH_HALF + 1)
    return regions[:, cut, cut]


def _deformation_fits(linear: np.ndarray) -> np.ndarray:
    """[N] bool: linear maps [N x 2 x 2] whose template grid the anchor region holds."""
    if len(linear) == 0:
        return np.zeros(0, bool)
    singular = np.linalg.svd(linear, compute_uv=False)
    return (singular[:, -1] >= 1 / _MAX_SHRINK) & (singular[:, 0] <= _MAX_GROWTH)


def _velocities(current: np.ndarray, previous: np.ndarray, dt: float) -> np.ndarray:
    """(current - previous) / dt where the previous coordinates are known, else 0."""
    if dt <= 0:
        return np.zeros_like(current)
    velocities = (current - previous) / dt
    return np.where(np.isfinite(previous).all(axis=1)[:, None], velocities, 0.0)
