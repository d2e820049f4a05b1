"""`loftr-ros eval`: replay a bag's images through one or more matcher configurations and report
accuracy and latency.

Every run (one per --config/--compare file or --backend) matches the same pairs. The output
directory gets ``summary.json`` (all runs), ``compare.md`` (one markdown table, runs side by
side) and per run a folder with ``pairs.csv``, plots and a few overlay images. Ctrl-C stops
after the current pair and still writes a consistent report marked ``"partial": true``.
"""
import csv
import json
import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Iterator, List, NamedTuple, Optional, Tuple

import cv2
import numpy as np

from loftr_ros.core import evaluation
from loftr_ros.core.bag import (CAMERA_INFO_TYPE, BagReader, FramePair, consecutive_pairs,
                                stereo_pairs)
from loftr_ros.core.camera import (CameraModel, StereoCalibration, load_euroc_calibration,
                                   relative_camera_pose)
from loftr_ros.core.config import load_matcher_config
from loftr_ros.core.errors import ConfigError, ImageError
from loftr_ros.core.sync import StereoSynchronizer
from loftr_ros.core.trajectory import load_trajectory
from loftr_ros.core.types import MatchResult
from loftr_ros.tools.arguments import add_matcher_arguments

if TYPE_CHECKING:  # torch is imported only when a run starts: `--help` stays fast
    from loftr_ros.core.backends.base import PreparedImage
    from loftr_ros.core.matcher import Matcher

CSV_FIELDS = ('pair', 'stamp0_ns', 'stamp1_ns', 'index0', 'index1', 'matches', 'inliers',
              'inlier_ratio', 'epipolar_median_px', 'epipolar_correct_ratio', 'rotation_deg',
              'translation_deg', 'pose_deg', 'scored', 'latency_ms')


def add_pairing_arguments(parser):
    """Bag, topics and pairing options shared by `eval` and `record`."""
    parser.add_argument('bag', help='rosbag2 directory (sqlite3 or mcap) or ROS 1 .bag file')
    parser.add_argument('--mode', choices=('stereo', 'consecutive'), default='stereo')
    parser.add_argument('--left', default='/cam0/image_raw',
                        help='stereo: left image topic (raw or compressed)')
    parser.add_argument('--right', default='/cam1/image_raw', help='stereo: right image topic')
    parser.add_argument('--topic', default='/cam0/image_raw',
                        help='consecutive: the image topic')
    parser.add_argument('--slop-ms', type=float, default=0.0,
                        help='stereo: largest stamp difference of a pair (default exact)')
    parser.add_argument('--step', type=int, default=1,
                        help='consecutive: pair frame i with frame i+STEP, every STEP-th frame')
    parser.add_argument('--first', type=int, help='first frame index (of the left/only topic)')
    parser.add_argument('--last', type=int, help='last frame index, inclusive')
    parser.add_argument('--start', type=float, help='time window start, seconds from bag start')
    parser.add_argument('--end', type=float,
                        help='time window end (inclusive), seconds from bag start')
    parser.add_argument('--max-pairs', type=int, help='stop after this many pairs')
    parser.add_argument('--config', help='matcher YAML (plain or the node\'s parameter file)')
    add_matcher_arguments(parser, ('backend', 'device'), repeatable=('backend',))


def iterate_pairs(reader: BagReader, args, synchronizer: Optional[StereoSynchronizer] = None):
    """The pairs the options select, at most --max-pairs."""
    if args.mode == 'stereo':
        pairs = stereo_pairs(reader, args.left, args.right, int(args.slop_ms * 1e6),
                             args.first, args.last, args.start, args.end, synchronizer)
    else:
        pairs = consecutive_pairs(reader, args.topic, args.step, args.first, args.last,
                                  args.start, args.end)
    for count, pair in enumerate(pairs):
        if args.max_pairs is not None and count >= args.max_pairs:
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


