"""A quality floor for the shipped checkpoint: every other inference test uses random weights, which cannot tell
a correct protocol from a broken one (a flipped view that is never flipped back still gives probabilities that
sum to one). This one segments real teaching-world videos with ``checkpoints/lite.safetensors`` and asserts J&F.

The videos are val-000 .. val-002 of the default teaching world (``isvos-lite toy-data --seed 0``): every video
has its own seed stream, so generating only these three (about 1 s) gives the same files as ``data/toy``.
Measured when the floor was set (2 CPU cores): J&F 0.760 / 0.572 / 0.771 (mean 0.701), with --flip
0.779 / 0.661 / 0.797 (mean 0.746); a flipped view not flipped back drops --flip to 0.24 / 0.37 / 0.07.
If you ship a retrained checkpoint, re-measure and move the floors with it.
"""

import numpy as np
import pytest

from isvos_lite.course import teaching_checkpoint
from isvos_lite.data.export import WorldSizes, generate_world
from isvos_lite.data.sequences import davis_sequences
from isvos_lite.data.world import WorldConfig
from isvos_lite.eval.runner import iter_segmentation
from isvos_lite.eval.scorer import per_frame_scores

pytestmark = pytest.mark.slow          # about 20 s on 2 cores; `make test` runs it, `make test-fast` skips it

VIDEOS = 3
FLOOR_MEAN, FLOOR_VIDEO = 0.65, 0.50


@pytest.fixture(scope="module")
def val_videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("world") / "toy"
    sizes = WorldSizes(train=0, val=VIDEOS, lookalike=0, heldout=0, youtube_train=0, youtube_valid=0,
                       coco_train=0, coco_val=0)
    generate_world(root, seed=0, config=WorldConfig(), sizes=sizes, youtube=False, progress=False)
    return davis_sequences(root, "val")


@pytest.fixture(scope="module")
def lite_model():
    from isvos_lite.checkpoint import load_checkpoint
    return load_checkpoint(teaching_checkpoint("full"))


def _jf(model, seq, **options) -> float:
    """Mean over objects of (J-mean + F-mean) / 2, first and last frame excluded (the DAVIS protocol)."""
    predicted = np.stack([mask for _, _, mask in iter_segmentation(model, seq, progress=False, **options)])
    truth = np.stack([seq.read_gt(i) for i in range(len(seq))])
    scores = per_frame_scores(truth, predicted)
    return float(np.mean([(s["J"][1:-1].mean() + s["F"][1:-1].mean()) / 2 for s in scores.values()]))


@pytest.fixture(scope="module")
def plain_scores(lite_model, val_videos):
    return [_jf(lite_model, seq) for seq in val_videos]


def test_shipped_checkpoint_quality_floor(plain_scores):
    assert np.mean(plain_scores) >= FLOOR_MEAN, plain_scores
    assert min(plain_scores) >= FLOOR_VIDEO, plain_scores


def test_shipped_checkpoint_quality_floor_with_flip(lite_model, val_videos, plain_scores):
    flipped = [_jf(lite_model, seq, flip=True) for seq in val_videos]
    assert np.mean(flipped) >= FLOOR_MEAN, flipped
    assert min(flipped) >= FLOOR_VIDEO, flipped
    assert np.mean(flipped) >= np.mean(plain_scores) - 0.03, (flipped, plain_scores)   # TTA must not cost J&F
