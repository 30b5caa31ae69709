"""Bad input at the dataset level: every case gives an error that names the file and says what to do."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from isvos_lite.data.coco import load_coco_json, rle_decode
from isvos_lite.data.instance_dataset import COCOInstanceDataset
from isvos_lite.data.palette import colorize_mask, write_frame, write_mask
from isvos_lite.data.sequences import davis_sequences, folder_sequence, list_frames, video_sequence, youtube_sequences
from isvos_lite.data.static_dataset import StaticClipDataset
from isvos_lite.data.vos_dataset import VOSClipDataset


def _davis(root, names=("s",), frames=4, size=(24, 32)):
    for name in names:
        for t in range(frames):
            frame = np.full(size + (3,), 40 * t % 255, np.uint8)
            ids = np.zeros(size, np.uint8)
            ids[4:12, 5 + t:15 + t] = 1
            write_frame(root / "JPEGImages" / "480p" / name / f"{t:05d}.jpg", frame)
            write_mask(root / "Annotations" / "480p" / name / f"{t:05d}.png", ids)
    (root / "ImageSets" / "2017").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "2017" / "train.txt").write_text("".join(n + "\n" for n in names))
    return root


def test_missing_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="toy-data"):
        davis_sequences(tmp_path / "nowhere")
    _davis(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"val\.txt.*available splits for 2017: train"):
        davis_sequences(tmp_path, "val")
    with pytest.raises(FileNotFoundError, match="meta.json"):
        youtube_sequences(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        VOSClipDataset(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="neither a DAVIS root"):
        VOSClipDataset(tmp_path / "JPEGImages")
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        video_sequence(tmp_path / "nope.mp4", tmp_path / "m.png")
    with pytest.raises(FileNotFoundError, match="first frame"):
        folder_sequence(tmp_path / "JPEGImages" / "480p" / "s", tmp_path / "missing.png")


def test_sequence_listed_but_missing(tmp_path):
    _davis(tmp_path)
    (tmp_path / "ImageSets" / "2017" / "train.txt").write_text("s\nghost\n")
    with pytest.raises(FileNotFoundError, match="ghost"):
        davis_sequences(tmp_path, "train")


def test_frame_without_annotation(tmp_path):
    _davis(tmp_path)
    (tmp_path / "Annotations" / "480p" / "s" / "00002.png").unlink()
    with pytest.raises(ValueError, match=r"00002\.png is missing.*every frame"):
        davis_sequences(tmp_path, "train")
    with pytest.raises(ValueError, match="00002.png is missing"):
        VOSClipDataset(tmp_path, "train")
    seq = davis_sequences(tmp_path, "train", require_all_masks=False)[0]          # test-dev style: allowed
    assert 2 not in seq.gt_paths
    (tmp_path / "Annotations" / "480p" / "s" / "00000.png").unlink()
    with pytest.raises(ValueError, match=r"first-frame annotation .*00000\.png is missing"):
        davis_sequences(tmp_path, "train", require_all_masks=False)


def test_rgb_mask_in_a_dataset(tmp_path):
    _davis(tmp_path)
    path = tmp_path / "Annotations" / "480p" / "s" / "00000.png"
    ids = np.zeros((24, 32), np.uint8)
    ids[2:9, 2:9] = 1
    Image.fromarray(colorize_mask(ids)).save(path)
    seq = davis_sequences(tmp_path, "train")[0]
    with pytest.raises(ValueError, match=r"00000\.png is a colour \(RGB\) image.*convert_rgb_mask"):
        seq.start_objects


def test_mask_frame_size_mismatch(tmp_path):
    _davis(tmp_path)
    write_mask(tmp_path / "Annotations" / "480p" / "s" / "00001.png", np.zeros((12, 16), np.uint8))
    seq = davis_sequences(tmp_path, "train")[0]
    with pytest.raises(ValueError, match=r"00001\.png is 16x12.*00001\.jpg is 32x24"):
        seq.read_gt(1)
    ds = VOSClipDataset(tmp_path, "train", crop_size=16, max_skip=1, reverse_probability=0.0)
    torch.manual_seed(0)
    with pytest.raises(ValueError, match=r"00001\.png is 16x12"):
        for _ in range(10):
            ds[0]


def test_frame_names(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for name in ("10.jpg", "2.jpg", "1.jpg"):
        write_frame(folder / name, np.zeros((8, 8, 3), np.uint8))
    assert [p.name for p in list_frames(folder)] == ["1.jpg", "2.jpg", "10.jpg"]      # numeric, not string order
    write_frame(folder / "frame_b.jpg", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match=r"frame_b\.jpg has no frame number.*00000\.jpg"):
        list_frames(folder)
    (folder / "frame_b.jpg").unlink()
    write_frame(folder / "take2_1.jpg", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="same frame number 1"):
        list_frames(folder)


def test_empty_folder_and_empty_mask(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty has no image files"):
        folder_sequence(tmp_path / "empty", tmp_path / "m.png")
    frames = tmp_path / "frames"
    write_frame(frames / "00000.jpg", np.zeros((8, 8, 3), np.uint8))
    write_mask(tmp_path / "blank.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="no objects"):
        folder_sequence(frames, tmp_path / "blank.png")
    write_mask(tmp_path / "small.png", np.ones((4, 4), np.uint8))
    with pytest.raises(ValueError, match=r"small\.png is 4x4.*8x8"):
        folder_sequence(frames, tmp_path / "small.png")


def test_corrupt_and_zero_byte_frames_in_a_sequence(tmp_path):
    _davis(tmp_path)
    (tmp_path / "JPEGImages" / "480p" / "s" / "00003.jpg").write_bytes(b"")
    (tmp_path / "JPEGImages" / "480p" / "s" / "00002.jpg").write_bytes(b"\xff\xd8\xff garbage")
    seq = davis_sequences(tmp_path, "train")[0]
    with pytest.raises(ValueError, match=r"00003\.jpg is an empty \(zero-byte\) file"):
        seq.read_frame(3)
    with pytest.raises(ValueError, match=r"00002\.jpg is corrupt"):
        seq.read_frame(2)


def test_not_a_video(tmp_path):
    fake = tmp_path / "clip.mp4"
    fake.write_bytes(b"not a video" * 10)
    write_mask(tmp_path / "m.png", np.ones((8, 8), np.uint8))
    with pytest.raises(ValueError, match=r"clip\.mp4 cannot be opened.*ffmpeg"):
        video_sequence(fake, tmp_path / "m.png")
    (tmp_path / "zero.mp4").write_bytes(b"")
    with pytest.raises(ValueError, match="zero-byte"):
        video_sequence(tmp_path / "zero.mp4", tmp_path / "m.png")


def test_youtube_meta_and_annotation_problems(tmp_path):
    root = tmp_path / "yt"
    for t in (0, 5):
        write_frame(root / "valid" / "JPEGImages" / "v" / f"{t:05d}.jpg", np.zeros((8, 8, 3), np.uint8))
    write_mask(root / "valid" / "Annotations" / "v" / "00000.png", np.ones((8, 8), np.uint8))
    (root / "valid" / "meta.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a valid meta.json"):
        youtube_sequences(root, "valid", all_frames=False)
    meta = {"videos": {"v": {"objects": {"1": {"frames": ["00000", "00005"]}, "2": {"frames": ["00005"]}}}}}
    (root / "valid" / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"object 2 of v starts at frame 00005 but .*00005\.png is missing"):
        youtube_sequences(root, "valid", all_frames=False)
    with pytest.raises(FileNotFoundError, match="valid_all_frames"):
        youtube_sequences(root, "valid", all_frames=True)


def test_coco_problems(tmp_path):
    with pytest.raises(FileNotFoundError, match="instances.json"):
        load_coco_json(tmp_path / "instances.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_coco_json(tmp_path / "bad.json")
    (tmp_path / "partial.json").write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(ValueError, match="no 'categories'"):
        load_coco_json(tmp_path / "partial.json")
    with pytest.raises(ValueError, match="corrupt"):
        rle_decode({"size": [4, 4], "counts": [3, 2]})
    images = tmp_path / "images"
    write_frame(images / "a.jpg", np.zeros((10, 12, 3), np.uint8))
    data = {"images": [{"id": 1, "file_name": "a.jpg", "height": 20, "width": 12}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "iscrowd": 0,
                             "segmentation": [[1, 1, 8, 1, 8, 8]]}],
            "categories": [{"id": 3, "name": "c"}]}
    (tmp_path / "sizes.json").write_text(json.dumps(data))
    ds = COCOInstanceDataset(images, tmp_path / "sizes.json", augment=False)
    with pytest.raises(ValueError, match=r"a\.jpg is 12x10 but .*sizes\.json says 12x20"):
        ds[0]
    data["annotations"][0]["category_id"] = 9
    (tmp_path / "cats.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="category_id 9"):
        COCOInstanceDataset(images, tmp_path / "cats.json")


def test_static_dataset_problems(tmp_path):
    write_frame(tmp_path / "a.jpg", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(FileNotFoundError, match=r"a\.jpg has no mask .*a\.png"):
        StaticClipDataset.from_folder(tmp_path)
    with pytest.raises(ValueError, match="mask_mode"):
        StaticClipDataset([(tmp_path / "a.jpg", tmp_path / "a.jpg")], mask_mode="rgb")
    shutil.rmtree(tmp_path)
    tmp_path.mkdir()
    with pytest.raises(ValueError, match="no images with masks"):
        StaticClipDataset.from_folder(tmp_path)
