"""Loaders on generated data in every format: DAVIS, YouTube-VOS, folder, mp4, training clips, static, COCO instances."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from isvos_lite.data.coco import annotation_to_mask, polygons_to_mask, rle_decode, rle_encode
from isvos_lite.data.export import WorldSizes, generate_world
from isvos_lite.data.instance_dataset import COCOInstanceDataset, collate_instances
from isvos_lite.data.palette import read_mask
from isvos_lite.data.sequences import davis_sequences, folder_sequence, video_sequence, youtube_sequences
from isvos_lite.data.static_dataset import StaticClipDataset
from isvos_lite.data.vos_dataset import VOSClipDataset
from isvos_lite.data.world import WorldConfig

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("loaders") / "toy"
    generate_world(out, seed=3, config=WorldConfig(height=64, width=96, min_frames=12, max_frames=12,
                                                        eval_min_frames=12, eval_max_frames=12),
                   sizes=WorldSizes(train=4, val=2, lookalike=1, heldout=1, youtube_train=3, youtube_valid=3,
                                    coco_train=6, coco_val=2),
                   progress=False)
    return out


# --------------------------------------------------------------------------------------
# evaluation readers
# --------------------------------------------------------------------------------------

def test_davis_reader(world):
    seqs = davis_sequences(world, "val")
    assert [s.name for s in seqs] == ["val-000", "val-001"]
    seq = seqs[0]
    assert len(seq) == 12 and seq.frame_names[:3] == ["00000", "00001", "00002"]
    assert seq.read_frame(3).shape == (64, 96, 3) and seq.read_frame(3).dtype == np.uint8
    first = read_mask(world / "Annotations" / "480p" / "val-000" / "00000.png")
    assert seq.start_objects == {0: sorted(int(i) for i in np.unique(first) if i)}
    assert np.array_equal(seq.read_given_mask(0), first)
    assert seq.gt_indices == list(range(12)) and seq.output_indices == list(range(12))
    merged = davis_sequences(world, "val", year=2016)[0]                      # 2016: one foreground object
    assert set(np.unique(merged.read_gt(0))) <= {0, 1} and merged.start_objects == {0: [1]}
    assert len(davis_sequences(world, "lookalike")) == 1 and len(davis_sequences(world, "heldout")) == 1


def test_davis_full_resolution_folders(world, tmp_path):
    root = tmp_path / "DAVIS"
    shutil.copytree(world / "ImageSets", root / "ImageSets")
    for kind in ("JPEGImages", "Annotations"):
        shutil.copytree(world / kind / "480p" / "val-001", root / kind / "Full-Resolution" / "val-001")
    (root / "ImageSets" / "2017" / "val.txt").write_text("val-001\n")
    full = davis_sequences(root, "val", resolution="Full-Resolution")
    assert [s.name for s in full] == ["val-001"] and full[0].frame_paths[0].parts[-3] == "Full-Resolution"
    with pytest.raises(FileNotFoundError, match="480p"):
        davis_sequences(root, "val", resolution="480p")
    with pytest.raises(ValueError, match="resolution"):
        davis_sequences(root, "val", resolution="1080p")


def test_youtube_reader_objects_start_mid_video(world):
    dense = youtube_sequences(world / "youtube", "valid", all_frames=True)
    sparse = youtube_sequences(world / "youtube", "valid", all_frames=False)
    assert any(max(s.start_objects) > 0 for s in dense)                        # some object starts mid-video
    for d, s in zip(dense, sparse):
        assert len(d) == 12 and len(s) == 3
        assert d.output_indices == [0, 5, 10] and s.output_indices == [0, 1, 2]
        assert {k * 5: v for k, v in s.start_objects.items()} == d.start_objects
        for index, ids in d.start_objects.items():
            given = d.read_given_mask(index)
            assert sorted(int(i) for i in np.unique(given) if i) == ids        # only the objects starting there
            gt = d.read_gt(index)
            for i in ids:
                assert np.array_equal(given == i, gt == i)
        assert np.array_equal(d.read_frame(5), s.read_frame(1))                # the same frame in both folders
    train = youtube_sequences(world / "youtube", "train", all_frames=False)
    assert all(t.gt_indices == [0, 1, 2] for t in train)


def test_folder_and_mp4_readers(world, tmp_path):
    frames_dir = world / "JPEGImages" / "480p" / "train-000"
    mask = world / "Annotations" / "480p" / "train-000" / "00000.png"
    seq = folder_sequence(frames_dir, mask, name="mine")
    assert seq.name == "mine" and len(seq) == 12 and 0 in seq.start_objects
    # several annotated frames: a folder of masks named like the frames
    masks = tmp_path / "masks"
    masks.mkdir()
    (masks / "00000.png").write_bytes(mask.read_bytes())
    (masks / "00006.png").write_bytes((world / "Annotations" / "480p" / "train-000" / "00006.png").read_bytes())
    multi = folder_sequence(frames_dir, masks)
    assert sorted(multi.given_mask_paths) == [0, 6]

    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (96, 64))
    for i in range(len(seq)):
        writer.write(cv2.cvtColor(seq.read_frame(i), cv2.COLOR_RGB2BGR))
    writer.release()
    vseq = video_sequence(video, mask)
    assert len(vseq) == 12 and vseq.name == "clip"
    for i in (0, 7, 3, 4):                                                      # random access and sequential
        assert np.abs(vseq.read_frame(i).astype(int) - seq.read_frame(i).astype(int)).mean() < 12
    assert vseq.start_objects == seq.start_objects


# --------------------------------------------------------------------------------------
# training datasets
# --------------------------------------------------------------------------------------

def _check_clip(item, t=3, o=3, hw=(48, 48)):
    assert item["frames"].shape == (t, 3) + hw and item["frames"].dtype == torch.float32
    assert 0.0 <= item["frames"].min() and item["frames"].max() <= 1.0
    assert item["masks"].shape == (t, o) + hw and item["labels"].shape == (t,) + hw
    assert item["labels"].dtype == torch.int64 and item["selector"].shape == (o,)
    n = int(item["selector"].sum())
    assert n >= 1 and item["selector"][:n].eq(1).all() and item["selector"][n:].eq(0).all()
    for k in range(o):                                                          # masks are the one-hot of labels
        assert torch.equal(item["masks"][:, k], (item["labels"] == k + 1).float())
    assert item["masks"][0, :n].flatten(1).sum(1).min() > 0                     # chosen objects visible in frame 0
    assert len(item["info"]["frames"]) == t and len(item["info"]["object_ids"]) == o
    assert all(i > 0 for i in item["info"]["object_ids"][:n]) and all(i == 0 for i in item["info"]["object_ids"][n:])


def test_vos_clip_dataset_davis_and_default_collate(world):
    torch.manual_seed(0)
    ds = VOSClipDataset(world, "train", crop_size=48)
    assert len(ds) == 6                                     # 4 procedural videos + 2 dressed in photographs
    for i in range(len(ds)):
        _check_clip(ds[i])
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch["frames"].shape == (4, 3, 3, 48, 48) and batch["selector"].shape == (4, 3)
    plain = VOSClipDataset(world, "val", crop_size=None, augment=False, max_objects=2, num_frames=4, repeat=3)
    assert len(plain) == 6
    item = plain[0]
    _check_clip(item, t=4, o=2, hw=(64, 96))
    frames = item["info"]["frames"]
    raw = read_mask(world / "Annotations" / "480p" / item["info"]["name"] / f"{frames[0]}.png")
    for k, object_id in enumerate(item["info"]["object_ids"]):                  # un-augmented: exactly the GT
        if object_id:
            assert torch.equal(item["masks"][0, k], torch.from_numpy((raw == object_id).astype(np.float32)))


def test_vos_clip_dataset_youtube(world):
    torch.manual_seed(0)
    ds = VOSClipDataset(world / "youtube", "train", crop_size=48, max_skip=10)
    assert ds.format == "youtube" and ds.videos[0].skip_divisor == 5
    item = ds[0]
    _check_clip(item)
    assert all(int(f) % 5 == 0 for f in item["info"]["frames"])                 # labelled frames only


def test_static_clip_dataset(world, tmp_path):
    torch.manual_seed(0)
    ds = StaticClipDataset.from_davis(world, "train", every=4, crop_size=48, tps_probability=1.0)
    _check_clip(ds[0])
    # saliency-style folder: image.jpg + image.png (0/255 masks)
    from PIL import Image
    img = np.full((40, 50, 3), 90, np.uint8)
    mask = np.zeros((40, 50), np.uint8)
    mask[10:30, 15:40] = 255
    Image.fromarray(img).save(tmp_path / "a.jpg")
    Image.fromarray(mask, "L").save(tmp_path / "a.png")
    folder = StaticClipDataset.from_folder(tmp_path, crop_size=32)
    item = folder[0]
    _check_clip(item, o=1, hw=(32, 32))
    assert item["info"]["object_ids"] == [1]


def test_coco_instance_dataset(world):
    torch.manual_seed(0)
    ds = COCOInstanceDataset(world / "coco" / "train", world / "coco" / "annotations" / "instances_train.json", crop_size=48)
    assert ds.num_classes == 4 and ds.category_names == ["disc", "box", "triangle", "star"]
    items = [ds[i] for i in range(4)]
    for item in items:
        assert item["image"].shape == (3, 48, 48)
        m = item["masks"].shape[0]
        assert item["masks"].shape == (m, 48, 48) and item["labels"].shape == (m,)
        assert item["labels"].dtype == torch.int64 and (item["labels"] < 4).all()
        assert [ds.category_ids[int(c)] for c in item["labels"]] == item["info"]["category_ids"]
    images, targets = collate_instances(items)
    assert images.shape == (4, 3, 48, 48) and len(targets) == 4
    # no augmentation, no crop: the masks are the file's instances exactly
    exact = COCOInstanceDataset(world / "coco" / "val", world / "coco" / "annotations" / "instances_val.json",
                                augment=False, min_pixels=1)
    item = exact[0]
    record = exact.images[0]
    anns = exact.annotations[record["id"]]
    expected = np.stack([annotation_to_mask(a, 64, 96) for a in anns])
    assert np.array_equal(item["masks"].numpy(), expected.astype(np.float32))
    # different sizes are padded by the collate
    small = {"image": torch.ones(3, 10, 12), "masks": torch.ones(1, 10, 12), "labels": torch.tensor([0]), "info": {}}
    images, targets = collate_instances([item, small])
    assert images.shape == (2, 3, 64, 96) and targets[1]["masks"].shape == (1, 64, 96)
    assert targets[1]["masks"][0, 10:].sum() == 0


# --------------------------------------------------------------------------------------
# COCO decoding against pycocotools
# --------------------------------------------------------------------------------------

def test_rle_round_trip_and_pycocotools_equality():
    mask_api = pytest.importorskip("pycocotools.mask")
    rng = np.random.default_rng(0)
    for trial in range(50):
        h, w = rng.integers(1, 30, size=2)
        mask = (rng.random((h, w)) < rng.random()).astype(np.uint8)
        if trial % 5 == 0:
            mask[:] = trial % 2
        ours = rle_encode(mask)
        theirs = mask_api.encode(np.asfortranarray(mask))
        assert ours["counts"] == theirs["counts"].decode()
        assert np.array_equal(rle_decode(theirs), mask)
        assert np.array_equal(rle_decode(rle_encode(mask, compressed=False)), mask)


def test_polygons_agree_with_pycocotools():
    mask_api = pytest.importorskip("pycocotools.mask")
    rng = np.random.default_rng(0)
    cases = [[[10.0, 5.0, 50.5, 8.0, 40.0, 40.0, 12.0, 30.0], [60.0, 10.0, 75.0, 10.0, 70.0, 25.0]]]
    for _ in range(20):                                                         # random star-shaped polygons
        angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(3, 9))))
        radius = rng.uniform(4, 18)
        centre = rng.uniform(15, 40, size=2)
        points = np.stack([centre[0] + radius * np.cos(angles), centre[1] + radius * 0.8 * np.sin(angles)], axis=1)
        cases.append([points.reshape(-1).tolist()])
    disagree = area = 0
    for polygons in cases:
        ours = polygons_to_mask(polygons, 48, 80)
        theirs = mask_api.decode(mask_api.merge(mask_api.frPyObjects(polygons, 48, 80)))
        disagree += int((ours != theirs).sum())
        area += int(theirs.sum())
        kernel = np.ones((3, 3), np.uint8)
        assert ours[cv2.erode(theirs, kernel) > 0].all()                        # differences only on the outline
        assert not ours[cv2.dilate(theirs, kernel) == 0].any()
    assert disagree < 0.03 * area