def prepared_pairs(matcher: 'Matcher', pairs, skipped: List[str]) -> Iterator[PreparedPair]:
    """Each pair, its images decoded and prepared. A pair with an image that does not decode or
    that the Matcher refuses is skipped with a warning naming the frame and the cause, and the
    message is appended to `skipped`: one bad frame does not end a run. A frame that ends one
    pair and starts the next (consecutive mode) is prepared once and its features reused, as
    the node does. Match with `match_pair`."""
    last_frame, last_prepared = None, None
    for pair in pairs:
        reused = pair.frame0 is last_frame
        try:
            image0, image1 = pair.frame0.image, pair.frame1.image
            prepared0 = last_prepared if reused else _prepare(matcher, pair.frame0, image0)
            prepared1 = _prepare(matcher, pair.frame1, image1)
        except ImageError as error:
            print(f'\nwarning: pair skipped: {error}', file=sys.stderr)
            skipped.append(str(error))
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
        raise ImageError(f'{frame.topic} message {frame.index}: {error}') from None


def match_pair(matcher: 'Matcher', prepared: PreparedPair, camera0: Optional[CameraModel] = None,
               camera1: Optional[CameraModel] = None) -> MatchResult:
    """The MatchResult of a prepared pair; its timings count the images prepared for it, i.e.
    the pair's whole cost but for a reused reference frame."""
    result = matcher.match(prepared.prepared0, prepared.prepared1, camera0, camera1)
    return matcher.add_preparation(result, *prepared.fresh)


def run_configs(args):
    """[(label, MatcherConfig)]: one per --compare file, else one per --backend, else one."""
    files = list(getattr(args, 'compare', None) or []) or [args.config]
    backends = args.backend or [None]
    runs = []
    for path in files:
        for backend in backends:
            config = load_matcher_config(path, backend=backend, device=args.device)
            label = config.backend if path is None else Path(path).stem
            if len(backends) > 1:
                label = f'{label}-{config.backend}' if path is not None else config.backend
            runs.append((f'{label}-{config.config_id}', config))
    return runs


def add_arguments(parser):
    add_pairing_arguments(parser)
    parser.add_argument('--compare', nargs='+', metavar='CONFIG',
                        help='several matcher YAML files run on the same pairs')
    parser.add_argument('--calibration',
                        help='EuRoC/Kalibr calibration.yaml (cam0, cam1) for stereo epipolar '
                             'error; otherwise the camera_info topics are used when present')
    parser.add_argument('--camera-info', nargs='+', metavar='TOPIC',
                        help='camera_info topic(s): left [right] (default: <image ns>/camera_info)')
    parser.add_argument('--ground-truth',
                        help='TUM or EuRoC CSV trajectory for consecutive pose errors')
    parser.add_argument('--overlays', type=int, default=3, help='overlay images per run')
    parser.add_argument('--output', '-o', default='eval_output', help='output directory')


class Progress:
    """One-line progress bar with rate and ETA on stderr."""

    def __init__(self, label: str, total: Optional[int]):
        self.label, self.total, self.start = label, total, time.monotonic()

    def update(self, done: int):
        elapsed = time.monotonic() - self.start
        rate = done / elapsed if elapsed > 0 else 0.0
        if self.total:
            eta = (self.total - done) / rate if rate else 0.0
            width = 24
            filled = int(width * done / self.total)
            text = (f'\r{self.label} [{"#" * filled}{"." * (width - filled)}] {done}/{self.total}'
                    f' {rate:.1f} pairs/s ETA {eta:.0f}s')
        else:
            text = f'\r{self.label} {done} pairs {rate:.1f} pairs/s'
        sys.stderr.write(text)
        sys.stderr.flush()

    def finish(self):
        sys.stderr.write('\n')


