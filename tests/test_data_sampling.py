"""Clip sampling (max-skip curriculum, time reversal), aligned augmentation and per-seed determinism."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from isvos_lite.data import augment as A
from isvos_lite.data.palette import write_frame, write_mask
from isvos_lite.data.sampling import DEFAULT_SKIP_SCHEDULE, max_skip_at, sample_clip_indices
from isvos_lite.data.static_dataset import StaticClipDataset
from isvos_lite.data.vos_dataset import VOSClipDataset

# grey level of each id in the synthetic pattern: far apart even after colour jitter
LEVELS = {0: 120, 1: 30, 2: 75, 3: 230}


def _pattern(t: int, h: int = 60, w: int = 80) -> tuple[np.ndarray, np.ndarray]:
    ids = np.zeros((h, w), np.uint8)
    ids[8 + t:30 + t, 6 + 2 * t:30 + 2 * t] = 1
    cv2.circle(ids, (55 - t, 35), 12, 2, -1)
    ids[40:55, 10 + t:70 - t] = 3
    frame = np.zeros((h, w, 3), np.uint8)
    for i, level in LEVELS.items():
        frame[ids == i] = level
    return frame, ids


@pytest.fixture(scope="module")
def pattern_root(tmp_path_factory):
    """A DAVIS-format root whose frame grey level encodes the object id (PNG frames: no JPEG loss)."""
    root = tmp_path_factory.mktemp("pattern")
    for name in ("a", "b"):
        for t in range(20):
            frame, ids = _pattern(t)
            write_frame(root / "JPEGImages" / "480p" / name / f"{t:05d}.png", frame)
            write_mask(root / "Annotations" / "480p" / name / f"{t:05d}.png", ids)
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "train.txt").write_text("a\nb\n")
    return root


def _classify(image_chw: torch.Tensor) -> np.ndarray:
    grey = image_chw.mean(0).numpy() * 255                                    # (H, W)
    ids = np.array(list(LEVELS))
    levels = np.array([LEVELS[i] for i in ids], dtype=np.float32)
    return ids[np.abs(grey[..., None] - levels).argmin(-1)]


def _assert_aligned(item):
    # compare away from the outlines: bilinear frames blend neighbouring grey levels there
    kernel = np.ones((5, 5), np.uint8)
    object_ids = item["info"]["object_ids"]
    for t in range(item["frames"].shape[0]):
        seen = _classify(item["frames"][t])                                   # ids as the frame shows them
        labels = item["labels"][t].numpy()
        for k, object_id in enumerate(object_ids):
            if not object_id:
                continue
            inside_label = cv2.erode((labels == k + 1).astype(np.uint8), kernel, borderValue=0) > 0
            inside_frame = cv2.erode((seen == object_id).astype(np.uint8), kernel, borderValue=0) > 0
            assert (seen[inside_label] == object_id).all()
            assert (labels[inside_frame] == k + 1).all()


# --------------------------------------------------------------------------------------
# curriculum and sampling
# --------------------------------------------------------------------------------------

def test_max_skip_schedule():
    assert DEFAULT_SKIP_SCHEDULE[0] == (0.0, 5)
    assert [max_skip_at(p) for p in (0.0, 0.09, 0.1, 0.29, 0.3, 0.79, 0.8, 1.0)] == [5, 5, 10, 10, 15, 15, 5, 5]
    assert max_skip_at(0.5, [(0.0, 2), (0.5, 7)]) == 7
    with pytest.raises(ValueError):
        max_skip_at(0.5, [])
    with pytest.raises(ValueError):
        max_skip_at(0.5, [(0.0, 0)])


@pytest.mark.parametrize("max_skip", [1, 3, 10])
def test_clip_indices_respect_max_skip(max_skip):
    rng = np.random.default_rng(0)
    for _ in range(300):
        clip = sample_clip_indices(rng, 30, 3, max_skip, reverse_probability=0.0)
        assert len(set(clip)) == 3 and clip == sorted(clip)
        assert all(0 < b - a <= max_skip for a, b in zip(clip, clip[1:]))
        assert 0 <= clip[0] and clip[-1] < 30


def test_larger_skip_gives_longer_clips_and_reversal_is_half():
    rng = np.random.default_rng(1)
    span = {s: np.mean([np.ptp(sample_clip_indices(rng, 80, 3, s, 0.0)) for _ in range(300)]) for s in (5, 15)}
    assert span[15] > 2 * span[5]
    reversed_count = sum(np.diff(sample_clip_indices(rng, 30, 3, 5, 0.5))[0] < 0 for _ in range(600))
    assert 0.4 < reversed_count / 600 < 0.6
    assert all(np.diff(sample_clip_indices(rng, 30, 3, 5, 1.0))[0] < 0 for _ in range(50))
    with pytest.raises(ValueError, match="at least 3 frames"):
        sample_clip_indices(rng, 2, 3, 5)


def test_dataset_curriculum_and_reversal(pattern_root):
    torch.manual_seed(0)
    ds = VOSClipDataset(pattern_root, "train", crop_size=None, augment=False, reverse_probability=0.0, max_skip=1)
    for i in range(10):
        frames = [int(f) for f in ds[i % 2]["info"]["frames"]]
        assert np.diff(frames).tolist() == [1, 1]
    ds.set_max_skip(6)
    diffs = [np.diff([int(f) for f in ds[i % 2]["info"]["frames"]]) for i in range(40)]
    assert all((d > 0).all() and (d <= 6).all() for d in diffs) and max(d.max() for d in diffs) > 1
    ds.reverse_probability = 1.0
    assert all(np.diff([int(f) for f in ds[0]["info"]["frames"]]).max() < 0 for _ in range(5))
    with pytest.raises(ValueError):
        ds.set_max_skip(0)


# --------------------------------------------------------------------------------------
# augmentation keeps frames and masks aligned
# --------------------------------------------------------------------------------------

def test_vos_augmentation_keeps_frame_and_mask_aligned(pattern_root):
    torch.manual_seed(0)
    ds = VOSClipDataset(pattern_root, "train", crop_size=(40, 48), max_skip=5)
    for i in range(24):
        _assert_aligned(ds[i % 2])


def test_static_augmentation_with_tps_keeps_alignment(tmp_path):
    frame, ids = _pattern(3)
    write_frame(tmp_path / "img.png", frame)
    write_mask(tmp_path / "img_mask.png", ids)
    ds = StaticClipDataset([(tmp_path / "img.png", tmp_path / "img_mask.png")], crop_size=48, mask_mode="ids",
                           max_objects=3, tps_probability=1.0)
    torch.manual_seed(0)
    for _ in range(12):
        item = ds[0]
        _assert_aligned(item)
        assert not torch.equal(item["frames"][0], item["frames"][1])        # the pseudo-clip really moves


def test_geometry_matrices_are_exact():
    image = (np.arange(12 * 16 * 3) % 255).astype(np.uint8).reshape(12, 16, 3)
    flipped = A.warp_image(image, A.hflip_matrix(16), (12, 16))
    assert np.array_equal(flipped, image[:, ::-1])
    same = A.warp_image(image, A.resize_matrix((12, 16), (12, 16)), (12, 16))
    assert np.array_equal(same, image)
    mask = (np.arange(12 * 16) % 7).astype(np.uint8).reshape(12, 16)
    assert np.array_equal(A.warp_mask(mask, A.resize_matrix((12, 16), (24, 32)), (24, 32)), np.kron(mask, np.ones((2, 2), np.uint8)))
    rng = np.random.default_rng(0)
    m = A.random_resized_crop_matrix(rng, (12, 16), (8, 8))
    corners = m @ np.array([[-0.5, -0.5, 1.0], [15.5, 11.5, 1.0]]).T
    assert corners[0, 0] <= -0.5 + 1e-6 and corners[1, 0] <= -0.5 + 1e-6      # the crop lies inside the image
    assert corners[0, 1] >= 7.5 - 1e-6 and corners[1, 1] >= 7.5 - 1e-6


def test_tps_identity_at_zero_scale():
    maps = A.tps_maps(np.random.default_rng(0), (20, 30), scale=0.0)
    yy, xx = np.mgrid[0:20, 0:30]
    assert np.abs(maps[0] - xx).max() < 0.05 and np.abs(maps[1] - yy).max() < 0.05


# --------------------------------------------------------------------------------------
# determinism
# --------------------------------------------------------------------------------------

def test_items_are_deterministic_per_torch_seed(pattern_root):
    ds = VOSClipDataset(pattern_root, "train", crop_size=32)
    torch.manual_seed(5)
    first = ds[0]
    torch.manual_seed(5)
    again = ds[0]
    torch.manual_seed(6)
    other = ds[0]
    assert torch.equal(first["frames"], again["frames"]) and torch.equal(first["labels"], again["labels"])
    assert first["info"] == again["info"]
    assert not torch.equal(first["frames"], other["frames"])
