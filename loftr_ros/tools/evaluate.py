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
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np

from loftr_ros.core.bag import CAMERA_INFO_TYPE, BagReader
from loftr_ros.core.camera import (CameraModel, StereoCalibration, load_euroc_calibration,
                                   load_euroc_cameras)
from loftr_ros.core.errors import ConfigError, ImageError
from loftr_ros.core.metrics import CSV_COLUMNS, score_pair, summarize_metrics, table_rows
from loftr_ros.core.preprocessing import image_size
from loftr_ros.core.replay import ReplayOptions, iterate_pairs, match_pair, prepared_pairs
from loftr_ros.core.sync import StereoSynchronizer
from loftr_ros.core.trajectory import BODY_FRAME, load_trajectory
from loftr_ros.tools.bag_replay import (add_pairing_arguments, replay_options, run_configs,
                                        skipped_summary, warn_skipped)


def add_arguments(parser):
    add_pairing_arguments(parser)
    parser.add_argument('--compare', nargs='+', metavar='CONFIG',
                        help='several matcher YAML files run on the same pairs')
    parser.add_argument('--calibration',
                        help='EuRoC/Kalibr calibration.yaml: cam0 and cam1 for the stereo '
                             'epipolar error; in consecutive mode the camera the topic names '
                             '(/cam1/... -> cam1), whose T_body_cam turns EuRoC ground truth '
                             'into camera poses; otherwise the camera_info topics are used '
                             'when present')
    parser.add_argument('--camera-info', nargs='+', metavar='TOPIC',
                        help='camera_info topic(s): left [right] (default: <image ns>/camera_info)')
    parser.add_argument('--ground-truth',
                        help='trajectory for consecutive pose errors: TUM (camera poses) or '
                             'EuRoC CSV (body/IMU poses; needs --calibration for T_body_cam)')
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


def _count_pairs(bag, options: ReplayOptions) -> int:
    """Number of pairs the options select: a first pass over the bag that pairs by stamps and
    decodes no image (stereo pairs need the header stamps, which the bag index does not hold).
    It also reports a corrupt bag or a missing topic before any model is loaded."""
    with BagReader(bag) as reader:
        return sum(1 for _ in iterate_pairs(reader, options))


def _first_image_size(bag, options: ReplayOptions) -> Optional[Tuple[int, int]]:
    """(width, height) of the first image the options select; None when there is none or it
    does not decode (the run reports that frame)."""
    with BagReader(bag) as reader:
        for pair in iterate_pairs(reader, options):
            try:
                return image_size(pair.frame0.image)
            except ImageError:
                return None
    return None


def _stereo_calibration(reader: BagReader, args, options: ReplayOptions,
                        ) -> Optional[StereoCalibration]:
    if args.calibration and options.mode == 'consecutive':
        camera = _topic_camera(args.calibration, options.topic)
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


def _topic_camera(path, topic: str) -> CameraModel:
    """The camera of a calibration file that a topic names ('/cam1/image_raw' -> cam1), else
    its first camera, with a note."""
    cameras = load_euroc_cameras(path)
    named = [part for part in topic.strip('/').split('/') if part in cameras]
    if named:
        return cameras[named[0]]
    first = next(iter(cameras))
    print(f"note: --calibration: topic {topic} names none of the cameras {', '.join(cameras)}; "
          f'using {first}', file=sys.stderr)
    return cameras[first]


def summarize(rows: List[Dict], label: str, config, model_name: str) -> Dict:
    """The summary of one run: what ran, then every metric's fields."""
    summary = {'label': label, 'backend': config.backend, 'model': model_name,
               'config_id': config.config_id, 'config': config.to_dict(), 'pairs': len(rows)}
    summary.update(summarize_metrics(rows))
    return summary


def _write_csv(path: Path, rows: List[Dict]):
    with path.open('w', newline='') as handle:
        writer = csv.DictWriter(handle, CSV_COLUMNS, restval='')
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
             ('pairs', lambda s: str(s['pairs']))]
    lines += [(row.title, lambda s, row=row: _cell(row.value(s), row.digits))
              for row in table_rows(summaries)]
    header = '| metric | ' + ' | '.join(s['label'] for s in summaries) + ' |'
    rule = '|---|' + '---|' * len(summaries)
    body = ['| ' + name + ' | ' + ' | '.join(get(s) for s in summaries) + ' |'
            for name, get in lines]
    return '\n'.join([header, rule] + body) + '\n'


def run(args) -> int:
    from loftr_ros.core.drawing import draw_matches
    from loftr_ros.core.matcher import WARMUP_SIZE, Matcher

    output = Path(args.output)
    options = replay_options(args)
    stereo = options.mode == 'stereo'
    runs = run_configs(args)
    trajectory = load_trajectory(args.ground_truth) if args.ground_truth else None
    if trajectory is not None and stereo:
        raise ConfigError('--ground-truth scores consecutive pairs: use --mode consecutive')
    with BagReader(args.bag) as reader:
        calibration = _stereo_calibration(reader, args, options)
    if trajectory is not None and calibration is None:
        msg = '--ground-truth needs the camera: give --calibration or a camera_info topic'
        raise ConfigError(msg)
    if (trajectory is not None and trajectory.frame == BODY_FRAME and
            calibration.camera0.T_body_cam is None):
        msg = (f'--ground-truth {args.ground_truth} is a EuRoC CSV, whose poses are the body '
               f"(IMU) frame's: give --calibration (Kalibr/EuRoC YAML with the camera's "
               f'T_body_cam) to turn them into camera poses')
        raise ConfigError(msg)
    if stereo and (calibration is None or calibration.baseline == 0):
        print('note: no epipolar error without the stereo extrinsics: give --calibration',
              file=sys.stderr)
    total = _count_pairs(args.bag, options)
    size = _first_image_size(args.bag, options)
    output.mkdir(parents=True, exist_ok=True)
    summaries, partial = [], False
    skipped_by_run: Dict[str, List[ImageError]] = {}
    for label, config in runs:
        # Warmed up at the bag's image size instead of the default one: a new input size costs
        # its first pair the creation of the model's kernels, which is no latency of the model.
        matcher = Matcher(config.replace(warmup=False))
        if config.warmup:
            matcher.warm_up([size or WARMUP_SIZE])
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
                    rows.append(score_pair(result, prepared.pair, calibration, trajectory,
                                           stereo))
                    if args.overlays and number % overlay_every == 0 and \
                            number // overlay_every < args.overlays:
                        cv2.imwrite(str(directory / f'overlay_{number:05d}.png'),
                                    draw_matches(prepared.image0, prepared.image1, result))
                    progress.update(len(rows) + len(skipped))
        except KeyboardInterrupt:
            partial = True
        progress.finish()
        summary = summarize(rows, label, config, matcher.model_name)
        summary['pairs_skipped'] = [str(error) for error in skipped]
        summary['pairs_skipped_by_cause'] = dict(Counter(error.cause for error in skipped))
        if stereo:
            summary['stereo_drops'] = dict(synchronizer.drops)
        summaries.append(summary)
        _write_csv(directory / 'pairs.csv', rows)
        if rows:
            _plots(directory, rows, label)
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
