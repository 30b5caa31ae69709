"""Real photographs in the teaching world: the allowed list, training never sees the `real` split's photographs,
the older splits are unchanged, the `real` split's masks, the copy-the-first-mask baseline."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from isvos_lite.data import photos
from isvos_lite.data.export import (
    HELDOUT_STREAM,
    LOOKALIKE_STREAM,
    VAL_STREAM,
    WORLD_VERSION,
    WorldSizes,
    generate_world,
)
from isvos_lite.data.instance_stream import (
    EXPORT_TRAIN_OFFSET,
    EXPORT_VAL_OFFSET,
    InstanceStreamConfig,
    InstanceStreamDataset,
    render_instance_image,
)
from isvos_lite.data.palette import read_mask, write_mask
from isvos_lite.data.real_split import coin_labels, sample_real_video
from isvos_lite.data.shapes import TEXTURE_FAMILIES_TRAIN
from isvos_lite.data.world import WorldConfig, render_video, sample_video
from isvos_lite.eval.baselines import copy_first_mask_score

OLD_WORLD = Path(__file__).resolve().parent.parent / "data" / "world"    # made by the version-2 generator, seed 0


def test_every_allowed_photograph_loads_as_cached_read_only_rgb():
    assert set(photos.TRAIN_PHOTOS) | set(photos.REAL_SPLIT_PHOTOS) == set(photos.ALLOWED_PHOTOS)
    assert set(photos.TRAIN_PHOTOS).isdisjoint(photos.REAL_SPLIT_PHOTOS)
    assert set(photos.REAL_SPLIT_PHOTOS) == {"coins", "flower.jpg"}
    for name in photos.ALLOWED_PHOTOS:
        image = photos.load_photo(name)
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3 and min(image.shape[:2]) >= 100
        assert image is photos.load_photo(name) and not image.flags.writeable
        if name in photos.GREY_PHOTOS:
            assert (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all()
    left, right = photos.load_photo("stereo_motorcycle_left"), photos.load_photo("stereo_motorcycle_right")
    assert not np.array_equal(left, right)


@pytest.mark.parametrize("name", ["astronaut", "chelsea", "camera", "coffee", "rocket", "cat", "stereo_motorcycle",
                                  "../flower.jpg", ""])
def test_the_loader_refuses_every_other_image(name):
    with pytest.raises(ValueError, match="held out"):
        photos.load_photo(name)


def test_training_crops_refuse_the_real_splits_photographs():
    rng = np.random.default_rng(0)
    for aside in photos.REAL_SPLIT_PHOTOS:
        with pytest.raises(ValueError, match="real"):
            photos.photo_crop(rng, 32, 32, photos=(aside,))
    crop = photos.photo_crop(rng, 40, 60)
    assert crop.shape == (40, 60, 3) and crop.dtype == np.uint8


def test_photo_textures_are_a_pure_function_of_seed_and_size():
    a, b = photos.photo_texture(11, 64), photos.photo_texture(11, 64)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, photos.photo_texture(12, 64))
    big = photos.photo_texture(11, 128)                 # a larger tile: the same window about the same centre
    assert np.abs(big[32:96, 32:96].astype(int) - a.astype(int)).mean() < 12


@pytest.fixture
def loaded_names(monkeypatch):
    """Record every photograph the data code asks for (the loader is the only way to one)."""
    names: list[str] = []
    original = photos.load_photo

    def recording(name):
        names.append(name)
        return original(name)

    monkeypatch.setattr(photos, "load_photo", recording)
    return names


def test_training_generation_never_loads_the_real_splits_photographs(loaded_names, tmp_path):
    config = WorldConfig(height=64, width=96, min_frames=6, max_frames=6, eval_min_frames=6, eval_max_frames=6)
    sizes = WorldSizes(train=2, val=1, lookalike=1, heldout=1, train_photo=6, real=0, youtube_train=1,
                       youtube_valid=1, coco_train=2, coco_val=1)
    generate_world(tmp_path / "w", seed=5, config=config, sizes=sizes, progress=False, workers=1)
    stream = InstanceStreamConfig(photo_texture_probability=1.0, photo_background_probability=1.0)
    for index in range(12):
        render_instance_image(stream, 5, index)
    used = set(loaded_names)
    assert used and used <= set(photos.TRAIN_PHOTOS), used
    assert len(used) >= 4                                   # many photographs, not one
    # the instrument works: the real split does load its own photographs
    sample_real_video(5, 0, 64, 96, frames=3)
    sample_real_video(5, 1, 64, 96, frames=3)
    assert set(loaded_names) - used == set(photos.REAL_SPLIT_PHOTOS)


# sha256 (first 16 hex digits) of the raw frames + label maps / image + ids + categories that the version-2
# generator (before photographs) rendered for seed 0 with the default knobs
V2_VIDEO_HASHES = {
    ("train-000", "normal", 0, False): "23c5e18c6a272f19",
    ("train-003", "lookalike", 3, False): "0715e25359363dee",
    ("val-000", "normal", VAL_STREAM, True): "2116aae5e20a7b0a",
    ("lookalike-000", "lookalike", LOOKALIKE_STREAM, True): "89c8633e5ed3b0a7",
    ("heldout-000", "heldout", HELDOUT_STREAM, True): "7a49e6a62900cb33",
}
V2_COCO_HASHES = {EXPORT_TRAIN_OFFSET: "033e6b5c027e9889", EXPORT_VAL_OFFSET: "e06ce75da6665484",
                  EXPORT_TRAIN_OFFSET + 1: "1733f3b5b5d9f6a0", EXPORT_VAL_OFFSET + 1: "4f7ee49201ee431f"}


@pytest.mark.parametrize("key", list(V2_VIDEO_HASHES))
def test_the_older_splits_render_exactly_as_before(key):
    name, kind, index, evaluation = key
    spec = sample_video(WorldConfig(), 0, kind, index, name=name, evaluation=evaluation)
    digest = hashlib.sha256()
    for frame, labels in render_video(spec):
        digest.update(frame.tobytes())
        digest.update(labels.tobytes())
    assert digest.hexdigest()[:16] == V2_VIDEO_HASHES[key]


def test_the_exported_coco_images_render_exactly_as_before():
    for index, expected in V2_COCO_HASHES.items():
        image, ids, categories = render_instance_image(InstanceStreamConfig(), 0, index)
        digest = hashlib.sha256(image.tobytes() + ids.tobytes() + ",".join(categories).encode()).hexdigest()[:16]
        assert digest == expected, index


@pytest.mark.skipif(not (OLD_WORLD / "world.json").exists(), reason="no version-2 world at data/world")
def test_written_files_equal_those_of_the_version_2_world(tmp_path):
    """Generate the first val / lookalike / heldout video and coco val image the way toy-data does; compare bytes."""
    from isvos_lite.data.export import _render_task
    from isvos_lite.data.palette import write_frame

    if json.loads((OLD_WORLD / "world.json").read_text()).get("seed") != 0:
        pytest.skip("data/world was not generated with --seed 0")
    for split, kind, index in (("val", "normal", VAL_STREAM), ("lookalike", "lookalike", LOOKALIKE_STREAM),
                               ("heldout", "heldout", HELDOUT_STREAM)):
        name = f"{split}-000"
        _render_task(("davis", WorldConfig(), 0, split, kind, index, name, True, str(tmp_path), 85, False))
        for sub, ext in (("JPEGImages", "jpg"), ("Annotations", "png")):
            for t in (0, 7):
                ours = tmp_path / sub / "480p" / name / f"{t:05d}.{ext}"
                assert ours.read_bytes() == (OLD_WORLD / sub / "480p" / name / f"{t:05d}.{ext}").read_bytes()
    image, _ids, _cats = render_instance_image(InstanceStreamConfig(), 0, EXPORT_VAL_OFFSET)
    write_frame(tmp_path / "coco.jpg", image, quality=92, atomic=False)
    assert (tmp_path / "coco.jpg").read_bytes() == (OLD_WORLD / "coco" / "val" / "000000.jpg").read_bytes()


def test_trainphoto_videos_keep_the_shapes_and_motion_of_their_procedural_twin():
    config = WorldConfig(height=64, width=96, min_frames=5, max_frames=5)
    for index in range(6):
        plain = sample_video(config, 3, "lookalike" if index % 3 == 0 else "normal", 400_000 + index)
        dressed = sample_video(config, 3, plain.kind, 400_000 + index, photos=True)
        assert [o.outline(2, 64, 96).tolist() for o in plain.objects] == \
               [o.outline(2, 64, 96).tolist() for o in dressed.objects]
        kinds = {o.texture.kind for o in dressed.objects} | {dressed.background_kind}
        assert "photo" in kinds
        # look-alikes still wear their target's very texture
        for obj in dressed.objects[1:]:
            if not obj.annotated:
                assert obj.texture == dressed.objects[0].texture
        labels_plain = [labels for _f, labels in render_video(plain)]
        labels_dressed = [labels for _f, labels in render_video(dressed)]
        assert all(np.array_equal(a, b) for a, b in zip(labels_plain, labels_dressed))
    with pytest.raises(ValueError, match="photos=True"):
        sample_video(config, 3, "heldout", 0, photos=True)


def test_the_photo_instance_stream_is_deterministic_and_changes_only_the_looks():
    plain = InstanceStreamConfig()
    dressed = InstanceStreamConfig(photo_texture_probability=0.4, photo_background_probability=0.4)
    changed = 0
    for index in range(8):
        a = render_instance_image(dressed, 2, index, return_specs=True)
        b = render_instance_image(dressed, 2, index, return_specs=True)
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
        p = render_instance_image(plain, 2, index)
        assert np.array_equal(a[1], p[1]) and a[2] == p[2]          # same instances, labels, categories
        changed += not np.array_equal(a[0], p[0])
        kinds = [s.texture.kind for s in a[3]]
        assert all(k == "photo" or k in TEXTURE_FAMILIES_TRAIN for k in kinds)
    assert changed >= 4
    import torch

    dataset = InstanceStreamDataset(dressed, seed=2)
    torch.manual_seed(0)
    first = dataset[3]
    torch.manual_seed(0)
    again = dataset[3]
    assert torch.equal(first["image"], again["image"]) and torch.equal(first["masks"], again["masks"])
    with pytest.raises(ValueError, match="photo_texture_probability"):
        InstanceStreamConfig(photo_texture_probability=1.5)


def test_the_coin_segmentation_finds_the_coins():
    labels = coin_labels()
    assert labels.shape == (303, 384)
    areas = np.bincount(labels.reshape(-1))[1:]
    assert 20 <= len(areas) <= 26 and areas.min() >= 500          # the photograph shows 24 coins
    grey = photos.load_photo("coins")[..., 0].astype(float)
    assert grey[labels > 0].mean() > grey[labels == 0].mean() + 60


@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_real_split_videos_have_exact_non_empty_masks_and_move(index):
    video = sample_real_video(0, index, 160, 288)
    assert video.kind == ("coins" if index % 2 == 0 else "composite") and len(video.frames) == 30
    assert video.frames[0].shape == (160, 288, 3) and video.labels[0].shape == (160, 288)
    ids = sorted(int(i) for i in np.unique(video.labels[0]) if i)
    assert ids == list(range(1, len(video.info["objects"]) + 1)) and 1 <= len(ids) <= 2
    for k in ids:
        assert (video.labels[0] == k).sum() >= 0.01 * 160 * 288
    for labels in video.labels:
        assert set(np.unique(labels).tolist()) <= {0, *ids}
    # the objects move: the last mask overlaps the first one far less than fully
    for k in ids:
        a, b = video.labels[0] == k, video.labels[-1] == k
        assert (a & b).sum() / max((a | b).sum(), 1) < 0.85
    if video.kind == "coins":          # the masks follow real coins (bright) on the dark tray, in every frame
        for frame, labels in zip(video.frames, video.labels):
            grey = frame.mean(axis=2)
            inside = labels > 0
            if inside.sum() > 50:
                assert grey[inside].mean() > grey[~inside].mean() + 40
    # deterministic
    again = sample_real_video(0, index, 160, 288)
    assert all(np.array_equal(a, b) for a, b in zip(video.labels, again.labels))
    assert np.array_equal(video.frames[-1], again.frames[-1])


def _tiny_davis(root: Path) -> None:
    """One sequence, 4 frames of 20x20: a 6x6 square (id 1) moving 2 px right per frame."""
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "tiny.txt").write_text("seq\n")
    for t in range(4):
        mask = np.zeros((20, 20), dtype=np.uint8)
        mask[5:11, 2 + 2 * t:8 + 2 * t] = 1
        write_mask(root / "Annotations" / "480p" / "seq" / f"{t:05d}.png", mask, atomic=False)


def test_copy_baseline_equals_a_hand_computation(tmp_path):
    _tiny_davis(tmp_path)
    result = copy_first_mask_score(tmp_path, split="tiny", workers=1, out_dir=tmp_path / "csv")
    # frames 1 and 2 are scored (the first and last are not): the copied square overlaps 4/6 then 2/6 columns
    j1, j2 = (6 * 4) / (6 * 8), (6 * 2) / (6 * 10)
    assert result.global_metrics["J-Mean"] == pytest.approx((j1 + j2) / 2)
    assert 0 <= result.global_metrics["F-Mean"] < 1
    assert result.global_metrics["J&F-Mean"] == pytest.approx(
        (result.global_metrics["J-Mean"] + result.global_metrics["F-Mean"]) / 2)
    assert (tmp_path / "csv" / "global_results-tiny.csv").exists()
    assert read_mask(tmp_path / "Annotations" / "480p" / "seq" / "00000.png").max() == 1   # inputs untouched


def test_world_json_records_the_version_and_the_photographs(tmp_path):
    config = WorldConfig(height=64, width=96, min_frames=4, max_frames=4, eval_min_frames=4, eval_max_frames=4)
    sizes = WorldSizes(train=1, val=1, lookalike=0, heldout=0, train_photo=1, real=2, youtube_train=0,
                       youtube_valid=0, coco_train=1, coco_val=1)
    generate_world(tmp_path / "w", seed=0, config=config, sizes=sizes, progress=False)
    info = json.loads((tmp_path / "w" / "world.json").read_text())
    assert info["version"] == WORLD_VERSION == 3
    assert info["photos"] == {"train": list(photos.TRAIN_PHOTOS), "real": list(photos.REAL_SPLIT_PHOTOS)}
    assert (tmp_path / "w" / "ImageSets" / "2017" / "train.txt").read_text().split() == ["train-000", "trainphoto-000"]
    assert (tmp_path / "w" / "ImageSets" / "2017" / "real.txt").read_text().split() == ["real-000", "real-001"]
    assert info["sequences"]["trainphoto-000"]["photos"] is True
    assert [info["sequences"][n]["kind"] for n in ("real-000", "real-001")] == ["coins", "composite"]
    frames = sorted((tmp_path / "w" / "Annotations" / "480p" / "real-001").glob("*.png"))
    assert len(frames) == 30 and read_mask(frames[0]).max() >= 1


def test_eval_prints_and_records_the_copy_baseline_beside_the_model(tmp_path, tiny_cfg, capsys):
    import torch

    from isvos_lite.checkpoint import save_checkpoint
    from isvos_lite.cli import main
    from isvos_lite.model.isvos import ISVOS

    config = WorldConfig(height=64, width=96, min_frames=4, max_frames=4, eval_min_frames=4, eval_max_frames=4)
    sizes = WorldSizes(train=0, val=0, lookalike=0, heldout=0, train_photo=0, real=1, youtube_train=0,
                       youtube_valid=0, coco_train=0, coco_val=0)
    root = tmp_path / "w"
    generate_world(root, seed=0, config=config, sizes=sizes, progress=False, youtube=False)
    torch.manual_seed(0)
    checkpoint = save_checkpoint(ISVOS(tiny_cfg), tmp_path / "tiny.safetensors")
    out = tmp_path / "eval"
    assert main(["eval", "--checkpoint", str(checkpoint), "--davis", str(root), "--split", "real", "--out", str(out),
                 "--workers", "1", "--threads", "1"]) == 0
    text = capsys.readouterr().out
    assert "copy-the-first-mask baseline on real: J&F" in text
    record = json.loads((out / "run.json").read_text())
    expected = copy_first_mask_score(root, split="real", workers=1).global_metrics
    assert record["copy_baseline"]["J&F-Mean"] == pytest.approx(expected["J&F-Mean"], abs=1e-6)
    assert 0 < record["copy_baseline"]["J&F-Mean"] < 0.9                     # the real split moves
    assert set(record["results"]) == {"J&F-Mean", "J-Mean", "F-Mean"}
    assert (out / "copy_baseline" / "global_results-real.csv").exists()
