"""Weights resolution: local paths, the Hugging Face cache, and a fast, clear failure when the
weights are neither cached nor reachable (never a hang)."""
import socket
import time

import pytest
import torch

from loftr_ros.core.config import MatcherConfig
from loftr_ros.core.errors import WeightsError
from loftr_ros.core.matcher import Matcher
from loftr_ros.core.weights import (is_local_reference, resolve_weights, server_reachable,
                                    url_checkpoint)

# A name that never resolves (the .invalid top-level domain is reserved for that).
UNRESOLVABLE = 'https://hub.invalid'


@pytest.fixture
def silent_server():
    """URL of a local server that accepts connections and never answers: what a robot behind
    a proxy or firewall that swallows requests sees."""
    with socket.socket() as listener:
        listener.bind(('127.0.0.1', 0))
        listener.listen(8)
        yield f'http://127.0.0.1:{listener.getsockname()[1]}'


@pytest.fixture
def empty_offline_hub(tmp_path, monkeypatch, silent_server):
    """An empty Hugging Face cache and a hub endpoint that never answers."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, 'HF_HUB_CACHE', str(tmp_path / 'hub'))
    monkeypatch.setattr(constants, 'ENDPOINT', silent_server)
    monkeypatch.setattr(constants, 'HF_HUB_OFFLINE', False)
    return tmp_path / 'hub'


@pytest.mark.parametrize('weights, local', [
    ('zju-community/efficientloftr', False),
    ('', False),
    ('/opt/models/eloftr', True),
    ('./eloftr', True),
    ('~/models/x', True),
    ('models/eloftr/v2', True),
    ('outdoor_ds.ckpt', True),
])
def test_local_references_are_told_from_hub_ids(weights, local):
    assert is_local_reference(weights) is local


def test_offline_hub_id_fails_fast_with_instructions(empty_offline_hub):
    start = time.perf_counter()
    with pytest.raises(WeightsError) as caught:
        Matcher(MatcherConfig(backend='hf', weights='zju-community/efficientloftr'))
    elapsed = time.perf_counter() - start
    message = str(caught.value)
    assert "weights 'zju-community/efficientloftr'" in message
    assert str(empty_offline_hub) in message
    assert 'cannot be reached' in message
    assert '`hf download zju-community/efficientloftr`' in message
    assert 'huggingface-cli download' in message
    assert 'local directory holding config.json and model.safetensors' in message
    # A bound on hanging, not a speed benchmark: the probe gives up after 0.5 s.
    assert elapsed < 1.0


def test_hf_hub_offline_fails_at_once(empty_offline_hub, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, 'HF_HUB_OFFLINE', True)
    with pytest.raises(WeightsError, match='HF_HUB_OFFLINE is set'):
        resolve_weights('', 'zju-community/efficientloftr', 'hf')


def test_cached_hub_snapshot_is_used_without_network(empty_offline_hub):
    """A model in the cache (layout of huggingface_hub: models--owner--name/refs and
    snapshots) resolves to its snapshot directory although the hub is unreachable."""
    repo = empty_offline_hub / 'models--owner--tiny'
    snapshot = repo / 'snapshots' / ('a' * 40)
    snapshot.mkdir(parents=True)
    (snapshot / 'config.json').write_text('{}')
    (repo / 'refs').mkdir()
    (repo / 'refs' / 'main').write_text('a' * 40)
    assert resolve_weights('owner/tiny', 'unused/default', 'hf') == snapshot


def test_missing_local_path_names_it(tmp_path):
    missing = tmp_path / 'nothing' / 'here.ckpt'
    with pytest.raises(WeightsError, match=f"backend 'loftr': weights path {missing} does not"):
        Matcher(MatcherConfig(backend='loftr', weights=str(missing), warmup=False))


def test_invalid_hub_id_is_a_weights_error(empty_offline_hub):
    with pytest.raises(WeightsError, match="'bad id!' is neither a local path nor a hub id"):
        resolve_weights('bad id!', 'unused/default', 'hf')


def test_uncached_url_checkpoint_fails_fast(tmp_path, monkeypatch, silent_server):
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path))
    start = time.perf_counter()
    with pytest.raises(WeightsError, match=r"weights 'loftr outdoor' are not cached \("
                                           f"{tmp_path}/checkpoints/model.ckpt"):
        url_checkpoint([f'{silent_server}/model.ckpt', f'{UNRESOLVABLE}/model.ckpt'], 'loftr',
                       'loftr outdoor')
    assert time.perf_counter() - start < 1.5


def test_cached_url_checkpoint_needs_no_network(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path))
    cached = tmp_path / 'checkpoints' / 'model.ckpt'
    cached.parent.mkdir()
    cached.write_bytes(b'x')
    assert url_checkpoint([f'{UNRESOLVABLE}/model.ckpt'], 'loftr', 'loftr outdoor') == cached


def test_probe_is_bounded(silent_server):
    start = time.perf_counter()
    assert not server_reachable(silent_server, timeout=0.2)
    assert not server_reachable(UNRESOLVABLE, timeout=0.2)
    assert time.perf_counter() - start < 1.0
