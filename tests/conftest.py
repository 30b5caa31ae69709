import os

import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def tiny_cfg():
    from isvos_lite.config import get_preset
    return get_preset("tiny")


@pytest.fixture(scope="session")
def tiny_model(tiny_cfg):
    from isvos_lite.model.isvos import ISVOS
    torch.manual_seed(0)
    return ISVOS(tiny_cfg).eval()
