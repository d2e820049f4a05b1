"""Choose each backend's defaults by measurement: accuracy against exact ground truth and CPU
cost over a small grid of settings, on three kinds of real images.

    scripts/ros_env.sh python benchmarks/choose_defaults.py [--backends xfeat,lightglue,opencv]
        [--output benchmarks/results/choose_defaults.md]

Data (all with exact ground truth, nothing downloaded):
- euroc: stereo pairs of the shared EuRoC V1_01 sample (../shared/data, mono 752x480); truth:
  the calibrated epipolar geometry (Sampson distance of each match, in pixels) and the
  calibrated relative pose.
- synthetic: views of core/synthetic.py's scene of scikit-image photos (colour 640x480) along
  its figure-of-eight path, pairs of frames 1 apart and (the hard ones) 3 apart; truth: the
  exact poses (Sampson distance to the exact essential matrix, relative pose error).
- homography: scikit-image colour photos (640x480) warped by homographies about the centre,
  medium (25 deg, 0.75x) and hard (40 deg, 0.6x, perspective); truth: the
  homography (reprojection error of each match; corner error of the homography estimated from
  the matches with USAC MAGSAC at 3 px, the HPatches metric).

Metrics per configuration: keypoints per image and matches per pair (the deterministic cost
proxies: LightGlue-type matchers cost O(keypoints^2)); the share of matches within 1 px of the
truth ('within 1 px') and their number ('correct'), per data set; the relative-pose AUC at
5/10/20 deg over the euroc and synthetic pairs (LoFTR's metric, pose recovered from all the
matches as `loftr-ros eval` does); the homography corner-error AUC at 3/5/10 px; 'hard correct',
the mean number of correct matches on the hard pairs (synthetic frames 3 apart, the hard warps);
and the median milliseconds per pair with its ratio to the backend's first row, measured in the
same run (the machine may be shared: the ratio and the proxies are what to compare).

A threshold on the match score only removes matches from the end of the pipeline (LighterGlue's
min_conf, LightGlue's filter_threshold and the Matcher's confidence_threshold are the same cut
of the same score; OpenCV's score is 1 - Lowe ratio), so each backend runs once per extraction
setting at the lowest threshold of its grid and the higher thresholds are that result filtered
(the NCC refinement's affine motion comes from a RANSAC fit, which the extra low-score matches
do not move). Defaults in the backends' DEFAULT_CONF cite the rows of the table this writes.
"""
import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional

import cv2
import numpy as np
import torch

from loftr_ros.core import evaluation, synthetic
from loftr_ros.core.bag import BagReader, stereo_pairs
from loftr_ros.core.camera import (CameraModel, essential_from_pose, load_euroc_calibration,
                                   sampson_distances_normalized)
from loftr_ros.core.config import MatcherConfig
from loftr_ros.core.matcher import Matcher

EUROC_DIR = Path(__file__).resolve().parents[1].parent / 'shared' / 'data' / 'euroc_v101_stereo'
EUROC_PAIRS = (5, 30, 55, 80)
SYNTHETIC_FRAMES = 13
SYNTHETIC_STEPS = {1: 'synthetic', 3: 'synthetic hard'}
PHOTOS = ('astronaut', 'coffee', 'chelsea', 'rocket')
# (name, rotation deg, scale, perspective terms): warps about the image centre.
WARPS = (('homography', 25.0, 0.75, (0.00015, -0.0001)),
         ('homography hard', 40.0, 0.6, (0.0003, 0.0002)))
CORRECT_PX = 1.0
HOMOGRAPHY_AUC_PX = (3.0, 5.0, 10.0)

