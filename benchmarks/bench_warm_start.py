"""Warm start: what the first real pair costs after the Matcher's warm-up, against the median of
the ten pairs after it, at the camera's size and again at the first pair of a new size.

    scripts/ros_env.sh python benchmarks/bench_warm_start.py [--backends xfeat,lightglue,...]
        [--threads 1] [--output benchmarks/results/bench_warm_start_cpu.md]

Each backend runs in a fresh Python process (imports, thread pools and oneDNN's primitive cache
start cold, as in a node that has just started), on the CPU: the Matcher is built with
`warmup: true` (its load time is reported), then matches 11 EuRoC stereo pairs (mono 752x480,
../shared/data), then 11 pairs of a colour photo at 960x540 (a second camera, or a resized
stream). The figure of merit is first / median(next ten) per size; the target is <= 1.5. Both
wall-clock and CPU time (time.process_time, all threads) are reported: on a shared machine the
wall clock of a pair varies with the load (a process that gets an eighth of a core takes eight
times as long), the CPU time it needs does not; with one thread it is the work done. The first
pair's stage timings (preprocess, model, refine, wall clock) show where a cold cost sits.

Backends with real weights here: xfeat (LighterGlue and mnn), lightglue (DISK), opencv (SIFT,
ORB). The LoFTR family runs with random weights written in the official formats, as the tests
do (a reduced EfficientLoFTR for eloftr and hf, kornia's LoFTR architecture for loftr): their
cost does not depend on the values, but a random model's few matches make the refinement and
the fine stage cheaper than with trained weights.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

EUROC_BAG = (Path(__file__).resolve().parents[1].parent / 'shared' / 'data' /
             'euroc_v101_stereo' / 'bag')
FOLLOWING = 10
SECOND_SIZE = (960, 540)
# name -> (backend, options, weights kind)
RUNS = {
    'xfeat': ('xfeat', {}, None),
    'xfeat-mnn': ('xfeat', {'matcher': 'mnn'}, None),
    'lightglue': ('lightglue', {}, None),
    'opencv-sift': ('opencv', {'detector': 'sift'}, None),
    'opencv-orb': ('opencv', {'detector': 'orb'}, None),
    'eloftr': ('eloftr', {}, 'eloftr'),
    'hf': ('hf', {}, 'hf'),
    'loftr': ('loftr', {}, 'loftr'),
}


def euroc_pairs(count):
    from loftr_ros.core.bag import BagReader, stereo_pairs

    if not (EUROC_BAG / 'metadata.yaml').exists():
        sys.exit(f'EuRoC sample not found at {EUROC_BAG}')
    with BagReader(EUROC_BAG) as reader:
        pairs = stereo_pairs(reader, '/cam0/image_raw', '/cam1/image_raw')
        return [(pair.frame0.image, pair.frame1.image) for _, pair in zip(range(count), pairs)]


def photo_pairs(count, size):
    """Colour crops of scikit-image's coffee photo, each pair 5 px apart, moving along."""
    from loftr_ros.core.synthetic import load_photo

    width, height = size
    photo = cv2.resize(load_photo('coffee'), (width + 4 * count + 8, height + 2 * count + 8),
                       interpolation=cv2.INTER_AREA)
    return [(photo[2 * i:2 * i + height, 4 * i:4 * i + width].copy(),
             photo[2 * i + 3:2 * i + 3 + height, 4 * i + 5:4 * i + 5 + width].copy())
            for i in range(count)]


def write_weights(kind, folder: Path) -> str:
    """Random weights in the official format of a LoFTR-family backend (see the module doc)."""
    import torch

    torch.manual_seed(0)
    if kind == 'eloftr':
        from loftr_ros.core.models.efficientloftr import EfficientLoFTR
        from loftr_ros.core.models.efficientloftr_weights import save_hf, synthetic_weights

        model = EfficientLoFTR(dict(stage_blocks=(1, 1, 2, 2), stage_channels=(16, 16, 32, 64),
                                    hidden_size=64, num_layers=2))
        photo = cv2.cvtColor(photo_pairs(1, (384, 288))[0][0], cv2.COLOR_BGR2GRAY)
        synthetic_weights(model, [torch.from_numpy(photo.astype(np.float32) / 255)[None, None]],
                          seed=2)
        save_hf(model, folder)
        return str(folder)
    if kind == 'hf':
        from transformers import EfficientLoFTRConfig, EfficientLoFTRForKeypointMatching

        config = EfficientLoFTRConfig(stage_num_blocks=[1, 1, 1, 1],
                                      out_features=[16, 16, 32, 64], hidden_size=64,
                                      num_attention_layers=1, num_attention_heads=8,
                                      num_key_value_heads=8, intermediate_size=128)
        EfficientLoFTRForKeypointMatching(config).save_pretrained(folder)
        return str(folder)
    from kornia.feature import LoFTR

    path = folder / 'outdoor_ds.ckpt'
    torch.save({'state_dict': LoFTR(pretrained=None).state_dict()}, path)
    return str(path)