def _count_pairs(args) -> int:
    """Number of pairs the options select: a first pass over the bag that pairs by stamps and
    decodes no image (stereo pairs need the header stamps, which the bag index does not hold).
    It also reports a corrupt bag or a missing topic before any model is loaded."""
    with BagReader(args.bag) as reader:
        return sum(1 for _ in iterate_pairs(reader, args))


def _stereo_calibration(reader: BagReader, args) -> Optional[StereoCalibration]:
    if args.calibration:
        return load_euroc_calibration(args.calibration)
    topics = args.camera_info or [
        topic.rsplit('/', 1)[0] + '/camera_info' for topic in
        ((args.left, args.right) if args.mode == 'stereo' else (args.topic,))]
    if args.camera_info:
        for topic in topics:
            reader.require(topic, (CAMERA_INFO_TYPE,))
    elif not all(topic in reader.topics for topic in topics):
        return None
    cameras = [reader.camera_model(topic) for topic in topics]
    # camera_info carries no extrinsics: an identity rotation and no baseline make the
    # epipolar metric meaningless, so stereo error needs --calibration; cameras still serve
    # pose recovery (consecutive) and essential verification.
    return StereoCalibration(cameras[0], cameras[-1], np.eye(3), np.zeros(3))


def score_pair(result, pair, calibration, trajectory, stereo: bool) -> Dict:
    """The CSV row of one matched pair."""
    camera0 = calibration.camera0 if calibration else None
    camera1 = calibration.camera1 if calibration else None
    mask = evaluation.inlier_mask(result, camera0, camera1)
    inliers = int(mask.sum()) if mask is not None else 0
    row = {'stamp0_ns': pair.frame0.stamp_ns, 'stamp1_ns': pair.frame1.stamp_ns,
           'index0': pair.frame0.index, 'index1': pair.frame1.index, 'matches': len(result),
           'inliers': inliers, 'inlier_ratio': inliers / len(result) if len(result) else 0.0,
           'latency_ms': result.timings.get('total', float('nan')) * 1e3, 'scored': ''}
    if stereo and calibration is not None and calibration.baseline > 0 and len(result):
        errors = evaluation.epipolar_errors(result, calibration)
        row['epipolar_median_px'] = float(np.median(errors))
        row['epipolar_correct_ratio'] = float(np.mean(errors < evaluation.EPIPOLAR_CORRECT_PX))
    if trajectory is not None and camera0 is not None:
        poses = [trajectory.pose_at(frame.stamp_ns) for frame in (pair.frame0, pair.frame1)]
        if any(pose is None for pose in poses):
            row['scored'] = 'no ground truth'
        else:
            R, t = relative_camera_pose(*poses)
            if np.linalg.norm(t) < 1e-6:
                row['scored'] = 'no motion'
            else:
                estimate = evaluation.estimate_relative_pose(
                    result.keypoints0, result.keypoints1, camera0, camera1)
                row.update(evaluation.pose_errors(estimate, R, t))
                row['scored'] = 'yes'
    return row


def summarize(rows: List[Dict], label: str, config, model_name: str) -> Dict:
    def column(name):
        return np.array([row[name] for row in rows if row.get(name) not in (None, '')],
                        np.float64)

    summary = {'label': label, 'backend': config.backend, 'model': model_name,
               'config_id': config.config_id, 'config': config.to_dict(), 'pairs': len(rows)}
    matches = column('matches')
    summary['matches_mean'] = float(matches.mean()) if matches.size else float('nan')
    summary['matches_median'] = float(np.median(matches)) if matches.size else float('nan')
    ratios = column('inlier_ratio')
    summary['inlier_ratio_mean'] = float(ratios.mean()) if ratios.size else float('nan')
    epipolar = column('epipolar_median_px')
    if epipolar.size:
        summary['epipolar_median_px'] = float(np.median(epipolar))
        summary['epipolar_correct_ratio_mean'] = float(column('epipolar_correct_ratio').mean())
    scored = [row for row in rows if row.get('scored') == 'yes']
    unscored = [row for row in rows if row.get('scored') == 'no ground truth']
    if scored or unscored:
        errors = [row['pose_deg'] for row in scored]
        summary['pose_auc'] = {f'{int(k)}deg': v for k, v in evaluation.pose_auc(errors).items()}
        summary['pairs_scored'] = len(scored)
        summary['pairs_without_ground_truth'] = [
            [row['index0'], row['index1']] for row in unscored]
    summary['latency'] = evaluation.latency_summary(column('latency_ms') / 1e3)
    return summary


