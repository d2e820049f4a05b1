"""`loftr-ros eval`: replay a bag's images through one or more matcher configurations and report
accuracy and latency.

Every run (one per --config/--compare file or --backend) matches the same pairs. The output
directory gets ``summary.json`` (all runs), ``compare.md`` (one markdown table, runs side by
side) and per run a folder with ``pairs.csv``, plots and a few overlay images. Ctrl-C stops
after the current pair and still writes a consistent report marked ``"partial": true``.
"""
import csv
import dataclasses
import json
import math
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np

from loftr_ros.core.bag import CAMERA_INFO_TYPE, BagReader
from loftr_ros.core.camera import (CameraModel, StereoCalibration, load_euroc_calibration,
                                   load_euroc_cameras)
from loftr_ros.core.errors import ConfigError, ImageError
from loftr_ros.core.evaluation import TrackLengths, inlier_verification
from loftr_ros.core.metrics import (CSV_COLUMNS, TRACK_CSV_COLUMNS, ScoredFrame, ScoredPair,
                                    scored_row, summarize_metrics, summarize_tracks, table_rows,
                                    track_table_rows, tracked_row)
from loftr_ros.core.preprocessing import image_size
from loftr_ros.core.replay import (ReplayOptions, iterate_pairs, match_pair, prepared_pairs,
                                   tracked_frames)
from loftr_ros.core.reprojection import TrackReprojection
from loftr_ros.core.sync import StereoSynchronizer
from loftr_ros.core.trajectory import BODY_FRAME, load_trajectory
from loftr_ros.tools.bag_replay import (add_pairing_arguments, replay_options, run_configs,
                                        skipped_summary, warn_skipped)


def add_arguments(parser):
    add_pairing_arguments(parser, tracks=True)
    parser.add_argument('--compare', nargs='+', metavar='CONFIG',
                        help='several matcher YAML files run on the same pairs (default: one '
                             'run, --config or the defaults)')
    parser.add_argument('--calibration',
                        help='EuRoC/Kalibr calibration.yaml: cam0 and cam1 for the stereo '
                             'epipolar error; in consecutive mode the camera the topic names '
                             '(/cam1/... -> cam1), whose T_body_cam turns EuRoC ground truth '
                             'into camera poses (default: none; the camera_info topics when '
                             'the bag has them)')
    parser.add_argument('--camera-info', nargs='+', metavar='TOPIC',
                        help='camera_info topic(s): left [right] (default: <image '
                             'namespace>/camera_info, when in the bag)')
    parser.add_argument('--ground-truth',
                        help='trajectory for consecutive pose errors, implies consecutive '
                             'pairs; with --mode tracks, for the temporal reprojection error '
                             'of the tracks: TUM (camera poses) or EuRoC CSV (body/IMU poses; '
                             'needs --calibration for T_body_cam) (default: none)')
    parser.add_argument('--overlays', type=int, default=3,
                        help='overlay images per run (default: %(default)s)')
    parser.add_argument('--output', '-o', default='eval_output',
                        help='output directory (default: %(default)s)')


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


def _count_pairs(bag, options: ReplayOptions) -> int:
    """Number of pairs the options select: a first pass over the bag that pairs by stamps and
    decodes no image (stereo pairs need the header stamps, which the bag index does not hold).
    It also reports a corrupt bag or a missing topic before any model is loaded."""
    with BagReader(bag) as reader:
        return sum(1 for _ in iterate_pairs(reader, options))


def _first_image_size(bag, options: ReplayOptions, config) -> Optional[Tuple[int, int]]:
    """(width, height) of the first image the options select, decoded within the limits of
    `config`; None when there is none or it is refused (the run reports that frame)."""
    with BagReader(bag, config.max_image_pixels, config.max_compressed_bytes) as reader:
        for pair in iterate_pairs(reader, options):
            try:
                return image_size(pair.frame0.image)
            except ImageError:
                return None
    return None