# Per backend: the extraction settings (options) of the grid, the score thresholds applied to
# each, and how a threshold is written in the table.
GRIDS = {
    'xfeat': dict(
        options=[{'top_k': k, 'detection_threshold': d}
                 for k in (1024, 2048, 4096) for d in (0.02, 0.05)],
        thresholds=(0.05, 0.1, 0.2), label='min_conf'),
    'lightglue': dict(
        options=[{'max_keypoints': 1024, 'resize': 0}, {'max_keypoints': 2048, 'resize': 0},
                 {'max_keypoints': 4096, 'resize': 0}, {'max_keypoints': 2048, 'resize': 1024}],
        thresholds=(0.05, 0.1, 0.2), label='filter_threshold'),
    'opencv': dict(
        options=[{'detector': 'sift', 'max_keypoints': n, 'ratio': 0.9} for n in (1024, 4096)] +
                [{'detector': 'orb', 'max_keypoints': n, 'ratio': 0.9}
                 for n in (2048, 4096, 8192)],
        thresholds=(0.7, 0.8, 0.9), label='ratio'),
}
# Rows to mark: the library's documented defaults and this project's defaults before #14,
# as (options, threshold).
MARKS = {
    'xfeat': {'library': ({'top_k': 4096, 'detection_threshold': 0.05}, 0.1),
              'before': ({'top_k': 2048, 'detection_threshold': 0.05}, 0.2)},
    'lightglue': {'library': ({'max_keypoints': 2048, 'resize': 1024}, 0.1),
                  'before': ({'max_keypoints': 2048, 'resize': 0}, 0.2)},
    'opencv': {'before': ({'detector': 'sift', 'max_keypoints': 4096, 'ratio': 0.9}, 0.8)},
}


class Pair(NamedTuple):
    kind: str
    image0: np.ndarray
    image1: np.ndarray
    camera0: Optional[CameraModel]
    camera1: Optional[CameraModel]
    R: Optional[np.ndarray]         # pose of camera 0 in camera 1 (x1 = R x0 + t)
    t: Optional[np.ndarray]
    homography: Optional[np.ndarray]  # image 0 -> image 1


def euroc_pairs() -> List[Pair]:
    if not (EUROC_DIR / 'bag' / 'metadata.yaml').exists():
        print(f'EuRoC sample not found at {EUROC_DIR}: euroc columns left empty', file=sys.stderr)
        return []
    calibration = load_euroc_calibration(EUROC_DIR / 'calibration.yaml')
    with BagReader(EUROC_DIR / 'bag') as reader:
        frames = [(pair.frame0.image, pair.frame1.image) for pair in
                  stereo_pairs(reader, '/cam0/image_raw', '/cam1/image_raw')]
    return [Pair('euroc', *frames[index], calibration.camera0, calibration.camera1,
                 calibration.R, calibration.t, None) for index in EUROC_PAIRS]


def synthetic_pairs() -> List[Pair]:
    views = synthetic.render_views(synthetic.camera_path(SYNTHETIC_FRAMES))
    pairs = []
    for step, kind in SYNTHETIC_STEPS.items():
        for first in range(0, SYNTHETIC_FRAMES - step, 3):
            view0, view1 = views[first], views[first + step]
            R, t = synthetic.relative_pose(view0.pose, view1.pose)
            pairs.append(Pair(kind, view0.image, view1.image, view0.camera, view1.camera, R, t,
                              None))
    return pairs


def homography_pairs() -> List[Pair]:
    width, height = 640, 480
    pairs = []
    for name in PHOTOS:
        photo = synthetic.load_photo(name)
        scale = max(width / photo.shape[1], height / photo.shape[0])
        photo = cv2.resize(photo, (max(width, round(photo.shape[1] * scale)),
                                   max(height, round(photo.shape[0] * scale))),
                           interpolation=cv2.INTER_AREA)[:height, :width]
        for kind, angle, zoom, perspective in WARPS:
            rotation = cv2.getRotationMatrix2D((width / 2, height / 2), angle, zoom)
            H = np.vstack([rotation, [perspective[0], perspective[1], 1.0]])
            warped = cv2.warpPerspective(photo, H, (width, height), flags=cv2.INTER_LINEAR)
            pairs.append(Pair(kind, photo, warped, None, None, None, None, H))
    return pairs


