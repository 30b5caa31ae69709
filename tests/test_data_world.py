"""The teaching world: DAVIS 2017 layout, the lookalike and heldout splits, COCO twin, YouTube-VOS export, determinism."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from isvos_lite.cli import main as cli_main
from isvos_lite.data.coco import annotation_to_mask
from isvos_lite.data.export import HELDOUT_STREAM, LOOKALIKE_STREAM, WorldSizes, generate_world, is_train_lookalike
from isvos_lite.data.palette import read_mask
from isvos_lite.data.shapes import (
    HELDOUT_SHAPES,
    SHAPE_CATEGORIES,
    TEXTURE_FAMILIES_HELDOUT,
    TEXTURE_FAMILIES_TRAIN,
    random_texture_spec,
    render_background,
    render_texture,
    unit_outline,
)
from isvos_lite.data.world import WorldConfig, lookalike_meeting, render_frame, render_video, sample_video

# pycocotools 2.0.x warns under numpy 2 about its own __array__ use; not our code
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

TINY = WorldConfig(height=64, width=96, min_frames=12, max_frames=12, eval_min_frames=12, eval_max_frames=12)
SIZES = WorldSizes(train=4, val=2, lookalike=2, heldout=2, youtube_train=3, youtube_valid=3, coco_train=6, coco_val=3)
NO_EXTRAS = dict(youtube_train=0, youtube_valid=0, coco_train=1, coco_val=1)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world") / "toy"
    generate_world(out, seed=0, config=TINY, sizes=SIZES, progress=False)
    return out


def _digest(root):
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_davis_layout_matches_the_official_evaluation(world):
    for split, count in (("train", 6), ("val", 2), ("lookalike", 2), ("heldout", 2)):
        names = (world / "ImageSets" / "2017" / f"{split}.txt").read_text().split()
        assert len(names) == count
        if split == "train":     # 4 procedural videos, then half as many dressed in photographs
            assert names == [f"train-{i:03d}" for i in range(4)] + ["trainphoto-000", "trainphoto-001"]
        for name in names:
            frames = sorted((world / "JPEGImages" / "480p" / name).glob("*.jpg"))
            masks = sorted((world / "Annotations" / "480p" / name).glob("*.png"))
            assert [p.stem for p in frames] == [f"{t:05d}" for t in range(12)]
            assert [p.stem for p in masks] == [p.stem for p in frames]            # every frame annotated
            first = read_mask(masks[0])
            assert first.shape == (64, 96)
            ids = sorted(int(i) for i in np.unique(first) if i)
            assert ids == list(range(1, len(ids) + 1))                             # 1..N all in frame 0
            later = set().union(*(np.unique(read_mask(m)).tolist() for m in masks))
            assert later <= set([0] + ids)                                         # no new ids later
    assert (world / "ImageSets" / "2016" / "val.txt").read_text() == (world / "ImageSets" / "2017" / "val.txt").read_text()


def test_objects_are_large_enough_in_the_first_frame(world):
    for name in (world / "ImageSets" / "2017" / "train.txt").read_text().split():
        first = read_mask(world / "Annotations" / "480p" / name / "00000.png")
        counts = np.bincount(first.reshape(-1))[1:]
        assert counts.min() >= 0.02 * 64 * 96 * 0.5


def test_coco_twin_is_the_instance_stream_and_loads_in_pycocotools(world):
    pycocotools = pytest.importorskip("pycocotools.coco")
    for split, count in (("train", 6), ("val", 3)):
        api = pycocotools.COCO(str(world / "coco" / "annotations" / f"instances_{split}.json"))
        assert [c["name"] for c in api.loadCats(api.getCatIds())] == list(SHAPE_CATEGORIES)
        assert len(api.getImgIds()) == count and len(api.getAnnIds()) > 0
        for image in api.loadImgs(api.getImgIds()):
            assert (image["height"], image["width"]) == (64, 96)                   # the video frame size
            assert (world / "coco" / split / image["file_name"]).exists()


def test_lookalike_split_annotates_only_the_target(world):
    info = json.loads((world / "world.json").read_text())
    names = (world / "ImageSets" / "2017" / "lookalike.txt").read_text().split()
    for name in names:
        entry = info["sequences"][name]
        assert entry["kind"] == "lookalike" and list(entry["objects"]) == ["1"]
        assert 1 <= len(entry["lookalikes"]) <= 3
        assert all(not o["annotated"] and o["category"] != entry["objects"]["1"]["category"] for o in entry["lookalikes"])
        for png in (world / "Annotations" / "480p" / name).glob("*.png"):
            assert set(np.unique(read_mask(png)).tolist()) <= {0, 1}
        assert 1 in np.unique(read_mask(world / "Annotations" / "480p" / name / "00000.png"))


@pytest.mark.parametrize("index", range(6))
def test_lookalikes_share_the_texture_not_the_silhouette_start_apart_and_meet(index):
    config = WorldConfig()      # the default frame size and lengths: the real split
    spec = sample_video(config, 0, "lookalike", LOOKALIKE_STREAM + index, evaluation=True)
    assert config.eval_min_frames <= spec.num_frames <= config.eval_max_frames
    target, lookalikes = spec.objects[0], spec.objects[1:]
    assert target.annotated and 1 <= len(lookalikes) <= 3 and not any(o.annotated for o in lookalikes)
    assert 0.3 <= target.scale_amp <= 0.45 and 0.12 <= target.wobble_amp <= 0.25
    for obj in lookalikes:
        assert obj.texture == target.texture and obj.category != target.category
        start, closest = lookalike_meeting(spec, obj)                             # in units of r_target + r_lookalike
        assert start >= 1.3 and closest <= 0.8
    labels = [labels for _, labels in render_video(spec)]
    assert all(set(np.unique(lab).tolist()) <= {0, 1} for lab in labels)
    assert (labels[0] == 1).sum() >= min(config.min_visible_area * config.height * config.width,
                                         0.5 * np.pi * target.radius**2)


def test_heldout_split_uses_only_heldout_looks_and_training_never_does(world):
    info = json.loads((world / "world.json").read_text())
    for name, entry in info["sequences"].items():
        if entry["split"] == "real":      # photographs, not the procedural looks (tests/test_data_photos.py)
            continue
        heldout = entry["split"] == "heldout"
        assert heldout == (entry["kind"] == "heldout")
        looks = list(entry["objects"].values()) + entry.get("lookalikes", [])
        for obj in looks:
            assert (obj["category"] in HELDOUT_SHAPES) == heldout and (obj["category"] in SHAPE_CATEGORIES) != heldout
            assert (obj["texture"] in TEXTURE_FAMILIES_HELDOUT) == heldout
        assert (entry["background"] == "tiles") == heldout
    # and over many specs of the default world (cheap: no rendering)
    config = WorldConfig()
    for kind, stream, evaluation in (("normal", 0, False), ("normal", 100_000, True), ("lookalike", 0, False),
                                     ("lookalike", LOOKALIKE_STREAM, True), ("heldout", HELDOUT_STREAM, True)):
        for i in range(12):
            spec = sample_video(config, 0, kind, stream + i, evaluation=evaluation)
            families = TEXTURE_FAMILIES_HELDOUT if kind == "heldout" else TEXTURE_FAMILIES_TRAIN
            shapes = HELDOUT_SHAPES if kind == "heldout" else SHAPE_CATEGORIES
            assert all(o.texture.kind in families and o.category in shapes for o in spec.objects)
            assert set(spec.background_families) == set(families)
            assert (spec.spotlight is not None) == (kind == "heldout")


def test_training_split_has_a_quarter_of_lookalike_videos():
    assert sum(is_train_lookalike(i, 0.25) for i in range(80)) == 20
    assert [is_train_lookalike(i, 0.25) for i in range(8)] == [False, False, False, True] * 2
    assert not any(is_train_lookalike(i, 0.0) for i in range(10))


def test_textures_shapes_and_backgrounds():
    assert set(TEXTURE_FAMILIES_TRAIN).isdisjoint(TEXTURE_FAMILIES_HELDOUT) and len(TEXTURE_FAMILIES_HELDOUT) >= 3
    assert set(HELDOUT_SHAPES).isdisjoint(SHAPE_CATEGORIES) and len(SHAPE_CATEGORIES) == 4
    for category in SHAPE_CATEGORIES + HELDOUT_SHAPES:
        points = unit_outline(category)
        x, y = points[:, 0], points[:, 1]
        area = 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
        assert abs(area - np.pi) < 1e-6 and np.abs(points.mean(axis=0)).max() < 0.3
    rng = np.random.default_rng(0)
    for family in TEXTURE_FAMILIES_TRAIN + TEXTURE_FAMILIES_HELDOUT:
        spec = random_texture_spec(rng, (family,))
        tile = render_texture(spec, 40)
        assert spec.kind == family and tile.shape == (40, 40, 3) and tile.dtype == np.uint8 and tile.std() > 3
        assert np.array_equal(tile, render_texture(spec, 40))                     # a pure function of the spec
    for _ in range(6):
        background = render_background(rng, 30, 50)
        assert background.shape == (30, 50, 3) and background.dtype == np.uint8
    assert render_background(rng, 30, 50, TEXTURE_FAMILIES_HELDOUT, kind="tiles").shape == (30, 50, 3)
    with pytest.raises(ValueError, match="families"):
        random_texture_spec(rng, ("velvet",))
    with pytest.raises(ValueError, match="unknown shape category"):
        unit_outline("hexagon")


def test_youtube_export_has_mid_video_objects_and_every_fifth_frame(world):
    root = world / "youtube"
    meta = json.loads((root / "valid" / "meta.json").read_text())["videos"]
    starts_late = 0
    for name, video in meta.items():
        assert sorted(p.stem for p in (root / "valid" / "JPEGImages" / name).glob("*.jpg")) == ["00000", "00005", "00010"]
        assert len(list((root / "valid_all_frames" / "JPEGImages" / name).glob("*.jpg"))) == 12
        for object_id, obj in video["objects"].items():
            first = min(obj["frames"])
            given = read_mask(root / "valid" / "Annotations" / name / f"{first}.png")
            assert int(object_id) in np.unique(given)
            starts_late += first != "00000"
        for png in (root / "valid" / "Annotations" / name).glob("*.png"):           # only the new objects
            ids = {int(i) for i in np.unique(read_mask(png)) if i}
            assert all(min(video["objects"][str(i)]["frames"]) == png.stem for i in ids)
    assert starts_late > 0
    train_meta = json.loads((root / "train" / "meta.json").read_text())["videos"]
    for name in train_meta:
        assert sorted(p.stem for p in (root / "train" / "Annotations" / name).glob("*.png")) == ["00000", "00005", "00010"]


def test_generation_is_deterministic_per_seed(world, tmp_path):
    again = tmp_path / "again"
    generate_world(again, seed=0, config=TINY, sizes=SIZES, progress=False)
    assert _digest(world) == _digest(again)
    other = tmp_path / "other"
    generate_world(other, seed=1, config=TINY, sizes=WorldSizes(train=1, val=1, lookalike=1, heldout=1, **NO_EXTRAS),
                   progress=False)
    assert _digest(other)["Annotations/480p/train-000/00000.png"] != _digest(world)["Annotations/480p/train-000/00000.png"]


def test_splits_do_not_depend_on_the_size_of_other_splits(world, tmp_path):
    fewer = tmp_path / "fewer"
    generate_world(fewer, seed=0, config=TINY, sizes=WorldSizes(train=1, val=2, lookalike=1, heldout=2, **NO_EXTRAS),
                   progress=False)
    ours, theirs = _digest(fewer), _digest(world)
    for path in ("Annotations/480p/val-001/00007.png", "JPEGImages/480p/lookalike-000/00005.jpg",
                 "JPEGImages/480p/heldout-001/00003.jpg", "JPEGImages/480p/train-000/00002.jpg"):
        assert ours[path] == theirs[path], path


def test_output_does_not_depend_on_the_number_of_workers(tmp_path):
    sizes = WorldSizes(train=4, val=1, lookalike=1, heldout=1, youtube_train=1, youtube_valid=1, coco_train=2, coco_val=1)
    small = WorldConfig(height=48, width=64, min_frames=6, max_frames=6, eval_min_frames=6, eval_max_frames=6)
    generate_world(tmp_path / "one", seed=2, config=small, sizes=sizes, progress=False, workers=1)
    generate_world(tmp_path / "two", seed=2, config=small, sizes=sizes, progress=False, workers=2)
    assert _digest(tmp_path / "one") == _digest(tmp_path / "two")


def test_render_frame_agrees_with_the_written_video(world):
    spec = sample_video(TINY, 0, "normal", 1, name="train-001", num_frames=None)
    _, labels = render_frame(spec, 5)
    assert np.array_equal(labels, read_mask(world / "Annotations" / "480p" / "train-001" / "00005.png"))


def test_cli_toy_data_and_gallery(tmp_path, capsys):
    out = tmp_path / "w"
    args = ["toy-data", "--out", str(out), "--videos", "2", "--frames", "6", "6", "--eval-frames", "6", "6",
            "--height", "48", "--width", "64", "--no-youtube", "--quiet", "--workers", "1", "--coco-images", "2", "1"]
    assert cli_main(args) == 0
    summary = capsys.readouterr().out
    assert "videos" in summary and "MiB on disk" in summary and " s" in summary
    assert cli_main(args) == 1                                                    # refuses to overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]          # no partial folder left
    assert cli_main(["gallery", "--data", str(out), "--out", str(tmp_path / "g.png"), "--frames", "3"]) == 0
    assert (tmp_path / "g.png").stat().st_size > 10_000


def test_cli_rejects_bad_knobs(tmp_path, capsys):
    assert cli_main(["toy-data", "--out", str(tmp_path / "x"), "--height", "8"]) == 1
    assert "too small" in capsys.readouterr().err
    assert cli_main(["toy-data", "--out", str(tmp_path / "x"), "--objects", "3", "1"]) == 1
    assert cli_main(["toy-data", "--out", str(tmp_path / "x"), "--lookalike-videos", "-1"]) == 1
    assert "lookalike" in capsys.readouterr().err
    assert cli_main(["toy-data", "--out", str(tmp_path / "x"), "--eval-frames", "9", "3"]) == 1
    assert "eval_min_frames" in capsys.readouterr().err
    assert cli_main(["gallery", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "g.png")]) == 1
    assert "toy-data" in capsys.readouterr().err
