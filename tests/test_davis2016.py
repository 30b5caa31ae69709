"""DAVIS 2016 as originally released: greyscale 0/255 masks (one object), read by both the runner and the scorer."""

import numpy as np
import pytest
import torch
from PIL import Image

from isvos_lite.checkpoint import save_checkpoint
from isvos_lite.cli import main
from isvos_lite.data.palette import read_mask, write_frame
from isvos_lite.data.sequences import davis_sequences
from isvos_lite.model.isvos import ISVOS


def _davis2016_root(root, frames=4, size=(48, 64)):
    """One sequence 'blob' in the DAVIS 2016 layout, masks saved as 8-bit greyscale 0/255 (mode 'L')."""
    rng = np.random.default_rng(0)
    for t in range(frames):
        write_frame(root / "JPEGImages" / "480p" / "blob" / f"{t:05d}.jpg", rng.integers(0, 256, size + (3,), np.uint8))
        mask = np.zeros(size, np.uint8)
        mask[10:30, 8 + 4 * t: 30 + 4 * t] = 255
        (root / "Annotations" / "480p" / "blob").mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask, mode="L").save(root / "Annotations" / "480p" / "blob" / f"{t:05d}.png")
    (root / "ImageSets" / "2016").mkdir(parents=True)
    (root / "ImageSets" / "2016" / "val.txt").write_text("blob\n")
    return root


def test_reader_accepts_0_255_masks_for_2016(tmp_path):
    root = _davis2016_root(tmp_path / "DAVIS")
    seq = davis_sequences(root, "val", year=2016)[0]
    gt = seq.read_gt(1)
    assert set(np.unique(gt)) == {0, 1} and gt[20, 20] == 1 and gt[0, 0] == 0
    assert seq.start_objects == {0: [1]}
    assert seq.read_given_mask(0).sum() == 20 * 22
    with pytest.raises(ValueError, match="255"):          # 2017 (multi-object) still refuses 255 as an object id
        read_mask(root / "Annotations" / "480p" / "blob" / "00000.png")


def test_eval_year_2016_on_0_255_masks(tmp_path, tiny_cfg, capsys):
    root = _davis2016_root(tmp_path / "DAVIS")
    torch.manual_seed(0)
    checkpoint = save_checkpoint(ISVOS(tiny_cfg), tmp_path / "tiny.safetensors")
    out = tmp_path / "eval16"
    code = main(["eval", "--checkpoint", str(checkpoint), "--davis", str(root), "--year", "2016", "--split", "val",
                 "--out", str(out), "--workers", "1"])
    text = capsys.readouterr()
    assert code == 0, text.err
    assert len(list((out / "blob").glob("*.png"))) == 4
    assert (out / "global_results-val.csv").exists()
