import os

import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")
# every test uses tiny tensors: one thread never waits on a second core that other work keeps busy
torch.set_num_threads(1)
os.environ.setdefault("ISVOS_LITE_THREADS", "1")     # the same for commands run in-process (isvos_lite.threads)


@pytest.fixture(scope="session")
def tiny_cfg():
    from isvos_lite.config import get_preset
    return get_preset("tiny")


@pytest.fixture(scope="session")
def tiny_model(tiny_cfg):
    from isvos_lite.model.isvos import ISVOS
    torch.manual_seed(0)
    return ISVOS(tiny_cfg).eval()