def _stereo_calibration(reader: BagReader, args, options: ReplayOptions, notes: List[str],
                        ) -> Optional[StereoCalibration]:
    if args.calibration and options.mode == 'consecutive':
        camera = _topic_camera(args.calibration, options.topic, notes)
        return StereoCalibration(camera, camera, np.eye(3), np.zeros(3))
    if args.calibration:
        return load_euroc_calibration(args.calibration)
    topics = args.camera_info or [
        topic.rsplit('/', 1)[0] + '/camera_info' for topic in
        ((options.left, options.right) if options.mode == 'stereo' else (options.topic,))]
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


def _topic_camera(path, topic: str, notes: List[str]) -> CameraModel:
    """The camera of a calibration file that a topic names ('/cam1/image_raw' -> cam1), else
    its first camera, with a note."""
    cameras = load_euroc_cameras(path)
    named = [part for part in topic.strip('/').split('/') if part in cameras]
    if named:
        return cameras[named[0]]
    first = next(iter(cameras))
    notes.append(f"--calibration: topic {topic} names none of the cameras "
                 f"{', '.join(cameras)}; using {first}")
    return cameras[first]


def _true_geometry(stereo: bool, calibration: Optional[StereoCalibration],
                   trajectory) -> Optional[str]:
    """What the matches' epipolar errors are measured against, None when nothing is."""
    if stereo:
        if calibration is not None and calibration.baseline > 0:
            return 'the calibrated stereo geometry'
        return None
    if trajectory is not None and calibration is not None:
        return 'the ground-truth camera motion'
    return None


def _no_cdf_reason(truth: Optional[str], rows: List[Dict]) -> str:
    if truth is None:
        return 'no true geometry (stereo: --calibration; consecutive: --ground-truth)'
    if not rows:
        return 'no pair was matched'
    return f'no match could be measured against {truth} (no motion, or none in its range)'


class ErrorCdf:
    """The epipolar (Sampson) error of every match of a run, counted in bins of BIN_PX up to
    LIMIT_PX (and one count beyond), so that a long bag's distribution takes no more memory
    than a short one's."""

    BIN_PX = 0.01
    LIMIT_PX = 20.0

    def __init__(self):
        self.counts = np.zeros(int(round(self.LIMIT_PX / self.BIN_PX)), np.int64)
        self.beyond = 0

    @property
    def count(self) -> int:
        return int(self.counts.sum()) + self.beyond

    def add(self, errors: Optional[np.ndarray]):
        if errors is None:
            return
        bins = np.floor(np.asarray(errors) / self.BIN_PX).astype(np.int64)
        inside = bins < len(self.counts)
        self.counts += np.bincount(bins[inside], minlength=len(self.counts))
        self.beyond += int((~inside).sum())

    def plot(self, path: Path, label: str, truth: str) -> str:
        """Write the CDF to `path`; returns what the summary says about it."""
        import matplotlib
        matplotlib.use('Agg')
        from matplotlib import pyplot

        edges = np.arange(1, len(self.counts) + 1) * self.BIN_PX
        fraction = np.cumsum(self.counts) / self.count
        shown = edges <= 5.0
        figure, axis = pyplot.subplots(figsize=(5, 3))
        axis.plot(np.concatenate([[0.0], edges[shown]]), np.concatenate([[0.0], fraction[shown]]))
        axis.set_xlabel('epipolar (Sampson) error [px]')
        axis.set_ylabel('fraction of matches')
        axis.set_ylim(0, 1)
        axis.set_title(f'{label}: every match ({self.count})', fontsize=9)
        figure.tight_layout()
        figure.savefig(path)
        pyplot.close(figure)
        return f'{path.name}: the error of every match ({self.count}) against {truth}'


def summarize(rows: List[Dict], label: str, config, model_name: str) -> Dict:
    """The summary of one run: what ran, then every metric's fields."""
    summary = {'label': label, 'backend': config.backend, 'model': model_name,
               'config_id': config.config_id, 'config': config.to_dict(), 'pairs': len(rows)}
    summary.update(summarize_metrics(rows))
    return summary


def _write_csv(path: Path, rows: List[Dict], columns=CSV_COLUMNS, number_column='pair'):
    with path.open('w', newline='') as handle:
        writer = csv.DictWriter(handle, columns, restval='')
        writer.writeheader()
        for number, row in enumerate(rows):
            writer.writerow({**row, number_column: number})


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


