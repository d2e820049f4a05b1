"""Native EfficientLoFTR vs transformers' EfficientLoFTRForKeypointMatching, same weights.

    scripts/ros_env.sh python benchmarks/bench_efficientloftr.py [--iterations 5]
        [--device auto|cpu|cuda] [--threads 2]
        [--output benchmarks/results/bench_efficientloftr_cpu.md]

Trained weights are not reachable offline, so both models get the same random weights of the
published architecture (loftr_ros.core.models.efficientloftr_weights.synthetic_weights: batch
norms calibrated on the frames, peaked coarse confidences). Run time depends on the weights only
through the number of coarse matches the native model refines (transformers refines every
coarse cell); it is printed with each row, and `--threshold 0` refines every mutual nearest
neighbour (an upper bound of that work).

Rows, ms per pair (median and p95 of --iterations after one warm-up), in one process, the
models taking turns pair by pair:
- transformers: the model called directly on a [1 x 2 x 3 x H x W] pair, as its docs show;
- native, pair: the eloftr backend through the Matcher, both images from scratch;
- native, consecutive without reuse: frames t-1, t of a rendered camera path, both processed;
- native, consecutive with reuse: each frame prepared once (backbone and first self-attention)
  and reused as the reference of the next pair, what the node's consecutive mode does.
On CUDA each row runs in fp32 and fp16 (autocast); `--precisions fp32 bf16` adds bf16 autocast on
a CPU. Ratios are against transformers in the same precision.
"""
import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from loftr_ros.core.config import MatcherConfig
from loftr_ros.core.devices import PRECISION_DTYPES, resolve_device
from loftr_ros.core.evaluation import latency_summary
from loftr_ros.core.matcher import Matcher
from loftr_ros.core.models.efficientloftr import EfficientLoFTR
from loftr_ros.core.models.efficientloftr_weights import save_hf, synthetic_weights
from loftr_ros.core.synthetic import camera_path, default_camera, render_views


def summary(seconds):
    """(median, p95) in milliseconds."""
    latency = latency_summary(seconds)
    return latency['p50_ms'], latency['p95_ms']


def gray(view):
    import cv2
    return cv2.cvtColor(view.image, cv2.COLOR_BGR2GRAY)


class Clock:
    """Wall-clock and process CPU seconds of calls, synchronizing CUDA around each. On a shared
    CPU the process time is the steadier figure: waiting for a core does not count."""

    def __init__(self, device):
        self.device = device

    def __call__(self, function):
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
        start, start_cpu = time.perf_counter(), time.process_time()
        output = function()
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - start, time.process_time() - start_cpu, output


def transformers_runner(weights_dir, frames, threshold, device, precision):
    """f(i) -> (coarse match count) matching frames i, i+1 with transformers."""
    from transformers import EfficientLoFTRForKeypointMatching
    model = EfficientLoFTRForKeypointMatching.from_pretrained(weights_dir).to(device).eval()
    model.config.coarse_matching_threshold = threshold
    tensors = [torch.from_numpy(f.astype(np.float32) / 255).to(device) for f in frames]

    def run(index):
        pair = torch.stack([tensors[index], tensors[index + 1]])[None, :, None]
        autocast = torch.autocast(device.type, dtype=PRECISION_DTYPES[precision],
                                  enabled=precision != 'fp32')
        with torch.inference_mode(), autocast:
            outputs = model(pixel_values=pair.expand(-1, -1, 3, -1, -1))
        return int((outputs.matches[0, 1] > -1).sum())
    return run