def match_errors(pair: Pair, keypoints0: np.ndarray, keypoints1: np.ndarray) -> np.ndarray:
    """Per-match error in pixels against the pair's truth."""
    if len(keypoints0) == 0:
        return np.zeros(0)
    if pair.homography is not None:
        projected = cv2.perspectiveTransform(keypoints0.reshape(-1, 1, 2).astype(np.float64),
                                             pair.homography).reshape(-1, 2)
        return np.linalg.norm(projected - keypoints1, axis=1)
    x0, x1 = pair.camera0.normalize(keypoints0), pair.camera1.normalize(keypoints1)
    focal = (pair.camera0.focal + pair.camera1.focal) / 2
    return sampson_distances_normalized(x0, x1, essential_from_pose(pair.R, pair.t)) * focal


def homography_corner_error(pair: Pair, keypoints0, keypoints1) -> float:
    if len(keypoints0) < 4:
        return np.inf
    H, _ = cv2.findHomography(keypoints0, keypoints1, cv2.USAC_MAGSAC, 3.0)
    if H is None:
        return np.inf
    height, width = pair.image0.shape[:2]
    corners = np.array([[[0, 0]], [[width - 1, 0]], [[width - 1, height - 1]],
                        [[0, height - 1]]], np.float64)
    estimated = cv2.perspectiveTransform(corners, H)
    expected = cv2.perspectiveTransform(corners, pair.homography)
    return float(np.linalg.norm(estimated - expected, axis=2).mean())


def pair_scores(pair: Pair, keypoints0, keypoints1) -> Dict[str, float]:
    errors = match_errors(pair, keypoints0, keypoints1)
    scores = {'matches': len(errors), 'correct': int((errors < CORRECT_PX).sum()),
              'within': float((errors < CORRECT_PX).mean()) if len(errors) else 0.0}
    if pair.homography is not None:
        scores['corner_px'] = homography_corner_error(pair, keypoints0, keypoints1)
    else:
        estimate = evaluation.estimate_relative_pose(keypoints0, keypoints1, pair.camera0,
                                                     pair.camera1)
        scores['pose_deg'] = evaluation.pose_errors(estimate, pair.R, pair.t)['pose_deg']
    return scores


def threshold_cut(backend: str, threshold: float) -> float:
    """The score a match needs for a grid threshold (OpenCV: ratio r keeps 1 - d1/d2 > 1 - r)."""
    return 1.0 - threshold if backend == 'opencv' else threshold


def measure(backend: str, options: Dict, thresholds, pairs: List[Pair]) -> List[Dict]:
    """One row per threshold for one extraction setting."""
    options = dict(options)
    resize = options.pop('resize', -1)
    lowest = min(threshold_cut(backend, t) for t in thresholds)
    config = MatcherConfig(backend=backend, device='cpu', warmup=False, resize=resize,
                           confidence_threshold=lowest, options=options)
    matcher = Matcher(config)
    matcher.match(pairs[0].image0, pairs[0].image1)  # first-call costs out of the timings
    results, seconds, keypoints = [], [], []
    for pair in pairs:
        start = time.perf_counter()
        prepared = [matcher.prepare(image) for image in (pair.image0, pair.image1)]
        result = matcher.match(*prepared)
        seconds.append(time.perf_counter() - start)
        keypoints += [_keypoint_count(image.features) for image in prepared]
        results.append(result)
    rows = []
    for threshold in thresholds:
        cut = threshold_cut(backend, threshold)
        per_pair = []
        for pair, result in zip(pairs, results):
            keep = result.scores >= cut
            per_pair.append((pair, pair_scores(pair, result.keypoints0[keep],
                                               result.keypoints1[keep])))
        rows.append(summarize(per_pair, {**options, 'resize': resize, 'threshold': threshold},
                              np.mean(keypoints), statistics.median(seconds) * 1e3))
    return rows


def _keypoint_count(features) -> int:
    keypoints = features['keypoints']
    return int(keypoints.shape[-2]) if hasattr(keypoints, 'shape') else len(keypoints)