def _verification(verification: Dict) -> str:
    """'eval: essential, 1.0 px' for a summary's inlier_verification."""
    return (f"{verification['by']}: {verification['model']}, "
            f"{verification['threshold_px']:g} px")


def compare_table(summaries: List[Dict]) -> str:
    """Markdown table, one column per run."""
    lines = [('model', lambda s: s['model']), ('config', lambda s: s['config_id']),
             ('pairs', lambda s: str(s['pairs'])),
             ('inliers verified by', lambda s: _verification(s['inlier_verification']))]
    return _table(summaries, lines, table_rows(summaries))


def tracks_table(summaries: List[Dict]) -> str:
    """Markdown table of tracks runs, one column per run."""
    lines = [('model', lambda s: s['model']), ('config', lambda s: s['config_id']),
             ('frames', lambda s: str(s['frames']))]
    return _table(summaries, lines, track_table_rows(summaries))


def _table(summaries: List[Dict], lines, rows) -> str:
    """Markdown table: `lines` (title, text of a summary), then the metrics' `rows`."""
    lines = lines + [(row.title, lambda s, row=row: _cell(row.value(s), row.digits))
                     for row in rows]
    header = '| metric | ' + ' | '.join(s['label'] for s in summaries) + ' |'
    rule = '|---|' + '---|' * len(summaries)
    body = ['| ' + name + ' | ' + ' | '.join(get(s) for s in summaries) + ' |'
            for name, get in lines]
    return '\n'.join([header, rule] + body) + '\n'


def _matcher(config, size: Optional[Tuple[int, int]]):
    """The run's Matcher, warmed up at the bag's image size instead of the default one: a new
    input size costs its first pair the creation of the model's kernels, which is no latency
    of the model."""
    from loftr_ros.core.matcher import WARMUP_SIZE, Matcher
    matcher = Matcher(config.replace(warmup=False))
    if config.warmup:
        matcher.warm_up([size or WARMUP_SIZE])
    return matcher


def _announce(pairing: str, total: int, notes: List[str]):
    """The pairing line and the notes, once the first run's matcher is built."""
    print(f'loftr-ros eval: {pairing}: {total} pair(s)', flush=True)
    for note in notes:
        print(f'note: {note}', file=sys.stderr, flush=True)