def worker(name, threads):
    """One backend in this (fresh) process; prints one JSON line."""
    import torch

    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    backend, options, weights_kind = RUNS[name]
    # Images first: reading the bag is not the matcher's cold start.
    sizes = {'752x480': euroc_pairs(FOLLOWING + 1),
             f'{SECOND_SIZE[0]}x{SECOND_SIZE[1]}': photo_pairs(FOLLOWING + 1, SECOND_SIZE)}
    with tempfile.TemporaryDirectory() as folder:
        weights = write_weights(weights_kind, Path(folder)) if weights_kind else ''
        start = time.perf_counter()
        from loftr_ros.core.config import MatcherConfig
        from loftr_ros.core.matcher import Matcher
        matcher = Matcher(MatcherConfig(backend=backend, weights=weights, device='cpu',
                                        warmup=True, options=options))
        report = {'name': name, 'load_s': time.perf_counter() - start, 'sizes': {}}
        for size, pairs in sizes.items():
            wall, cpu, first_stages = [], [], None
            for image0, image1 in pairs:
                start, start_cpu = time.perf_counter(), time.process_time()
                result = matcher.match(image0, image1)
                wall.append(time.perf_counter() - start)
                cpu.append(time.process_time() - start_cpu)
                first_stages = first_stages or {k: v * 1e3 for k, v in result.timings.items()}
            report['sizes'][size] = {
                'first_ms': wall[0] * 1e3, 'median_ms': statistics.median(wall[1:]) * 1e3,
                'ratio': wall[0] / statistics.median(wall[1:]),
                'first_cpu_ms': cpu[0] * 1e3, 'median_cpu_ms': statistics.median(cpu[1:]) * 1e3,
                'cpu_ratio': cpu[0] / statistics.median(cpu[1:]), 'first_stages': first_stages}
    print(json.dumps(report))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--backends', default=','.join(RUNS))
    parser.add_argument('--threads', type=int, default=2, help='torch and OpenCV CPU threads')
    parser.add_argument('--output', help='also write the table as Markdown here')
    parser.add_argument('--worker', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.threads)
        return 0
    import torch

    header = (f"{time.strftime('%Y-%m-%d %H:%M')}, torch {torch.__version__}, {args.threads} "
              f'threads of {os.cpu_count()} CPUs ({platform.machine()}), a fresh process per '
              f'backend, warmup: true; load average at start {os.getloadavg()[0]:.1f}')
    print(header, flush=True)
    sizes = ('752x480', f'{SECOND_SIZE[0]}x{SECOND_SIZE[1]}')
    rows = ['| backend | load s | ' + ' | '.join(
        f'{size}: first / median ms (CPU ms) | {size}: first / median, wall (CPU)'
        for size in sizes) + ' | first 752x480 pair: preprocess / model / refine ms |',
        '|---|---|' + '---|---|' * len(sizes) + '---|']
    print('\n'.join(rows), flush=True)
    environment = {**os.environ, 'OMP_NUM_THREADS': str(args.threads)}
    for name in args.backends.split(','):
        completed = subprocess.run(
            [sys.executable, __file__, '--worker', name, '--threads', str(args.threads)],
            capture_output=True, text=True, env=environment)
        if completed.returncode:
            print(f'{name}: failed\n{completed.stderr[-2000:]}', file=sys.stderr)
            continue
        report = json.loads(completed.stdout.strip().splitlines()[-1])
        cells = []
        for size in sizes:
            figures = report['sizes'][size]
            cells.append(f"{figures['first_ms']:.0f} / {figures['median_ms']:.0f} "
                         f"({figures['first_cpu_ms']:.0f} / {figures['median_cpu_ms']:.0f}) | "
                         f"{figures['ratio']:.2f} ({figures['cpu_ratio']:.2f})")
        stages = report['sizes'][sizes[0]]['first_stages']
        rows.append(f"| {name} | {report['load_s']:.1f} | " + ' | '.join(cells) +
                    f" | {stages['preprocess']:.0f} / {stages['model']:.0f} / "
                    f"{stages['refine']:.0f} |")
        print(rows[-1], flush=True)
    footer = f'load average at end {os.getloadavg()[0]:.1f}'
    print(footer)
    if args.output:
        Path(args.output).write_text(f'{header}\n\n' + '\n'.join(rows) + f'\n\n{footer}\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