def summarize(per_pair, setting: Dict, keypoints: float, ms: float) -> Dict:
    def mean(kinds, key):
        values = [s[key] for pair, s in per_pair if pair.kind in kinds]
        return float(np.mean(values)) if values else float('nan')

    pose = [s['pose_deg'] for pair, s in per_pair if 'pose_deg' in s]
    corners = [s['corner_px'] for pair, s in per_pair if 'corner_px' in s]
    pose_auc = evaluation.pose_auc(pose)
    corner_auc = evaluation.pose_auc(corners, HOMOGRAPHY_AUC_PX)
    all_kinds = {pair.kind for pair, _ in per_pair}
    return {
        'setting': setting, 'keypoints': keypoints, 'ms': ms,
        'matches': mean(all_kinds, 'matches'),
        'euroc within': mean({'euroc'}, 'within'), 'euroc correct': mean({'euroc'}, 'correct'),
        'synthetic within': mean({'synthetic', 'synthetic hard'}, 'within'),
        'homography within': mean({'homography', 'homography hard'}, 'within'),
        'hard correct': mean({'synthetic hard', 'homography hard'}, 'correct'),
        'pose AUC': [pose_auc[k] for k in evaluation.AUC_THRESHOLDS_DEG],
        'corner AUC': [corner_auc[k] for k in HOMOGRAPHY_AUC_PX],
    }


def table(backend: str, rows: List[Dict], label: str) -> List[str]:
    lines = [f'### {backend}', '',
             f'| row | setting | {label} | keypoints/image | matches/pair | euroc within 1 px | '
             'euroc correct | synthetic within 1 px | homography within 1 px | hard correct | '
             'pose AUC@5/10/20 | corner AUC@3/5/10 px | ms/pair | time ratio |',
             '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|']
    reference_ms = rows[0]['ms']
    for number, row in enumerate(rows, 1):
        setting = {k: v for k, v in row['setting'].items() if k != 'threshold'}
        if setting.get('resize') == -1:
            setting.pop('resize')
        text = ', '.join(f'{k} {v}' for k, v in setting.items())
        for mark, (options, threshold) in MARKS.get(backend, {}).items():
            if options == setting and threshold == row['setting']['threshold']:
                text += f' ({mark})'
        lines.append(
            f"| {backend[0].upper()}{number} | {text} | {row['setting']['threshold']} | "
            f"{row['keypoints']:.0f} | {row['matches']:.0f} | {row['euroc within']:.3f} | "
            f"{row['euroc correct']:.0f} | {row['synthetic within']:.3f} | "
            f"{row['homography within']:.3f} | {row['hard correct']:.0f} | "
            + '/'.join(f'{v:.3f}' for v in row['pose AUC']) + ' | '
            + '/'.join(f'{v:.3f}' for v in row['corner AUC'])
            + f" | {row['ms']:.0f} | {row['ms'] / reference_ms:.2f} |")
    return lines + ['']