def run(args) -> int:
    from loftr_ros.core.drawing import draw_matches

    # Everything that can fail is checked before anything is said about the run: errors first,
    # then the line saying which pairs are matched, then the notes.
    output = Path(args.output)
    runs = run_configs(args)
    notes: List[str] = []
    with BagReader(args.bag) as reader:
        options, pairing = replay_options(args, reader)
        stereo = options.mode == 'stereo'
        trajectory = load_trajectory(args.ground_truth) if args.ground_truth else None
        if trajectory is not None and stereo and args.mode != 'tracks':
            raise ConfigError('--ground-truth scores consecutive pairs: use --topic or --mode '
                              'consecutive (or --mode tracks for the reprojection error of '
                              'stereo tracks)')
        calibration = _stereo_calibration(reader, args, options, notes)
    if trajectory is not None and calibration is None:
        msg = '--ground-truth needs the camera: give --calibration or a camera_info topic'
        raise ConfigError(msg)
    if (trajectory is not None and trajectory.frame == BODY_FRAME and
            calibration.camera0.T_body_cam is None):
        msg = (f'--ground-truth {args.ground_truth} is a EuRoC CSV, whose poses are the body '
               f"(IMU) frame's: give --calibration (Kalibr/EuRoC YAML with the camera's "
               f'T_body_cam) to turn them into camera poses')
        raise ConfigError(msg)
    if args.mode == 'tracks':
        return _run_tracks(args, runs, options, pairing, calibration, trajectory, notes, output)
    truth = _true_geometry(stereo, calibration, trajectory)
    if truth is None:
        notes.append('no epipolar error and no error_cdf.png without the true geometry: '
                     + ('give --calibration (the stereo extrinsics)' if stereo else
                        'give --ground-truth (and the camera: --calibration or camera_info)'))
    total = _count_pairs(args.bag, options)
    size = _first_image_size(args.bag, options, runs[0].config)
    output.mkdir(parents=True, exist_ok=True)
    summaries, partial = [], False
    skipped_by_run: Dict[str, List[ImageError]] = {}
    for run_index, (label, config, _) in enumerate(runs):
        matcher = _matcher(config, size)
        if run_index == 0:
            _announce(pairing, total, notes)
        cdf = ErrorCdf()
        directory = output / label
        directory.mkdir(exist_ok=True)
        rows: List[Dict] = []
        skipped = skipped_by_run[label] = []
        progress = Progress(label, total)
        synchronizer = StereoSynchronizer(options.slop_ns)
        overlay_every = max(1, (total or 1) // max(args.overlays, 1))
        try:
            with BagReader(args.bag, config.max_image_pixels,
                           config.max_compressed_bytes) as reader:
                pairs = prepared_pairs(matcher, iterate_pairs(reader, options, synchronizer),
                                       warn_skipped(skipped))
                for number, prepared in enumerate(pairs):
                    result = match_pair(matcher, prepared,
                                        calibration.camera0 if calibration else None,
                                        calibration.camera1 if calibration else None)
                    scored = ScoredPair(result, prepared.pair, calibration, trajectory, stereo)
                    rows.append(scored_row(scored))
                    cdf.add(scored.epipolar_errors)
                    if args.overlays and number % overlay_every == 0 and \
                            number // overlay_every < args.overlays:
                        cv2.imwrite(str(directory / f'overlay_{number:05d}.png'),
                                    draw_matches(prepared.image0, prepared.image1, result))
                    progress.update(len(rows) + len(skipped))
        except KeyboardInterrupt:
            partial = True
        progress.finish()
        summary = summarize(rows, label, config, matcher.model_name)
        summary['inlier_verification'] = inlier_verification(
            config.geometry, config.ransac_threshold, calibration is not None)
        summary['pairs_skipped'] = [str(error) for error in skipped]
        summary['pairs_skipped_by_cause'] = dict(Counter(error.cause for error in skipped))
        if stereo:
            summary['stereo_drops'] = dict(synchronizer.drops)
        _write_csv(directory / 'pairs.csv', rows)
        if rows:
            _plots(directory, rows, label)
        summary['error_cdf'] = (cdf.plot(directory / 'error_cdf.png', label, truth) if cdf.count
                                else f'not written: {_no_cdf_reason(truth, rows)}')
        summaries.append(summary)
        if partial:
            break
    table = compare_table(summaries)
    (output / 'compare.md').write_text(table)
    report = {'bag': str(args.bag), 'mode': options.mode, 'partial': partial,
              'pairs_expected': total, 'runs': summaries}
    (output / 'summary.json').write_text(json.dumps(_json_safe(report), indent=2) + '\n')
    print(table)
    for summary in summaries:
        if skipped_by_run[summary['label']]:
            print(f"{summary['label']}: {skipped_summary(skipped_by_run[summary['label']])} "
                  '(summary.json: pairs_skipped)', file=sys.stderr)
        missing = summary.get('pairs_without_ground_truth')
        if missing:
            print(f"{summary['label']}: {len(missing)} pair(s) outside the ground-truth stamp "
                  f'range were not scored (frame indices {missing})', file=sys.stderr)
    if partial:
        print(f'interrupted: partial report in {output}', file=sys.stderr)
        return 130
    print(f'report in {output}')
    return 0


def _run_tracks(args, runs, options: ReplayOptions, pairing: str,
                calibration: Optional[StereoCalibration], trajectory, notes: List[str],
                output: Path) -> int:
    """`eval --mode tracks`: the Tracker over the bag's frames, one run per configuration (its
    matcher and tracks settings), scored; with the ground truth, the temporal reprojection
    error of the tracks (loftr_ros.core.reprojection)."""
    from loftr_ros.core.tracking import Tracker

    stereo = options.mode == 'stereo'
    extrinsics = stereo and calibration is not None and calibration.baseline > 0
    if stereo and not extrinsics:
        notes.append('no stereo epipolar error of the tracks without the stereo extrinsics: '
                     'give --calibration')
    if trajectory is None:
        notes.append('no temporal reprojection error of the tracks without ground-truth poses: '
                     'give --ground-truth')
    elif stereo and not extrinsics:
        notes.append('the reprojection error triangulates the left observations only: the '
                     'right ones need the stereo extrinsics (--calibration)')
    total = _count_pairs(args.bag, options)
    size = _first_image_size(args.bag, options, runs[0].config)
    output.mkdir(parents=True, exist_ok=True)
    summaries, partial, skipped_by_run, without_truth_by_run = [], False, {}, {}
    for run_index, (label, config, tracker_config) in enumerate(runs):
        matcher = _matcher(config, size)
        if run_index == 0:
            _announce(pairing, total, notes)
        tracker = Tracker(matcher, tracker_config)
        if calibration is not None:
            # The cameras only: given the calibration, the tracker would drop every right
            # observation beyond tracks.stereo_threshold from it, and the stereo error would
            # be enforced rather than measured. Its stereo check is then the essential matrix
            # RANSAC finds for the frame, as on a robot without extrinsics.
            tracker.set_cameras(calibration.camera0, calibration.camera1 if stereo else None)
        reprojection = (None if trajectory is None else TrackReprojection(
            calibration.camera0, calibration if extrinsics else None))
        directory = output / label
        directory.mkdir(exist_ok=True)
        rows: List[Dict] = []
        lengths = TrackLengths()
        skipped = skipped_by_run[label] = []
        without_truth = without_truth_by_run[label] = []
        progress = Progress(label, total)
        synchronizer = StereoSynchronizer(options.slop_ns)
        try:
            with BagReader(args.bag, config.max_image_pixels,
                           config.max_compressed_bytes) as reader:
                pairs = iterate_pairs(reader, options, synchronizer)
                for left, _, frame in tracked_frames(tracker, pairs,
                                                     warn_skipped(skipped, 'frame')):
                    rows.append(tracked_row(ScoredFrame(frame, calibration)))
                    lengths.add(frame.ids, frame.track_lengths)
                    if reprojection is not None:
                        pose = trajectory.camera_pose(frame.stamp_ns,
                                                      calibration.camera0.T_body_cam)
                        if pose is None:
                            without_truth.append(left.index)
                        reprojection.add(frame, pose)
                    progress.update(len(rows) + len(skipped))
        except KeyboardInterrupt:
            partial = True
        progress.finish()
        summary = {'label': label, 'backend': config.backend, 'model': matcher.model_name,
                   'config_id': config.config_id, 'config': config.to_dict(),
                   'tracker': dataclasses.asdict(tracker.config), 'frames': len(rows)}
        summary.update(summarize_tracks(rows))
        summary['track_length'] = lengths.summary()
        if reprojection is not None:
            summary['reprojection'] = {**reprojection.summary(),
                                       'frames_without_ground_truth': without_truth}
        summary['frames_skipped'] = [str(error) for error in skipped]
        summary['frames_skipped_by_cause'] = dict(Counter(error.cause for error in skipped))
        if stereo:
            summary['stereo_drops'] = dict(synchronizer.drops)
        _write_csv(directory / 'frames.csv', rows, TRACK_CSV_COLUMNS, 'frame')
        summaries.append(summary)
        if partial:
            break
    table = tracks_table(summaries)
    (output / 'compare.md').write_text(table)
    report = {'bag': str(args.bag), 'mode': 'tracks', 'stereo': stereo, 'partial': partial,
              'pairs_expected': total, 'runs': summaries}
    (output / 'summary.json').write_text(json.dumps(_json_safe(report), indent=2) + '\n')
    print(table)
    for label, skipped in skipped_by_run.items():
        if skipped:
            print(f"{label}: {skipped_summary(skipped, 'frame')} (summary.json: frames_skipped)",
                  file=sys.stderr)
        without_truth = without_truth_by_run[label]
        if without_truth:
            print(f'{label}: {len(without_truth)} frame(s) outside the ground-truth stamp range '
                  f'left out of the reprojection error (frame indices {without_truth})',
                  file=sys.stderr)
    if partial:
        print(f'interrupted: partial report in {output}', file=sys.stderr)
        return 130
    print(f'report in {output}')
    return 0
