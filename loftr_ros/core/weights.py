"""Where model weights come from: a local file or directory, the Hugging Face hub, or a URL.

Nothing here may hang a robot at start-up. The local cache is always consulted first (no
network); only when the weights are not cached is the server probed, with a short bounded
connection attempt, and an unreachable server gives a WeightsError at once that names the
model, the cache directory and how to get the weights onto the machine.
"""
import os
import threading
from pathlib import Path
from typing import Sequence
from urllib.parse import urlparse

from loftr_ros.core.errors import WeightsError

# Seconds to wait for a weights server to answer before calling it unreachable.
PROBE_TIMEOUT_S = 0.5
# Seconds the hub may take to answer a metadata request once it is reachable.
HUB_ETAG_TIMEOUT_S = 10.0
# File name suffixes that mark a weights reference as a path even when it does not exist.
_FILE_SUFFIXES = ('.ckpt', '.pth', '.pt', '.safetensors', '.bin', '.onnx')


def is_local_reference(weights: str) -> bool:
    """True when `weights` names a local file or directory rather than a hub id
    ('owner/name'): it exists, starts with '/', '.' or '~', has more than one '/', or ends in a
    weights file suffix."""
    if not weights:
        return False
    if Path(weights).expanduser().exists():
        return True
    return (weights.startswith(('/', '.', '~')) or weights.count('/') > 1 or
            weights.endswith(_FILE_SUFFIXES))


def local_weights(weights: str, backend: str) -> Path:
    """The existing local file or directory `weights` (expanded); WeightsError otherwise."""
    path = Path(weights).expanduser()
    if not path.exists():
        msg = f"backend '{backend}': weights path {path} does not exist"
        raise WeightsError(msg)
    return path


def server_reachable(url: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether the server of `url` answers an HTTP HEAD request (any status) within `timeout`
    seconds.

    An HTTP answer is required, not just a TCP connection: firewalls and proxies may accept
    connections they never serve. The request (name resolution included, which socket
    timeouts do not bound) runs in a daemon thread that is abandoned when it takes too long.
    """
    import urllib.error
    import urllib.request

    answered = []

    def probe():
        try:
            urllib.request.urlopen(urllib.request.Request(url, method='HEAD'), timeout=timeout)
            answered.append(True)
        except urllib.error.HTTPError:
            answered.append(True)  # the server answered, if only with an error status
        except (OSError, ValueError):
            pass

    thread = threading.Thread(target=probe, name='weights-probe', daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(answered)


def _hub_offline_message(repo_id: str, backend: str, cache_dir: str, endpoint: str,
                         reason: str) -> str:
    return (f"backend '{backend}': weights '{repo_id}' are not in the Hugging Face cache "
            f'({cache_dir}) and {reason}. Download them where the hub is reachable with '
            f"`hf download {repo_id}` (older huggingface_hub: `huggingface-cli download "
            f"{repo_id}`) and copy {cache_dir} here (or set HF_HOME/HF_HUB_CACHE to it), or set "
            f"'weights' to a local directory holding config.json and model.safetensors")


def hub_snapshot(repo_id: str, backend: str) -> Path:
    """Local directory of the Hugging Face hub model `repo_id`: from the cache, else
    downloaded. WeightsError (within about PROBE_TIMEOUT_S) when it is not cached and the hub
    cannot be reached or HF_HUB_OFFLINE is set; WeightsError when the hub refuses it."""
    try:
        import huggingface_hub
        from huggingface_hub import constants
        from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError
    except ModuleNotFoundError:
        msg = (f"backend '{backend}': hub id '{repo_id}' needs the Python package "
               "huggingface_hub (pip install huggingface_hub), or set 'weights' to a local "
               'directory')
        raise WeightsError(msg) from None
    try:
        return Path(huggingface_hub.snapshot_download(repo_id, local_files_only=True))
    except HFValidationError as error:
        msg = f"backend '{backend}': '{repo_id}' is neither a local path nor a hub id: {error}"
        raise WeightsError(msg) from None
    except LocalEntryNotFoundError:
        pass
    cache_dir = str(constants.HF_HUB_CACHE)
    endpoint = constants.ENDPOINT
    if constants.HF_HUB_OFFLINE:
        reason = 'HF_HUB_OFFLINE is set'
        raise WeightsError(_hub_offline_message(repo_id, backend, cache_dir, endpoint, reason))
    if not server_reachable(endpoint):
        reason = f'the hub ({endpoint}) cannot be reached'
        raise WeightsError(_hub_offline_message(repo_id, backend, cache_dir, endpoint, reason))
    try:
        return Path(huggingface_hub.snapshot_download(repo_id, etag_timeout=HUB_ETAG_TIMEOUT_S))
    except (OSError, ValueError) as error:
        # huggingface_hub's HTTP and repository errors derive from OSError or ValueError.
        msg = f"backend '{backend}': cannot download weights '{repo_id}' from {endpoint}: {error}"
        raise WeightsError(msg) from None


def resolve_weights(weights: str, default_repo_id: str, backend: str) -> Path:
    """A local file/directory for `weights`: the path itself when it is local, else the hub
    snapshot of `weights` (or of `default_repo_id` when `weights` is '')."""
    if is_local_reference(weights):
        return local_weights(weights, backend)
    return hub_snapshot(weights or default_repo_id, backend)


def url_checkpoint(urls: Sequence[str], backend: str, name: str) -> Path:
    """The checkpoint published at `urls` (mirrors of one file), in torch hub's checkpoint
    cache: taken from the cache, else downloaded. WeightsError at once when it is not cached
    and no mirror can be reached."""
    import torch

    cache_dir = Path(torch.hub.get_dir()) / 'checkpoints'
    cached = cache_dir / os.path.basename(urlparse(urls[0]).path)
    if cached.is_file():
        return cached
    reachable = [url for url in urls if server_reachable(url)]
    if not reachable:
        msg = (f"backend '{backend}': weights '{name}' are not cached ({cached}) and "
               f"{', '.join(urls)} cannot be reached. Download the file where it is reachable "
               f'and put it at {cached}, or set \'weights\' to the local checkpoint file')
        raise WeightsError(msg)
    cache_dir.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in reachable:
        try:
            torch.hub.download_url_to_file(url, str(cached), progress=False)
            return cached
        except OSError as error:
            errors.append(f'{url}: {error}')
    msg = f"backend '{backend}': cannot download weights '{name}': {'; '.join(errors)}"
    raise WeightsError(msg)