def native_runners(weights_dir, frames, threshold, device, precision, mode):
    """(pair, consecutive-with-reuse) functions of i for the eloftr backend via the Matcher."""
    config = MatcherConfig(backend='eloftr', weights=str(weights_dir), device=device.type,
                           precision=precision, resize=0, confidence_threshold=threshold,
                           options={'mode': mode})
    matcher = Matcher(config)
    prepared = {}

    def pair(index):
        return len(matcher.match(frames[index], frames[index + 1]).scores)

    def consecutive_with_reuse(index):
        # Frame `index` was prepared as the current frame of the previous pair.
        if index not in prepared:
            prepared[index] = matcher.prepare(frames[index])
        prepared[index + 1] = matcher.prepare(frames[index + 1])
        return len(matcher.match(prepared.pop(index), prepared[index + 1]).scores)
    return pair, consecutive_with_reuse


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', default='auto', help="'cpu', 'cuda' or 'auto'")
    parser.add_argument('--threads', type=int, default=2, help='CPU threads (torch)')
    parser.add_argument('--iterations', type=int, default=5)
    parser.add_argument('--width', type=int, default=640)
    parser.add_argument('--height', type=int, default=480)
    parser.add_argument('--threshold', type=float, default=0.2,
                        help='coarse confidence threshold of both models (0: all mutual NNs)')
    parser.add_argument('--skip-transformers', action='store_true')
    parser.add_argument('--precisions', nargs='+', choices=sorted(PRECISION_DTYPES),
                        help='default: fp32 and fp16 on CUDA, fp32 on a CPU (bf16 runs there '
                             'too, fast with AMX)')
    parser.add_argument('--output', type=Path, help='also write the table (markdown) here')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    precisions = args.precisions or (['fp32', 'fp16'] if device.type == 'cuda' else ['fp32'])
    if device.type != 'cuda' and 'fp16' in precisions:
        parser.error('--precisions fp16 needs a CUDA device (bf16 runs on a CPU)')
    load_before = os.getloadavg()[0]

    camera = default_camera(args.width, args.height)
    views = render_views(camera_path(args.iterations + 2), camera)
    frames = [gray(view) for view in views]

    model = EfficientLoFTR()
    calibration = torch.from_numpy(frames[0].astype(np.float32) / 255)[None, None]
    pad = (-args.width % 32, -args.height % 32)
    calibration = torch.nn.functional.pad(calibration, [0, pad[0], 0, pad[1]])
    synthetic_weights(model, [calibration], seed=0)

    rows = []
    with tempfile.TemporaryDirectory() as directory:
        save_hf(model, directory)
        clock = Clock(device)
        for precision in precisions:
            runners = {}
            if not args.skip_transformers:
                runners['transformers (refines every cell)'] = transformers_runner(
                    directory, frames, args.threshold, device, precision)
            for mode in ('full', 'optimized'):
                pair, reuse = native_runners(directory, frames, args.threshold, device,
                                             precision, mode)
                runners[f'native {mode}, pair (= consecutive without reuse)'] = pair
                runners[f'native {mode}, consecutive with reuse'] = reuse
            # Warm-up on pair 0, then the runners take turns on each pair so that a load
            # change on a shared machine affects all of them alike.
            matches = {label: run(0) for label, run in runners.items()}
            seconds = {label: [] for label in runners}
            cpu_seconds = {label: [] for label in runners}
            for index in range(1, args.iterations + 1):
                for label, run in runners.items():
                    elapsed, cpu, matches[label] = clock(lambda: run(index))
                    seconds[label].append(elapsed)
                    cpu_seconds[label].append(cpu)
            reference_label = 'transformers (refines every cell)'
            reference = None if args.skip_transformers else (
                summary(seconds[reference_label])[0], summary(cpu_seconds[reference_label])[0])
            rows += [(precision, label, seconds[label], cpu_seconds[label], matches[label],
                      reference) for label in runners]

    name = torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'
    # The machine may be shared: the load average says how much the figures are disturbed.
    header = (f'EfficientLoFTR {args.width}x{args.height}, {name}, torch '
              f'{torch.__version__}, {args.threads} CPU threads, {args.iterations} iterations, '
              f'coarse threshold {args.threshold}, load average before/after '
              f'{load_before:.1f}/{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs')
    lines = [header, '',
             '| precision | model | median ms | p95 ms | CPU-time median ms | matches '
             '| speed-up vs transformers (wall / CPU time) |',
             '|---|---|---|---|---|---|---|']
    for precision, label, seconds, cpu_seconds, matches, reference in rows:
        median, p95 = summary(seconds)
        cpu_median = summary(cpu_seconds)[0]
        ratio = (f'{reference[0] / median:.2f}x / {reference[1] / cpu_median:.2f}x'
                 if reference else '-')
        lines.append(f'| {precision} | {label} | {median:.0f} | {p95:.0f} | {cpu_median:.0f} '
                     f'| {matches} | {ratio} |')
    by_label = {(r[0], r[1]): (summary(r[2])[0], summary(r[3])[0]) for r in rows}
    for precision in precisions:
        for mode in ('full', 'optimized'):
            scratch = by_label[(precision, f'native {mode}, pair (= consecutive without reuse)')]
            reuse = by_label[(precision, f'native {mode}, consecutive with reuse')]
            lines.append(f'\nreuse speed-up ({precision}, {mode}): {scratch[0] / reuse[0]:.2f}x '
                         f'wall, {scratch[1] / reuse[1]:.2f}x CPU time')
    if device.type != 'cuda':
        lines.append('\nCUDA fp32/fp16 rows: not measured in this run (no GPU); run with '
                     '--device cuda on a GPU machine.')
    text = '\n'.join(lines)
    print(text)
    if args.output:
        args.output.write_text(text + '\n')


if __name__ == '__main__':
    main()
