"""pip install . — the ROS-independent core of loftr_ros and its command-line tools.

On a ROS 2 install the package is built with colcon (CMakeLists.txt, build type ament_cmake),
which also generates the loftr_ros.msg / loftr_ros.srv interfaces. This file is for people
without ROS: matching, image conversion, geometry, bag tools and `loftr-ros` CLI.
"""
import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(r"__version__ = '([^']+)'", (HERE / 'loftr_ros' / '__init__.py').read_text())[1]

setup(
    name='loftr_ros',
    version=VERSION,
    description='LoFTR-family feature matching for ROS 2, with a ROS-independent core and CLI',
    long_description=(HERE / 'README.md').read_text(encoding='utf-8'),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.10',
    packages=find_packages(include=['loftr_ros', 'loftr_ros.*']),
    install_requires=[
        'numpy>=1.24',
        'opencv-python-headless>=4.8',
        'pyyaml>=6',
        'rosbags>=0.10',
        'safetensors>=0.4',
        # Compressed images: strict JPEG decoding (corrupt data reported), PNG.
        'simplejpeg>=1.7',
        'pillow>=9.1',
        # Bring your own build (CUDA on a robot); any torch >= 2.1 works.
        'torch>=2.1',
    ],
    extras_require={
        # EfficientLoFTR / MatchAnything through transformers (the `hf` backend, and the hub
        # download of the native `eloftr` weights).
        'hf': ['transformers>=4.56', 'huggingface_hub>=0.30'],
        # Original LoFTR through kornia.
        'loftr': ['kornia>=0.7.2'],
        # Plots of `loftr-ros eval`.
        'eval': ['matplotlib>=3.7'],
        # matcher.runtime onnxruntime and `loftr-ros export` (CPU provider; install
        # onnxruntime-gpu instead for CUDA and TensorRT).
        'onnx': ['onnx>=1.16', 'onnxruntime>=1.18'],
    },
    entry_points={'console_scripts': ['loftr-ros = loftr_ros.cli:main']},
)
