"""Runtimes torch vs onnxruntime per backend, and the batched stereo extraction, in one process.

    scripts/ros_env.sh python benchmarks/bench_runtimes.py [--device cpu|cuda] [--repeats 5]
        [--backends eloftr,xfeat,xfeat:mnn] [--sizes 640x480,752x480] [--threads 2]
        [--providers CUDAExecutionProvider] [--providers TensorrtExecutionProvider,...]
        [--output benchmarks/results/bench_runtimes_cpu.md]

Per backend and image size, the same Matcher settings (``resize: 0``: the model sees the stated
size, padded to its stride) run once per runtime: torch on --device, and onnxruntime with each
--providers list (default: the CPU provider on a CPU, CUDA on cuda). Rows, after one untimed
warm-up (which exports the graphs into a temporary cache and, with TensorRT, builds its
engines), the runtimes taking turns call by call so that a load change on a shared machine hits
them alike:

- stereo pair: ``Matcher.match(left, right)`` on two arrays, the node's stereo path (both
  images prepared as one batch, then matched, refined and mapped back); median and p95 wall
  time, and the median process CPU time (steadier where the cores are shared: waiting for a core
  does not count); "vs torch" is torch's median over this row's;
- batch speed-up: the per-image stage of both images one by one (two ``prepare`` calls) over one
  ``prepare_batch`` call, median wall time.

eloftr runs the published architecture with random weights calibrated on the photo
(``synthetic_weights``: realistic numbers of coarse matches; no trained weights are reachable
here); xfeat its real weights (LighterGlue, or ``xfeat:mnn`` for mutual nearest neighbours).
ONNX Runtime gets as many threads as torch (--threads).
"""
import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch

from loftr_ros.core.config import MatcherConfig
from loftr_ros.core.devices import resolve_device
from loftr_ros.core.matcher import Matcher
from loftr_ros.core.models.efficientloftr import EfficientLoFTR
from loftr_ros.core.models.efficientloftr_weights import save_hf, synthetic_weights

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_matchers import median_p95_ms, photo_pair, synchronize  # noqa: E402


def eloftr_weights(directory: Path, image: np.ndarray) -> Path:
    """Full-size EfficientLoFTR with random weights calibrated on `image` (HF format)."""
    model = EfficientLoFTR()
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32) / 255
    calibration = torch.from_numpy(gray)[None, None]
    pad = (-gray.shape[1] % 32, -gray.shape[0] % 32)
    synthetic_weights(model, [torch.nn.functional.pad(calibration, [0, pad[0], 0, pad[1]])],
                      seed=0)
    save_hf(model, directory)
    return directory


def configs(backend, device, providers, weights):
    """{runtime label: MatcherConfig} of one backend ('xfeat:mnn': xfeat with mnn)."""
    name, _, matching = backend.partition(':')
    options = {'matcher': matching} if matching else {}
    base = MatcherConfig(backend=name, weights=str(weights) if name == 'eloftr' else '',
                         device=str(device), resize=0, warmup=False, options=options)
    runs = {'torch': base}
    for names in providers or [[]]:
        label = f"onnxruntime ({', '.join(names) if names else 'default providers'})"
        runs[label] = base.replace(runtime='onnxruntime', providers=names)
    return runs


def timed_turns(functions, repeats, device):
    """Wall and process CPU seconds of `repeats` calls of each function, taking turns, after
    one untimed call each."""
    for function in functions:
        function()
    wall = [[] for _ in functions]
    cpu = [[] for _ in functions]
    for _ in range(repeats):
        for index, function in enumerate(functions):
            synchronize(device)
            start, start_cpu = time.perf_counter(), time.process_time()
            function()
            synchronize(device)
            wall[index].append(time.perf_counter() - start)
            cpu[index].append(time.process_time() - start_cpu)
    return wall, cpu


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='cpu', help="torch's: 'cpu', 'cuda' or 'auto'")
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--backends', default='eloftr,xfeat,xfeat:mnn')
    parser.add_argument('--sizes', default='640x480,752x480')
    parser.add_argument('--threads', type=int, default=2, help='CPU threads of both runtimes')
    parser.add_argument('--providers', action='append', type=lambda text: text.split(','),
                        help='comma-separated onnxruntime providers of one onnxruntime row; '
                        'repeat for several rows (default: from --device)')
    parser.add_argument('--output', type=Path, help='also write the table as Markdown here')
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    device = resolve_device(args.device)
    sizes = [tuple(int(value) for value in size.split('x')) for size in args.sizes.split(',')]
    load_before = os.getloadavg()[0]
    rows = ['| backend | size | runtime | matches | stereo pair median ms | p95 ms | CPU-time '
            'median ms | vs torch (wall / CPU) | batch speed-up (2 singles / 1 batch) |',
            '|---|---|---|---|---|---|---|---|---|']
    with tempfile.TemporaryDirectory() as folder:
        os.environ['LOFTR_ROS_CACHE'] = folder
        weights = eloftr_weights(Path(folder) / 'eloftr', photo_pair(*sizes[0])[0])
        for backend in args.backends.split(','):
            with warnings.catch_warnings():
                # The first pair exports the graphs into the temporary cache: expected here.
                warnings.simplefilter('ignore')
                matchers = {label: Matcher(config) for label, config in
                            configs(backend, device, args.providers, weights).items()}
            for width, height in sizes:
                left, right = photo_pair(width, height)
                functions, matches = [], {}
                for label, matcher in matchers.items():
                    with warnings.catch_warnings():
                        warnings.simplefilter('ignore')
                        matches[label] = len(matcher.match(left, right))
                    functions += [lambda m=matcher: m.match(left, right),
                                  lambda m=matcher: (m.prepare(left), m.prepare(right)),
                                  lambda m=matcher: m.prepare_batch([left, right])]
                wall, cpu = timed_turns(functions, args.repeats, device)
                torch_ms = None
                for index, label in enumerate(matchers):
                    pair_ms = median_p95_ms(wall[3 * index])
                    cpu_ms = statistics.median(cpu[3 * index]) * 1e3
                    torch_ms = torch_ms or (pair_ms[0], cpu_ms)
                    singles, batch = (statistics.median(wall[3 * index + k]) for k in (1, 2))
                    row = (f'| {backend} | {width}x{height} | {label} | {matches[label]} | '
                           f'{pair_ms[0]:.1f} | {pair_ms[1]:.1f} | {cpu_ms:.1f} | '
                           f'{torch_ms[0] / pair_ms[0]:.2f}x / {torch_ms[1] / cpu_ms:.2f}x | '
                           f'{singles / batch:.2f}x |')
                    print(row, flush=True)
                    rows.append(row)
    name = torch.cuda.get_device_name(device) if device.type == 'cuda' else platform.machine()
    import onnxruntime
    header = (f'torch {torch.__version__} on {device} ({name}), onnxruntime '
              f'{onnxruntime.__version__}, {args.threads} threads of {os.cpu_count()} CPUs, '
              f'{args.repeats} timed calls after 1 warm-up, load average before/after '
              f'{load_before:.1f}/{os.getloadavg()[0]:.1f}')
    print(header)
    if args.output:
        args.output.write_text(f'{header}\n\n' + '\n'.join(rows) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
