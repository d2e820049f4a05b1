"""Device and precision selection from the matcher configuration."""
import torch

from loftr_ros.core.errors import ConfigError

PRECISION_DTYPES = {'fp32': torch.float32, 'fp16': torch.float16, 'bf16': torch.bfloat16}


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available else cpu; 'cpu'; 'cuda' or 'cuda:N' (ConfigError when
    CUDA or that GPU is not there)."""
    if name == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    device = torch.device(name)
    if device.type == 'cuda':
        if not torch.cuda.is_available():
            msg = f"device '{name}' requested but CUDA is not available (use 'cpu' or 'auto')"
            raise ConfigError(msg)
        index = 0 if device.index is None else device.index
        if index >= torch.cuda.device_count():
            msg = (f"device '{name}' requested but only {torch.cuda.device_count()} CUDA "
                   f'device(s) exist')
            raise ConfigError(msg)
    return device


def resolve_dtype(precision: str, device: torch.device, cpu_bf16: bool = False) -> torch.dtype:
    """The compute dtype for `precision` (validated by MatcherConfig). Half precisions need a
    CUDA device, except bf16 on a CPU where `cpu_bf16` (the backend runs under CPU autocast;
    fast on CPUs with bfloat16 instructions, AVX512-BF16 or AMX, slower than fp32 elsewhere)."""
    if precision != 'fp32' and device.type != 'cuda' and not (cpu_bf16 and precision == 'bf16'):
        msg = (f"precision '{precision}' needs a CUDA device, but the matcher runs on "
               f"'{device}'; use precision 'fp32' on CPU"
               + (", or 'bf16'" if cpu_bf16 else ''))
        raise ConfigError(msg)
    return PRECISION_DTYPES[precision]
