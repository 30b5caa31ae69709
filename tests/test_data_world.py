"""The teaching world: DAVIS 2017 layout, COCO twin (checked with pycocotools), YouTube-VOS export, determinism."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from isvos_lite.cli import main as cli_main
from isvos_lite.data.coco import annotation_to_mask
from isvos_lite.data.export import WorldSizes, generate_world
from isvos_lite.data.palette import read_mask
from isvos_lite.data.shapes import SHAPE_CATEGORIES
from isvos_lite.data.world import WorldConfig, render_frame, sample_video

# pycocotools 2.0.x warns under numpy 2 about its own __array__ use; not our code
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

TINY = WorldConfig(height=64, width=96, min_frames=12, max_frames=12)
SIZES = WorldSizes(train=4, val=2, distractor=2, youtube_train=3, youtube_valid=3, coco_every=3)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world") / "toy"
    generate_world(out, seed=0, config=TINY, sizes=SIZES, progress=False)
    return out


def _digest(root):
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_davis_layout_matches_the_official_evaluation(world):
    for split, count in (("train", 4), ("val", 2), ("distractor", 2)):
        names = (world / "ImageSets" / "2017" / f"{split}.txt").read_text().split()
        assert len(names) == count
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


def test_coco_twin_loads_in_pycocotools_and_matches_the_davis_masks(world):
    pycocotools = pytest.importorskip("pycocotools.coco")
    for split in ("train", "val"):
        path = world / "coco" / "annotations" / f"instances_{split}.json"
        api = pycocotools.COCO(str(path))
        assert [c["name"] for c in api.loadCats(api.getCatIds())] == list(SHAPE_CATEGORIES)
        assert len(api.getImgIds()) > 0 and len(api.getAnnIds()) > 0
        for ann in api.loadAnns(api.getAnnIds()):
            image = api.loadImgs(ann["image_id"])[0]
            ours = annotation_to_mask(ann, image["height"], image["width"])
            assert np.array_equal(ours, api.annToMask(ann))
            davis = read_mask(world / "Annotations" / "480p" / image["video"] / f"{image['frame']}.png")
            object_id = int(np.bincount(davis[ours > 0]).argmax())
            assert np.array_equal(ours > 0, davis == object_id)                    # the same visible region
            assert (world / "coco" / split / image["file_name"]).exists()
    val_videos = {img["video"] for img in json.loads((world / "coco" / "annotations" / "instances_val.json").read_text())["images"]}
    assert any(v.startswith("distractor") for v in val_videos)                     # distractors are instances too


def test_distractor_split_has_lookalikes_of_the_target(world):
    info = json.loads((world / "world.json").read_text())
    for name in (world / "ImageSets" / "2017" / "distractor.txt").read_text().split():
        objects = info["sequences"][name]["objects"]
        assert len(objects) >= 3
        assert len({o["category"] for o in objects.values()}) == 1                 # all the target's category
    spec = sample_video(TINY, 0, "distractor", 0)
    assert len({obj.texture for obj in spec.objects}) == 1                         # and its very texture


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
    generate_world(other, seed=1, config=TINY, sizes=WorldSizes(train=1, val=1, distractor=1, youtube_train=0, youtube_valid=0),
                   progress=False)
    assert _digest(other)["Annotations/480p/train-000/00000.png"] != _digest(world)["Annotations/480p/train-000/00000.png"]


def test_validation_videos_do_not_depend_on_the_number_of_training_videos(world, tmp_path):
    fewer = tmp_path / "fewer"
    generate_world(fewer, seed=0, config=TINY, sizes=WorldSizes(train=1, val=2, distractor=1, youtube_train=0, youtube_valid=0),
                   progress=False)
    assert _digest(fewer)["Annotations/480p/val-001/00007.png"] == _digest(world)["Annotations/480p/val-001/00007.png"]


def test_render_frame_agrees_with_the_written_video(world):
    spec = sample_video(TINY, 0, "normal", 1, name="train-001", num_frames=None)
    _, labels = render_frame(spec, 5)
    assert np.array_equal(labels, read_mask(world / "Annotations" / "480p" / "train-001" / "00005.png"))


def test_cli_toy_data_and_gallery(tmp_path, capsys):
    out = tmp_path / "w"
    args = ["toy-data", "--out", str(out), "--videos", "2", "--frames", "6", "6", "--height", "48", "--width", "64",
            "--no-youtube", "--quiet"]
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
    assert cli_main(["gallery", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "g.png")]) == 1
    assert "toy-data" in capsys.readouterr().err