def _write_csv(path: Path, rows: List[Dict]):
    with path.open('w', newline='') as handle:
        writer = csv.DictWriter(handle, CSV_FIELDS, restval='')
        writer.writeheader()
        for number, row in enumerate(rows):
            writer.writerow({**row, 'pair': number})


def _plots(directory: Path, rows: List[Dict], label: str):
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib import pyplot

    figure, axis = pyplot.subplots(figsize=(7, 3))
    axis.plot([row['matches'] for row in rows], label='matches')
    axis.plot([row['inliers'] for row in rows], label='inliers')
    axis.set_xlabel('pair')
    axis.set_title(f'{label}: matches over time')
    axis.legend()
    figure.tight_layout()
    figure.savefig(directory / 'matches.png')
    pyplot.close(figure)

    figure, axis = pyplot.subplots(figsize=(5, 3))
    axis.hist([row['latency_ms'] for row in rows], bins=20)
    axis.set_xlabel('latency per pair [ms]')
    axis.set_title(f'{label}: latency')
    figure.tight_layout()
    figure.savefig(directory / 'latency.png')
    pyplot.close(figure)

    pose = sorted(row['pose_deg'] for row in rows if row.get('scored') == 'yes')
    epipolar = sorted(row['epipolar_median_px'] for row in rows
                      if row.get('epipolar_median_px') not in (None, ''))
    if pose or epipolar:
        values, unit = (pose, 'pose error [deg]') if pose else (epipolar,
                                                                 'median epipolar error [px]')
        figure, axis = pyplot.subplots(figsize=(5, 3))
        finite = [min(v, 1e3) for v in values]
        axis.step(finite, np.arange(1, len(finite) + 1) / len(finite), where='post')
        axis.set_xlabel(unit)
        axis.set_ylabel('fraction of pairs')
        axis.set_xlim(0, 20 if pose else max(2.0, max(finite)))
        axis.set_title(f'{label}: error CDF')
        figure.tight_layout()
        figure.savefig(directory / 'error_cdf.png')
        pyplot.close(figure)


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _cell(value, digits=2):
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return '-'
    return f'{value:.{digits}f}' if isinstance(value, float) else str(value)


def compare_table(summaries: List[Dict]) -> str:
    """Markdown table, one column per run."""
    lines = [('model', lambda s: s['model']), ('config', lambda s: s['config_id']),
             ('pairs', lambda s: str(s['pairs'])),
             ('matches (mean)', lambda s: _cell(s['matches_mean'], 1)),
             ('inlier ratio', lambda s: _cell(s['inlier_ratio_mean'], 3))]
    if any('epipolar_median_px' in s for s in summaries):
        lines += [('epipolar error median [px]', lambda s: _cell(s.get('epipolar_median_px'), 3)),
                  ('matches within 1 px', lambda s: _cell(s.get('epipolar_correct_ratio_mean'),
                                                          3))]
    if any('pose_auc' in s for s in summaries):
        for key in ('5deg', '10deg', '20deg'):
            lines.append((f'pose AUC@{key[:-3]}°',
                          lambda s, key=key: _cell(s.get('pose_auc', {}).get(key), 3)))
    lines += [('latency p50 [ms]', lambda s: _cell(s['latency']['p50_ms'], 1)),
              ('latency p95 [ms]', lambda s: _cell(s['latency']['p95_ms'], 1))]
    header = '| metric | ' + ' | '.join(s['label'] for s in summaries) + ' |'
    rule = '|---|' + '---|' * len(summaries)
    body = ['| ' + name + ' | ' + ' | '.join(get(s) for s in summaries) + ' |'
            for name, get in lines]
    return '\n'.join([header, rule] + body) + '\n'


