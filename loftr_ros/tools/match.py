"""`loftr-ros match IMAGE0 IMAGE1`: match two image files, print a summary, and optionally
write the matches as JSON and a side-by-side overlay PNG."""
import json
from pathlib import Path

import cv2
import numpy as np

from loftr_ros.core.config import load_matcher_config
from loftr_ros.core.errors import ImageError
from loftr_ros.tools.arguments import add_matcher_arguments, matcher_overrides


def add_arguments(parser):
    parser.add_argument('image0', help='reference image (PNG, JPEG, PPM or PGM; 8 or 16 bit)')
    parser.add_argument('image1', help='current image')
    parser.add_argument('--config', help="YAML file with a 'matcher' section (plain or ROS "
                        'parameters file, e.g. config/stereo_matcher.yaml)')
    # A one-shot run gains nothing from warming the model up.
    add_matcher_arguments(parser, exclude=('warmup',))
    parser.add_argument('--json', metavar='OUT.json', help='write keypoints0, keypoints1 '
                        '(lists of [x, y] in original pixels), scores and inliers here')
    parser.add_argument('--overlay', metavar='OUT.png', help='write a side-by-side picture of '
                        'the matches here')


def read_image(path: str) -> np.ndarray:
    """An image file as the matcher takes it (HxW mono or HxWx3/4 BGR[A], 8 or 16 bit)."""
    if not Path(path).is_file():
        msg = f'image file {path} does not exist'
        raise ImageError(msg)
    image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if image is None:
        msg = f'cannot decode image {path} (expected PNG, JPEG, PPM or PGM)'
        raise ImageError(msg)
    return image


def result_document(result, model_name: str, config_id: str, paths) -> dict:
    """The JSON document of a MatchResult."""
    return {
        'model': model_name,
        'config_id': config_id,
        'image0': str(paths[0]),
        'image1': str(paths[1]),
        'image_size0': list(result.image_size0),
        'image_size1': list(result.image_size1),
        'keypoints0': result.keypoints0.tolist(),
        'keypoints1': result.keypoints1.tolist(),
        'scores': result.scores.tolist(),
        'inliers': None if result.inliers is None else result.inliers.tolist(),
        'geometry_model': result.geometry_model,
        'timings': dict(result.timings),
    }


def run(args) -> int:
    from loftr_ros.core.drawing import draw_matches
    from loftr_ros.core.matcher import Matcher

    config = load_matcher_config(args.config, **matcher_overrides(args), warmup=False)
    image0, image1 = read_image(args.image0), read_image(args.image1)
    matcher = Matcher(config)
    result = matcher.match(image0, image1)
    inliers = (f', {result.num_inliers} {result.geometry_model} inliers'
               if result.inliers is not None else '')
    print(f'{len(result)} matches{inliers} in {result.timings["total"] * 1000:.0f} ms '
          f'({matcher.model_name} on {matcher.device})')
    if args.json:
        document = result_document(result, matcher.model_name, config.config_id,
                                   (args.image0, args.image1))
        Path(args.json).write_text(json.dumps(document) + '\n')
    if args.overlay:
        picture = draw_matches(image0, image1, result)
        try:
            written = cv2.imwrite(args.overlay, picture)
        except cv2.error:
            written = False  # OpenCV raises for an extension it has no writer for
        if not written:
            msg = (f'cannot write overlay {args.overlay} (use a .png or .jpg path in a '
                   'writable folder)')
            raise ImageError(msg)
    return 0
