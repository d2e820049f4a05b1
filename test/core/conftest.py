"""Weights in official formats written by the tests, for the backends whose weights cannot be
downloaded here."""
import pytest


@pytest.fixture(scope='session')
def loftr_checkpoint(tmp_path_factory):
    """A LoFTR checkpoint as the official repository saves it: {'state_dict': ...} with the
    LightningModule's 'matcher.' prefix on every key (random weights)."""
    import torch
    from kornia.feature import LoFTR

    torch.manual_seed(0)
    state_dict = LoFTR(pretrained=None).state_dict()
    path = tmp_path_factory.mktemp('loftr') / 'outdoor_ds.ckpt'
    torch.save({'state_dict': {f'matcher.{k}': v for k, v in state_dict.items()}}, path)
    return path
