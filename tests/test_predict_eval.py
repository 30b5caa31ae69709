"""predict / eval / demo: the sequence runner, overlay videos, the CLIs and their bad-input contract.

Everything runs on a tiny generated world (64x96 frames, 6-8 frames per video) with a random ``tiny`` model
saved as a checkpoint, so the whole file takes seconds.
"""

import json
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from isvos_lite.checkpoint import save_checkpoint
from isvos_lite.cli import main
from isvos_lite.data.export import WorldSizes, generate_world
from isvos_lite.data.palette import read_frame, read_mask, write_frame, write_mask
from isvos_lite.data.sequences import davis_sequences, folder_sequence, youtube_sequences
from isvos_lite.data.world import WorldConfig
from isvos_lite.eval.runner import PARTIAL_MARKER, folder_is_complete, segment_sequence
from isvos_lite.viz.video_io import OverlayVideoWriter, read_video_info, write_overlay_video
from isvos_lite.model.isvos import ISVOS


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world") / "toy"
    config = WorldConfig(height=64, width=96, min_frames=6, max_frames=8, eval_min_frames=6, eval_max_frames=8, max_objects=2)
    generate_world(root, seed=0, config=config,
                   sizes=WorldSizes(train=1, val=2, lookalike=1, heldout=1, youtube_train=1, youtube_valid=1,
                                    coco_train=2, coco_val=2), progress=False)
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tiny_cfg):
    torch.manual_seed(0)
    return save_checkpoint(ISVOS(tiny_cfg), tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


@pytest.fixture(scope="module")
def model(checkpoint):
    from isvos_lite.checkpoint import load_checkpoint
    return load_checkpoint(checkpoint)


def _clip(folder, frames=5, size=(48, 80), ids=(1, 2)):
    """A folder of ``frames`` noise frames and a first-frame mask with boxes of ``ids``; returns (dir, mask)."""
    rng = np.random.default_rng(0)
    frame_dir = folder / "frames"
    for t in range(frames):
        write_frame(frame_dir / f"{t:05d}.png", rng.integers(0, 256, size + (3,), dtype=np.uint8))
    mask = np.zeros(size, np.uint8)
    for k, oid in enumerate(ids):
        mask[5 + 20 * k: 20 + 20 * k, 10:40] = oid
    write_mask(folder / "first.png", mask)
    return frame_dir, folder / "first.png"


def _cli(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


# ---------------------------------------------------------------------------------------------- runner
def test_segment_sequence_writes_every_frame_and_returns_the_first_mask_as_given(world, model, tmp_path):
    seq = davis_sequences(world, "val")[0]
    masks = segment_sequence(model, seq, tmp_path, progress=False)
    folder = tmp_path / seq.name
    # the masks, and the hidden manifest that tells --overwrite which files are its own
    assert sorted(p.name for p in folder.iterdir()) == [".isvos-lite-outputs.json"] + [f"{n}.png" for n in seq.frame_names]
    np.testing.assert_array_equal(masks[0], seq.read_gt(0))
    for index, mask in masks.items():
        np.testing.assert_array_equal(read_mask(folder / f"{seq.frame_names[index]}.png"), mask)
        assert mask.shape == seq.size
        assert set(np.unique(mask)) <= {0, *seq.object_ids}
    assert folder_is_complete(folder, seq)
    assert not list(tmp_path.glob(f".*{PARTIAL_MARKER}*"))


def test_finished_sequences_are_skipped_and_foreign_folders_refused(world, model, tmp_path, monkeypatch):
    seq = davis_sequences(world, "val")[0]
    first = segment_sequence(model, seq, tmp_path, progress=False)

    import isvos_lite.eval.runner as runner

    def must_not_run(*args, **kwargs):
        raise AssertionError("a finished sequence was recomputed")

    monkeypatch.setattr(runner, "VideoSegmenter", must_not_run)
    again = segment_sequence(model, seq, tmp_path, progress=False)            # resumed: read back
    assert all(np.array_equal(first[i], again[i]) for i in first)

    (tmp_path / seq.name / f"{seq.frame_names[-1]}.png").unlink()               # now incomplete
    with pytest.raises(ValueError, match="not a complete result"):
        segment_sequence(model, seq, tmp_path, progress=False)


def test_a_crash_leaves_no_sequence_folder(world, model, tmp_path):
    seq = davis_sequences(world, "val")[0]
    original = seq.read_frame

    def failing(index, check_size=True):
        if index == 3:
            raise RuntimeError("disk on fire")
        return original(index, check_size)

    seq.read_frame = failing
    with pytest.raises(RuntimeError, match="disk on fire"):
        segment_sequence(model, seq, tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []                                      # no folder, no work folder


def test_objects_that_start_mid_video_are_inserted_as_given(model, tmp_path):
    frame_dir, _ = _clip(tmp_path, frames=6, ids=(1,))
    masks_dir = tmp_path / "masks"
    first = np.zeros((48, 80), np.uint8)
    first[5:20, 10:40] = 1
    later = np.zeros((48, 80), np.uint8)
    later[30:45, 50:75] = 4                                                      # a new object at frame 3
    write_mask(masks_dir / "00000.png", first)
    write_mask(masks_dir / "00003.png", later)
    seq = folder_sequence(frame_dir, masks_dir)
    assert seq.start_objects == {0: [1], 3: [4]}
    masks = segment_sequence(model, seq, progress=False)
    assert 4 not in np.unique(np.stack([masks[t] for t in range(3)]))
    np.testing.assert_array_equal(masks[3] == 4, later == 4)                    # given exactly where drawn
    assert set(np.unique(masks[5])) <= {0, 1, 4}


def test_youtube_frames_before_the_first_object_are_background(world, model):
    seq = youtube_sequences(world / "youtube", "valid")[0]
    first_given = min(seq.start_objects)
    masks = segment_sequence(model, seq, progress=False)
    assert sorted(masks) == seq.output_indices
    for index in seq.output_indices:
        if index < first_given:
            assert not masks[index].any()


# ---------------------------------------------------------------------------------------------- video_io
def test_overlay_video_is_read_back_with_the_written_frames(tmp_path):
    frames = [np.full((33, 51, 3), 100, np.uint8) for _ in range(7)]              # odd size: padded to 34x52
    masks = [np.zeros((33, 51), np.uint8) for _ in frames]
    for mask in masks:
        mask[8:24, 10:40] = 1
    path = write_overlay_video(tmp_path / "v.mp4", frames, masks, fps=10, style="fill", palette="davis")
    count, size, fps = read_video_info(path)
    assert (count, size) == (7, (34, 52))
    assert fps == pytest.approx(10)
    capture = cv2.VideoCapture(str(path))
    ok, bgr = capture.read()
    capture.release()
    rgb = bgr[..., ::-1].astype(float)
    # object 1 is DAVIS red (128, 0, 0) at alpha 0.6 over grey 100: (117, 40, 40); lossy codec, so +-12
    np.testing.assert_allclose(rgb[12:20, 15:35].mean((0, 1)), [117, 40, 40], atol=12)
    np.testing.assert_allclose(rgb[28:32, 2:48].mean((0, 1)), [100, 100, 100], atol=12)


@pytest.mark.parametrize("codec, fourccs", [("auto", ("h264", "avc1")), ("mp4v", ("mp4v", "fmp4"))])
def test_overlay_video_is_h264_with_usual_permissions_and_mp4v_as_fallback(tmp_path, codec, fourccs):
    import os
    from isvos_lite.viz.video_io import h264_available, video_codec, video_html
    if codec == "auto" and not h264_available():
        pytest.skip("imageio-ffmpeg is not installed: the writer falls back to OpenCV's mp4v")
    frames = [np.full((32, 48, 3), 10 * t, np.uint8) for t in range(5)]
    path = write_overlay_video(tmp_path / "v.mp4", frames, codec=codec)
    assert video_codec(path) in fourccs                           # browsers play H.264 only
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask        # not mkstemp's 0600
    assert read_video_info(path)[0] == 5
    html = video_html(path, title="clip")
    assert html.count("<video") == 1 and "data:video/mp4;base64," in html
    assert ("browsers cannot play it" in html) == (codec == "mp4v")
    with pytest.raises(ValueError, match="codec must be one of"):
        OverlayVideoWriter(tmp_path / "w.mp4", codec="divx")


def test_overlay_writer_leaves_nothing_on_error(tmp_path):
    with pytest.raises(ValueError, match="one size"):
        with OverlayVideoWriter(tmp_path / "v.mp4") as video:
            video.write(np.zeros((20, 20, 3), np.uint8))
            video.write(np.zeros((22, 20, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match=r"\.mp4"):
        OverlayVideoWriter(tmp_path / "v.gif")


# ---------------------------------------------------------------------------------------------- predict
def test_predict_frames_writes_masks_and_a_readable_overlay(checkpoint, tmp_path, capsys):
    frame_dir, mask = _clip(tmp_path, frames=5)
    out, overlay = tmp_path / "out", tmp_path / "overlay.mp4"
    code, text = _cli(["predict", "--checkpoint", str(checkpoint), "--frames", str(frame_dir), "--mask", str(mask),
                       "--out", str(out), "--overlay", str(overlay)], capsys)
    assert code == 0, text
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [f"{t:05d}.png" for t in range(5)]
    np.testing.assert_array_equal(read_mask(out / "00000.png"), read_mask(mask))
    assert read_video_info(overlay)[:2] == (5, (48, 80))
    # a second run into the same folder is refused, --overwrite replaces it
    code, text = _cli(["predict", "--checkpoint", str(checkpoint), "--frames", str(frame_dir), "--mask", str(mask),
                       "--out", str(out)], capsys)
    assert code == 1 and "--overwrite" in text
    code, text = _cli(["predict", "--checkpoint", str(checkpoint), "--frames", str(frame_dir), "--mask", str(mask),
                       "--out", str(out), "--overlay", str(overlay), "--overwrite", "--objects", "2"], capsys)
    assert code == 0, text
    assert set(np.unique(read_mask(out / "00003.png"))) <= {0, 2}


def test_predict_video_file_and_a_one_frame_video(checkpoint, tmp_path, capsys):
    frame_dir, mask = _clip(tmp_path, frames=4)
    frames = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(frame_dir.iterdir())]
    video = write_overlay_video(tmp_path / "clip.mp4", frames, fps=8)
    code, text = _cli(["predict", "--checkpoint", str(checkpoint), "--video", str(video), "--mask", str(mask),
                       "--out", str(tmp_path / "out"), "--overlay", str(tmp_path / "o.mp4")], capsys)
    assert code == 0, text
    assert len(list((tmp_path / "out").glob("*.png"))) == 4
    assert read_video_info(tmp_path / "o.mp4")[0] == 4

    single = write_overlay_video(tmp_path / "one.mp4", frames[:1], fps=8)
    code, text = _cli(["predict", "--checkpoint", str(checkpoint), "--video", str(single), "--mask", str(mask),
                       "--out", str(tmp_path / "one")], capsys)
    assert code == 0, text
    assert "single frame" in text
    np.testing.assert_array_equal(read_mask(tmp_path / "one" / "00000.png"), read_mask(mask))


def test_predict_large_frames_warn_and_keep_the_original_size(checkpoint, tmp_path, capsys):
    frame_dir, mask = _clip(tmp_path, frames=2, size=(96, 160))
    code, text = _cli(["predict", "--checkpoint", str(checkpoint), "--frames", str(frame_dir), "--mask", str(mask),
                       "--out", str(tmp_path / "out"), "--max-internal-size", "48"], capsys)
    assert code == 0, text
    assert "warning: frames are 160x96; processing at 80x48" in text
    assert read_mask(tmp_path / "out" / "00001.png").shape == (96, 160)


def _bad_masks(tmp_path):
    """{name: (mask path, expected message)} for masks the CLIs must refuse."""
    cases = {}
    empty = tmp_path / "empty.png"
    write_mask(empty, np.zeros((48, 80), np.uint8))
    cases["empty"] = (empty, "no objects")
    rgb = tmp_path / "rgb.png"
    Image.fromarray(np.full((48, 80, 3), 128, np.uint8)).save(rgb)
    cases["rgb"] = (rgb, "colour (RGB) image")
    soft = tmp_path / "antialiased.png"
    ramp = np.tile(np.linspace(0, 200, 80).astype(np.uint8), (48, 1))           # 80 grey levels: a soft edge
    Image.fromarray(ramp, mode="L").save(soft)
    cases["antialiased"] = (soft, "anti-aliased")
    small = tmp_path / "small.png"
    write_mask(small, np.ones((24, 40), np.uint8))
    cases["size"] = (small, "resize the mask")
    return cases


@pytest.mark.parametrize("case", ["empty", "rgb", "antialiased", "size"])
def test_predict_refuses_bad_masks_and_writes_nothing(checkpoint, tmp_path, capsys, case):
    frame_dir, _ = _clip(tmp_path, frames=3)
    mask, message = _bad_masks(tmp_path)[case]
    out = tmp_path / "out"
    code, text = _cli(["predict", "--checkpoint", str(checkpoint), "--frames", str(frame_dir), "--mask", str(mask),
                       "--out", str(out), "--overlay", str(tmp_path / "o.mp4")], capsys)
    assert code == 1
    assert message in text and str(mask) in text
    assert not out.exists() and not (tmp_path / "o.mp4").exists()


def test_predict_refuses_ids_not_in_the_mask_and_undecodable_videos(checkpoint, tmp_path, capsys):
    frame_dir, mask = _clip(tmp_path, frames=3)
    code, text = _cli(["predict", "--checkpoint", str(checkpoint), "--frames", str(frame_dir), "--mask", str(mask),
                       "--out", str(tmp_path / "out"), "--objects", "1", "9"], capsys)
    assert code == 1 and "[9] are not in the first frame's mask" in text and "[1, 2]" in text
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    code, text = _cli(["predict", "--checkpoint", str(checkpoint), "--video", str(broken), "--mask", str(mask),
                       "--out", str(tmp_path / "out")], capsys)
    assert code == 1 and str(broken) in text
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------- eval
def test_eval_davis_writes_results_scores_and_resumes(world, checkpoint, tmp_path, capsys):
    out = tmp_path / "eval"
    argv = ["eval", "--checkpoint", str(checkpoint), "--davis", str(world), "--split", "val", "--out", str(out),
            "--workers", "1"]
    code, text = _cli(argv, capsys)
    assert code == 0, text
    for seq in davis_sequences(world, "val"):
        assert folder_is_complete(out / seq.name, seq)
    rows = (out / "global_results-val.csv").read_text().splitlines()
    assert rows[0].split(",")[:2] == ["J&F-Mean", "J-Mean"]
    j, f = float(rows[1].split(",")[1]), float(rows[1].split(",")[4])
    assert float(rows[1].split(",")[0]) == pytest.approx((j + f) / 2, abs=1e-3)
    assert (out / "per-frame_results-val.csv").exists()

    code, text = _cli(argv, capsys)                                             # same run: resumed, not redone
    assert code == 0 and "resuming: 2 of 2" in text
    code, text = _cli(argv + ["--top-k", "5"], capsys)                          # another run: refused
    assert code == 1 and "another run" in text and "--overwrite" in text


def test_eval_davis_2016_merges_objects(world, checkpoint, tmp_path, capsys):
    out = tmp_path / "eval16"
    code, text = _cli(["eval", "--checkpoint", str(checkpoint), "--davis", str(world), "--year", "2016",
                       "--out", str(out), "--workers", "1"], capsys)
    assert code == 0, text
    for png in out.glob("*/*.png"):
        assert set(np.unique(read_mask(png))) <= {0, 1}
    assert (out / "global_results-val.csv").exists()


def test_eval_youtube_writes_the_submission_layout(world, checkpoint, tmp_path, capsys):
    out = tmp_path / "yt"
    code, text = _cli(["eval", "--checkpoint", str(checkpoint), "--youtube", str(world / "youtube"), "--out", str(out)],
                      capsys)
    assert code == 0, text
    meta = json.loads((world / "youtube" / "valid" / "meta.json").read_text())["videos"]
    expected = set()
    for video, info in meta.items():
        frames = {name for obj in info["objects"].values() for name in obj["frames"]}
        ids = {int(k) for k in info["objects"]}
        written = {p.stem for p in (out / "Annotations" / video).glob("*.png")}
        assert written == frames
        for name in frames:
            mask = read_mask(out / "Annotations" / video / f"{name}.png")
            assert mask.shape == (64, 96)
            assert set(np.unique(mask)) <= {0} | ids
        expected |= {f"Annotations/{video}/{name}.png" for name in frames}
    with zipfile.ZipFile(out / "submission.zip") as archive:
        assert set(archive.namelist()) == expected


def test_eval_refuses_a_foreign_results_folder(world, checkpoint, tmp_path, capsys):
    out = tmp_path / "eval"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, text = _cli(["eval", "--checkpoint", str(checkpoint), "--davis", str(world), "--out", str(out)], capsys)
    assert code == 1 and "not written by `isvos-lite eval`" in text
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


# ---------------------------------------------------------------------------------------------- demo
def test_demo_takes_no_amp_and_writes_videos_a_room_can_watch(world, checkpoint, tmp_path, capsys):
    # --amp/--no-amp on demo as on predict and eval; videos at 4 fps (a 20-30 frame video lasts 5-8 s)
    out = tmp_path / "demo_fp32"
    code, text = _cli(["demo", "--world", str(world), "--checkpoint", str(checkpoint), "--out", str(out),
                       "--sequences", "val-000", "--no-amp"], capsys)
    assert code == 0, text
    assert "(--no-amp)" in text and "fp32" in text
    frames, _, fps = read_video_info(out / "val-000.mp4")
    n_frames = len(list((world / "JPEGImages" / "480p" / "val-000").glob("*.jpg")))
    assert fps == pytest.approx(4.0) and frames == n_frames     # every frame shown for a quarter of a second


def test_the_docs_quote_no_demo_numbers():
    # the demo prints its own per-video J&F; a page quoting them would fall out of step with the checkpoints
    import re
    text = (Path(__file__).resolve().parent.parent / "docs" / "EVALUATION.md").read_text()
    demo = text.split("## The demo", 1)[1].split("\n## ", 1)[0]
    assert not re.search(r"(val|lookalike)-\d{3} \d+\.\d", demo), demo


def test_demo_writes_masks_videos_figure_and_scores(world, checkpoint, tmp_path, capsys):
    out = tmp_path / "demo"
    code, text = _cli(["demo", "--world", str(world), "--checkpoint", str(checkpoint), "--out", str(out)], capsys)
    assert code == 0, text
    names = ["val-000", "val-001", "lookalike-000"]
    for name in names:
        assert name in text
        assert read_video_info(out / f"{name}.mp4")[0] == len(list((out / "masks" / name).glob("*.png")))
    assert (out / "summary.png").stat().st_size > 10_000
    assert (out / "global_results-demo.csv").exists()
    assert "all (objects)" in text
    # the videos show prediction | ground truth side by side; scores in percent; a computed "why" per video
    count, (height, width), _ = read_video_info(out / "val-000.mp4")
    frame_height, frame_width = read_frame(world / "JPEGImages" / "480p" / "val-000" / "00000.jpg").shape[:2]
    assert width == 2 * frame_width + 4 and height >= frame_height + 20
    assert "in percent" in text and "val-000: weakest frame" in text