def run(args) -> int:
    from loftr_ros.core.drawing import draw_matches
    from loftr_ros.core.matcher import Matcher

    output = Path(args.output)
    runs = run_configs(args)
    trajectory = load_trajectory(args.ground_truth) if args.ground_truth else None
    if trajectory is not None and args.mode != 'consecutive':
        raise ConfigError('--ground-truth scores consecutive pairs: use --mode consecutive')
    with BagReader(args.bag) as reader:
        calibration = _stereo_calibration(reader, args)
    if trajectory is not None and calibration is None:
        msg = '--ground-truth needs the camera: give --calibration or a camera_info topic'
        raise ConfigError(msg)
    if args.mode == 'stereo' and (calibration is None or calibration.baseline == 0):
        print('note: no epipolar error without the stereo extrinsics: give --calibration',
              file=sys.stderr)
    total = _count_pairs(args)
    output.mkdir(parents=True, exist_ok=True)
    summaries, partial = [], False
    for label, config in runs:
        matcher = Matcher(config)
        directory = output / label
        directory.mkdir(exist_ok=True)
        rows: List[Dict] = []
        skipped: List[str] = []
        progress = Progress(label, total)
        synchronizer = StereoSynchronizer(int(args.slop_ms * 1e6))
        overlay_every = max(1, (total or 1) // max(args.overlays, 1))
        try:
            with BagReader(args.bag) as reader:
                pairs = prepared_pairs(matcher, iterate_pairs(reader, args, synchronizer),
                                       skipped)
                for number, prepared in enumerate(pairs):
                    result = match_pair(matcher, prepared,
                                        calibration.camera0 if calibration else None,
                                        calibration.camera1 if calibration else None)
                    rows.append(score_pair(result, prepared.pair, calibration, trajectory,
                                           args.mode == 'stereo'))
                    if args.overlays and number % overlay_every == 0 and \
                            number // overlay_every < args.overlays:
                        cv2.imwrite(str(directory / f'overlay_{number:05d}.png'),
                                    draw_matches(prepared.image0, prepared.image1, result))
                    progress.update(len(rows) + len(skipped))
        except KeyboardInterrupt:
            partial = True
        progress.finish()
        summary = summarize(rows, label, config, matcher.model_name)
        summary['pairs_skipped'] = skipped
        if args.mode == 'stereo':
            summary['stereo_drops'] = dict(synchronizer.drops)
        summaries.append(summary)
        _write_csv(directory / 'pairs.csv', rows)
        if rows:
            _plots(directory, rows, label)
        if partial:
            break
    table = compare_table(summaries)
    (output / 'compare.md').write_text(table)
    report = {'bag': str(args.bag), 'mode': args.mode, 'partial': partial,
              'pairs_expected': total, 'runs': summaries}
    (output / 'summary.json').write_text(json.dumps(_json_safe(report), indent=2) + '\n')
    print(table)
    for summary in summaries:
        if summary['pairs_skipped']:
            print(f"{summary['label']}: {len(summary['pairs_skipped'])} pair(s) skipped for an "
                  'image that does not decode or that the matcher refuses (summary.json: '
                  'pairs_skipped)', file=sys.stderr)
        missing = summary.get('pairs_without_ground_truth')
        if missing:
            print(f"{summary['label']}: {len(missing)} pair(s) outside the ground-truth stamp "
                  f'range were not scored (frame indices {missing})', file=sys.stderr)
    if partial:
        print(f'interrupted: partial report in {output}', file=sys.stderr)
        return 130
    print(f'report in {output}')
    return 0