def xfeat_input_rule(pairs: List[Pair]) -> List[str]:
    """XFeat on EuRoC's 752x480, not a multiple of 32: the library's documented call resamples
    the image to 736x480 and scales the keypoints back; the Matcher pads it to 768x480 and keeps
    the pixels. Same settings (the backend's defaults), refinement off, and the Matcher with its
    default refinement for scale."""
    from loftr_ros.core.backends.xfeat import XFeatBackend
    from loftr_ros.testing.references import xfeat_library

    pairs = [pair for pair in pairs if pair.kind == 'euroc']
    if not pairs:
        return []
    conf = XFeatBackend.DEFAULT_CONF
    threshold = XFeatBackend.default_confidence_threshold
    xfeat = xfeat_library()

    def library(image0, image1):
        features = []
        for image in (image0, image1):
            output = xfeat.detectAndCompute(xfeat.parse_input(image[:, :, None]))[0]
            output['image_size'] = (image.shape[1], image.shape[0])
            features.append(output)
        return xfeat.match_lighterglue(*features, min_conf=threshold)[:2]

    def run(match):
        scores = [pair_scores(pair, *match(pair.image0, pair.image1)) for pair in pairs]
        return (np.mean([s['within'] for s in scores]), np.mean([s['correct'] for s in scores]),
                np.mean([s['matches'] for s in scores]))

    def resampled(matcher):
        """The Matcher on the library's input: sides floored to multiples of 32 by bilinear
        resampling (cv2 INTER_LINEAR, torch's bilinear without antialiasing), the keypoints
        mapped back exactly."""
        def match(image0, image1):
            height, width = image0.shape[:2]
            size = (width // 32 * 32, height // 32 * 32)
            result = matcher.match(*(cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
                                     for image in (image0, image1)))
            scale = np.array([width / size[0], height / size[1]])
            return (result.keypoints0 + 0.5) * scale - 0.5, (result.keypoints1 + 0.5) * scale - 0.5
        return match

    lines = ['### xfeat input rule (EuRoC 752x480)', '',
             f"top_k {conf['top_k']}, detection_threshold {conf['detection_threshold']}, "
             f'min_conf {threshold}; {len(pairs)} stereo pairs', '',
             '| input | refinement | matches/pair | within 1 px | correct |',
             '|---|---|---|---|---|']
    for name, refinement, resample in (
            ('library: resampled to 736x480', 'none', None),
            ('Matcher: padded to 768x480', 'none', False),
            ('Matcher: padded to 768x480', 'ncc', False),
            ('Matcher: resampled to 736x480', 'none', True),
            ('Matcher: resampled to 736x480', 'ncc', True)):
        if resample is None:
            match = library
        else:
            matcher = Matcher(MatcherConfig(backend='xfeat', device='cpu', warmup=False,
                                            refinement=refinement))

            def match(image0, image1, matcher=matcher):
                result = matcher.match(image0, image1)
                return result.keypoints0, result.keypoints1
            if resample:
                match = resampled(matcher)
        within, correct, matches = run(match)
        lines.append(f'| {name} | {refinement} | {matches:.0f} | {within:.3f} | {correct:.0f} |')
    return lines + ['']


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--backends', default=','.join(GRIDS))
    parser.add_argument('--threads', type=int, default=2, help='torch CPU threads')
    parser.add_argument('--output', help='also write the tables as Markdown here')
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    started = time.strftime('%Y-%m-%d %H:%M')
    load_before = os.getloadavg()
    pairs = euroc_pairs() + synthetic_pairs() + homography_pairs()
    counts = {kind: sum(pair.kind == kind for pair in pairs)
              for kind in dict.fromkeys(pair.kind for pair in pairs)}
    header = [f'{started}, torch {torch.__version__}, {args.threads} torch threads of '
              f'{os.cpu_count()} CPUs ({platform.machine()}), device cpu; pairs: '
              + ', '.join(f'{kind} {count}' for kind, count in counts.items())]
    print(header[0], flush=True)
    lines = []
    if 'xfeat' in args.backends.split(','):
        lines += xfeat_input_rule(pairs)
        print('\n'.join(lines), flush=True)
    for backend in args.backends.split(','):
        grid = GRIDS[backend]
        rows = []
        for options in grid['options']:
            rows += measure(backend, options, grid['thresholds'], pairs)
            print(f'{backend} {options}: {rows[-1]["ms"]:.0f} ms/pair, load '
                  f'{os.getloadavg()[0]:.1f}', flush=True)
        lines += table(backend, rows, grid['label'])
        print('\n'.join(lines[-len(rows) - 4:]), flush=True)
    load_after = os.getloadavg()
    header.append(f'load average (1/5/15 min) at start {load_before[0]:.1f}/{load_before[1]:.1f}/'
                  f'{load_before[2]:.1f}, at end {load_after[0]:.1f}/{load_after[1]:.1f}/'
                  f'{load_after[2]:.1f}')
    print(header[-1])
    if args.output:
        Path(args.output).write_text('\n\n'.join(header) + '\n\n' + '\n'.join(lines))
    return 0


if __name__ == '__main__':
    sys.exit(main())
