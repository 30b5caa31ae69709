"""Two-process DistributedDataParallel training with the gloo backend on CPU: a step runs, replicas stay in sync."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from isvos_lite.config import get_preset
from isvos_lite.train.batches import DataSources
from isvos_lite.train.distributed import DistributedContext
from isvos_lite.train.trainer import Trainer

from training_helpers import make_tiny_world, tiny_train_config

WORLD_SIZE = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_on_one_rank(rank: int, port: int, world, out, results) -> None:
    """One process of the job: what ``torchrun`` would start, then a report of its parameters and losses."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(WORLD_SIZE), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    ctx = DistributedContext.from_environment("cpu")            # joins the gloo group
    try:
        losses = []
        trainer = Trainer(tiny_train_config(iterations=2, checkpoint_every=2), get_preset("tiny"),
                          DataSources.discover(world), out, plan=("main",), progress=False, dist_ctx=ctx,
                          on_step_end=lambda stage, step, record: losses.append(record["loss"]))
        initial = torch.cat([p.detach().flatten().clone() for p in trainer.model.parameters()])
        trainer.run()
        final = torch.cat([p.detach().flatten() for p in trainer.model.parameters()])
        torch.save({"initial": initial, "final": final, "losses": losses}, os.path.join(results, f"rank{rank}.pt"))
    finally:
        ctx.close()


@pytest.mark.skipif(not dist.is_available(), reason="this PyTorch build has no torch.distributed")
def test_two_process_gloo_training_keeps_replicas_in_sync(tmp_path):
    world = make_tiny_world(tmp_path / "toy")
    results = tmp_path / "results"
    results.mkdir()
    mp.spawn(train_on_one_rank, args=(free_port(), world, tmp_path / "run", str(results)),
             nprocs=WORLD_SIZE, join=True)
    reports = [torch.load(results / f"rank{r}.pt") for r in range(WORLD_SIZE)]
    torch.testing.assert_close(reports[0]["initial"], reports[1]["initial"], rtol=0, atol=0)   # same start
    assert not torch.equal(reports[0]["final"], reports[0]["initial"])                         # it trained
    torch.testing.assert_close(reports[0]["final"], reports[1]["final"], rtol=0, atol=1e-7)    # still replicas
    # each process saw its own half of the batch, so the local losses differ
    assert reports[0]["losses"] != reports[1]["losses"]
    # only the main process writes the run
    assert (tmp_path / "run" / "checkpoints" / "main-0000002" / "train_state.pt").exists()
    assert (tmp_path / "run" / "model.safetensors").exists()


def test_one_process_torchrun_job_is_a_real_ddp_job(tiny_world_for_one, tmp_path, monkeypatch):
    """torchrun --nproc_per_node=1 (what scripts/gpu_check.sh runs on one GPU): a process group of one and a DDP
    wrapper, not the plain single-process path."""
    from torch.nn.parallel import DistributedDataParallel

    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(free_port()))
    for name, value in (("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0"), ("TORCHELASTIC_RUN_ID", "test")):
        monkeypatch.setenv(name, value)
    ctx = DistributedContext.from_environment("cpu")
    try:
        assert ctx.is_distributed and ctx.owns_process_group and dist.get_world_size() == 1
        losses = []
        trainer = Trainer(tiny_train_config(iterations=1, checkpoint_every=1), get_preset("tiny"),
                          DataSources.discover(tiny_world_for_one), tmp_path / "run", plan=("main",), progress=False,
                          dist_ctx=ctx, on_step_end=lambda stage, step, record: losses.append(record["loss"]))
        assert isinstance(trainer.objective, DistributedDataParallel)
        trainer.run()
        assert len(losses) == 1 and (tmp_path / "run" / "model.safetensors").exists()
    finally:
        ctx.close()
    assert not dist.is_initialized()
    monkeypatch.delenv("TORCHELASTIC_RUN_ID")
    assert not DistributedContext.from_environment("cpu").is_distributed       # plain python: one process, no group


@pytest.fixture(scope="module")
def tiny_world_for_one(tmp_path_factory):
    return make_tiny_world(tmp_path_factory.mktemp("world1") / "toy")
