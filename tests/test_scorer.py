"""The DAVIS scorer (isvos_lite.eval.scorer) and the ``isvos-lite score`` command: a hand-computed
known-answer set, the spec's edge cases (docs/DAVIS_METRIC.md) and bad input."""

import csv

import cv2
import numpy as np
import pytest
from PIL import Image

from isvos_lite.cli import main
from isvos_lite.data.palette import write_mask
from isvos_lite.eval.metrics import frame_scores, tolerance_radius
from isvos_lite.eval.scorer import (GLOBAL_COLUMNS, decay_bin_edges, object_statistics, per_frame_scores,
                                    score_results)

SIZE = (6, 8)          # r = ceil(0.008 * 10) = 1: the disk is a pixel and its 4 neighbours


def square(rows, cols, value=1, shape=SIZE):
    labels = np.zeros(shape, np.uint8)
    labels[rows[0]:rows[1] + 1, cols[0]:cols[1] + 1] = value
    return labels


def write_grey(path, labels):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(labels.astype(np.uint8), mode="L").save(path)


def write_raw_palette(path, labels):
    """A palette PNG with any index, 255 included (write_mask is for predictions)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(labels.astype(np.uint8), mode="P")
    image.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [255, 255, 255] * 253)
    image.save(path)


def write_split(root, names, year=2017, split="val"):
    folder = root / "ImageSets" / str(year)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{split}.txt").write_text("\n".join(names) + "\n")


@pytest.fixture()
def known(tmp_path):
    """Two sequences whose scores are worked out by hand below.

    beta (ImageSets lists it first; 4 frames, frames 1 and 2 scored): the first frame holds only
    id 2, so N = 2 and object 1 (absent everywhere) is scored too.
      frame 1: GT = square id 2 plus a late id 3 (ignored); prediction = the square.
               object 1: both empty -> J = F = 1.  object 2: identical -> J = F = 1.
      frame 2: GT = 3x3 square id 2 with void (255) on the column to its right; the prediction
               covers square + void column (3x4). Void is background and is scored:
               J = 9 / 12 = 0.75 (it would be 1 if void were ignored).
               b(P) is the 14-px boundary of the 3x4 box, b(G) the 12-px one of the 3x3 square;
               with r = 1 every pixel of each lies within 1 px of the other -> F = 1.
      beta_1: J = [1, 1], F = [1, 1]          -> M 1, R 1, D 0 (n = 2: Q1 = v0, Q4 = v1)
      beta_2: J = [1, 0.75], F = [1, 1]       -> J: M 0.875, R 1, D 0.25;  F: M 1, R 1, D 0
    alpha (5 frames, frames 1..3 scored; the first prediction is missing, the last is an RGB
    file: neither is read):
      frame 1: prediction = GT -> J = F = 1
      frame 2: prediction = the square shifted right by 2 -> J = 3/15 = 0.2, F = 2/3
               (see test_metrics.test_j_and_f_of_a_shifted_square_by_hand)
      frame 3: prediction empty -> J = 0, F = 0
      alpha_1: J = [1, 0.2, 0]: M 0.4, R 1/3, D = mean(1, 0.2) - 0 = 0.6 (n = 3: Q1 = v0..v1, Q4 = v2)
               F = [1, 2/3, 0]: M 5/9, R 2/3, D = mean(1, 2/3) - 0 = 5/6
    Global = plain means over the 3 objects:
      J-Mean (1 + 0.875 + 0.4)/3 = 0.758333   J-Recall (1 + 1 + 1/3)/3 = 0.777778   J-Decay (0 + 0.25 + 0.6)/3 = 0.283333
      F-Mean (1 + 1 + 5/9)/3 = 0.851852       F-Recall (1 + 1 + 2/3)/3 = 0.888889   F-Decay (0 + 0 + 5/6)/3 = 0.277778
      J&F-Mean (0.758333 + 0.851852)/2 = 0.805093
    """
    root = tmp_path / "davis"
    results = tmp_path / "results"
    annotations = root / "Annotations" / "480p"
    sq = square((1, 3), (1, 3))

    # beta
    beta_gt = [sq * 2, sq * 2, sq * 2, sq * 2]
    beta_gt[1] = beta_gt[1].copy()
    beta_gt[1][5, 7] = 3                        # a late id, never scored
    beta_gt[2] = beta_gt[2].copy()
    beta_gt[2][1:4, 4] = 255                    # void right of the square
    for t, labels in enumerate(beta_gt):
        write_raw_palette(annotations / "beta" / f"{t:05d}.png", labels)
    write_mask(results / "beta" / "00001.png", sq * 2)
    write_mask(results / "beta" / "00002.png", square((1, 3), (1, 4), 2))
    # beta's last prediction is simply missing

    # alpha
    for t in range(5):
        write_mask(annotations / "alpha" / f"{t:05d}.png", sq)
    write_mask(results / "alpha" / "00001.png", sq)
    write_mask(results / "alpha" / "00002.png", square((1, 3), (3, 5)))
    write_mask(results / "alpha" / "00003.png", np.zeros(SIZE, np.uint8))
    Image.fromarray(np.full(SIZE + (3,), 200, np.uint8), mode="RGB").save(results / "alpha" / "00004.png")

    # a duplicate and a blank line in the split file: duplicates collapse, blanks are skipped
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("beta\nalpha\n\nbeta\n")
    return root, results


KNOWN_GLOBAL = {
    "J-Mean": (1 + 0.875 + 0.4) / 3, "J-Recall": (1 + 1 + 1 / 3) / 3, "J-Decay": (0 + 0.25 + 0.6) / 3,
    "F-Mean": (1 + 1 + 5 / 9) / 3, "F-Recall": (1 + 1 + 2 / 3) / 3, "F-Decay": (0 + 0 + 5 / 6) / 3,
}
KNOWN_GLOBAL["J&F-Mean"] = (KNOWN_GLOBAL["J-Mean"] + KNOWN_GLOBAL["F-Mean"]) / 2


# --------------------------------------------------------------------------------------
# statistics (spec §7)
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("n, edges", [(1, [0, 0, 0, 0, 0]), (2, [0, 0, 1, 1, 1]), (3, [0, 1, 1, 2, 2]),
                                      (4, [0, 1, 2, 2, 3]), (8, [0, 2, 4, 5, 7]), (10, [0, 2, 5, 7, 9]),
                                      (14, [0, 3, 7, 10, 13]), (48, [0, 12, 24, 35, 47])])
def test_decay_bin_edges_table(n, edges):
    assert decay_bin_edges(n).tolist() == edges


def test_object_statistics_by_hand():
    # n = 4: bins [0, 1, 2, 2, 3] -> Q1 = v0..v1, Q4 = v2..v3
    mean, recall, decay = object_statistics(np.array([1.0, 0.5, 0.6, 0.2]))
    assert mean == pytest.approx(0.575)
    assert recall == 0.5                     # 0.5 itself does not count: strictly greater
    assert decay == pytest.approx(0.75 - 0.4)


def test_object_statistics_equal_the_official_expressions():
    rng = np.random.default_rng(3)
    # n <= 255: from n = 256 on, the official uint8 bin index wraps (ids[4] + 1 = 256 -> 0, so its
    # Q4 is empty and Decay is NaN); this scorer keeps the true bins there
    for n in list(range(1, 60)) + [104, 200, 255]:
        values = rng.random(n)
        values[rng.random(n) < 0.1] = 0.5
        ids = (np.round(np.linspace(1, n, 5) + 1e-10) - 1).astype(np.uint8)   # the official uint8 indices
        bins = [values[ids[i]:ids[i + 1] + 1] for i in range(4)]
        expected = (np.nanmean(values), np.nanmean(values > 0.5), np.nanmean(bins[0]) - np.nanmean(bins[3]))
        assert object_statistics(values) == expected            # bit for bit


# --------------------------------------------------------------------------------------
# the known-answer set
# --------------------------------------------------------------------------------------

def test_known_answers(known):
    root, results = known
    result = score_results(root, results, "val", workers=1, progress=False)
    assert [row.name for row in result.per_sequence] == ["beta_1", "beta_2", "alpha_1"]   # ImageSets order
    for key, value in KNOWN_GLOBAL.items():
        assert result.global_metrics[key] == pytest.approx(value, abs=1e-12), key
    rows = {row.name: row for row in result.per_sequence}
    assert (rows["beta_1"].j_mean, rows["beta_1"].f_mean, rows["beta_1"].j_decay) == (1.0, 1.0, 0.0)
    assert (rows["beta_2"].j_mean, rows["beta_2"].j_recall, rows["beta_2"].j_decay) == (0.875, 1.0, 0.25)
    assert rows["alpha_1"].j_mean == pytest.approx(0.4)
    assert rows["alpha_1"].f_mean == pytest.approx(5 / 9)
    assert rows["alpha_1"].j_recall == pytest.approx(1 / 3)
    assert rows["alpha_1"].f_decay == pytest.approx(5 / 6)
    frames = {(r.sequence, r.object_id, r.frame): (r.j, r.f) for r in result.per_frame}
    assert len(frames) == 2 * 2 + 3                 # first and last frames are never scored
    assert frames[("beta", 2, "00002")] == (0.75, 1.0)
    assert frames[("alpha", 1, "00002")] == (pytest.approx(0.2), pytest.approx(2 / 3))
    assert frames[("alpha", 1, "00003")] == (0.0, 0.0)
    curves = result.curves("alpha")
    assert curves[1]["frames"] == ["00001", "00002", "00003"]
    assert curves[1]["J"] == pytest.approx([1.0, 0.2, 0.0])


def test_known_answer_csvs_byte_for_byte(known, tmp_path):
    root, results = known
    out = tmp_path / "csv"
    score_results(root, results, "val", out_dir=out, workers=1, progress=False)
    assert (out / "global_results-val.csv").read_bytes() == (
        b"J&F-Mean,J-Mean,J-Recall,J-Decay,F-Mean,F-Recall,F-Decay\n"
        b"0.805,0.758,0.778,0.283,0.852,0.889,0.278\n")
    assert (out / "per-sequence_results-val.csv").read_bytes() == (
        b"Sequence,J-Mean,F-Mean\nbeta_1,1.000,1.000\nbeta_2,0.875,1.000\nalpha_1,0.400,0.556\n")
    with open(out / "per-frame_results-val.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["Sequence", "Object", "Frame", "J", "F"]
    assert len(rows) == 1 + 7
    alpha_2 = next(r for r in rows if r[:3] == ["alpha", "1", "00002"])
    assert float(alpha_2[3]) == 3 / 15 and float(alpha_2[4]) == 2 * (8 / 12) * (8 / 12) / (16 / 12)   # full precision
    assert not list(out.glob("*.tmp"))


def test_parallel_equals_serial(known):
    root, results = known
    serial = score_results(root, results, "val", workers=1, progress=False)
    parallel = score_results(root, results, "val", workers=2, progress=False)
    assert parallel.global_metrics == serial.global_metrics
    assert parallel.per_frame == serial.per_frame


def test_greyscale_predictions_score_like_palette_ones(known):
    root, results = known
    before = score_results(root, results, "val", workers=1, progress=False)
    for path in (results / "beta").glob("*.png"):
        write_grey(path, np.array(Image.open(path)))
    after = score_results(root, results, "val", workers=1, progress=False)
    assert after.per_frame == before.per_frame


def test_sequences_argument_scores_a_subset_in_the_given_order(known):
    root, results = known
    result = score_results(root, results, "val", workers=1, progress=False, sequences=["alpha"])
    assert [row.name for row in result.per_sequence] == ["alpha_1"]
    assert result.global_metrics["J-Mean"] == pytest.approx(0.4)


# --------------------------------------------------------------------------------------
# sizes with different tolerance radii, against the per-frame path
# --------------------------------------------------------------------------------------

def test_sequences_of_different_sizes_use_their_own_radius(tmp_path):
    # 100x150 -> r = ceil(1.44) = 2 and 200x300 -> r = ceil(2.88) = 3
    rng = np.random.default_rng(5)
    root, results = tmp_path / "davis", tmp_path / "results"
    expected = {}
    for name, size in (("small", (100, 150)), ("large", (200, 300))):
        radius = tolerance_radius(*size)
        gt_frames, pred_frames = [], []
        for t in range(5):
            gt = np.zeros(size, np.uint8)
            for object_id in (1, 2):
                centre = (int(rng.integers(20, size[1] - 20)), int(rng.integers(20, size[0] - 20)))
                cv2.circle(gt, centre, int(rng.integers(5, 18)), object_id, -1)
            pred = np.roll(gt, (int(rng.integers(-4, 5)), int(rng.integers(-4, 5))), axis=(0, 1))
            write_mask(root / "Annotations" / "480p" / name / f"{t:05d}.png", gt)
            write_mask(results / name / f"{t:05d}.png", pred)
            gt_frames.append(gt)
            pred_frames.append(pred)
        for t in range(1, 4):
            j, f = frame_scores(gt_frames[t], pred_frames[t], [1, 2], radius)
            for index in range(2):
                expected[(name, index + 1, f"{t:05d}")] = (j[index], f[index])
    write_split(root, ["small", "large"])
    assert (tolerance_radius(100, 150), tolerance_radius(200, 300)) == (2, 3)
    result = score_results(root, results, "val", workers=1, progress=False)
    got = {(r.sequence, r.object_id, r.frame): (r.j, r.f) for r in result.per_frame}
    assert got == expected


# --------------------------------------------------------------------------------------
# DAVIS 2016: one object per sequence
# --------------------------------------------------------------------------------------

def test_year_2016_merges_objects_and_reads_binary_masks(tmp_path):
    root, results = tmp_path / "davis", tmp_path / "results"
    gt = square((1, 3), (1, 3)) + square((1, 3), (5, 6), 2)     # two ids, one object in 2016
    for t in range(3):
        write_mask(root / "Annotations" / "480p" / "one" / f"{t:05d}.png", gt)
    write_grey(results / "one" / "00001.png", (gt > 0).astype(np.uint8) * 255)   # a 0/255 binary mask
    write_split(root, ["one"], year=2016)
    result = score_results(root, results, "val", year=2016, workers=1, progress=False)
    assert [row.name for row in result.per_sequence] == ["one_1"]
    assert (result.per_frame[0].j, result.per_frame[0].f) == (1.0, 1.0)


# --------------------------------------------------------------------------------------
# in-memory scoring for notebooks
# --------------------------------------------------------------------------------------

def test_per_frame_scores_on_arrays():
    sq = square((1, 3), (1, 3), 2)
    gt = np.stack([sq, sq, sq, sq]).astype(np.int64)
    gt[1, 4, 2] = 255                                            # void just below the square
    pred = np.stack([sq, sq, square((1, 3), (3, 5), 2), np.zeros(SIZE, np.uint8)])
    pred[1, 4, 2] = 2                                            # object 2 predicted on the void pixel
    curves = per_frame_scores(gt, pred)                          # objects 1..max(gt[0]) = 1, 2
    assert sorted(curves) == [1, 2]
    assert curves[1]["J"].tolist() == [1.0] * 4                  # absent and predicted absent
    # frame 1: void is background and is scored: J = 9 / 10 (it would be 1 if void were ignored)
    assert curves[2]["J"].tolist() == pytest.approx([1.0, 0.9, 0.2, 0.0])
    assert curves[2]["F"][[0, 2, 3]].tolist() == pytest.approx([1.0, 2 / 3, 0.0])
    only_two = per_frame_scores(gt, pred, object_ids=[2])
    assert list(only_two) == [2]
    with pytest.raises(ValueError, match="same"):
        per_frame_scores(gt, pred[:2])
    with pytest.raises(ValueError, match="integer"):
        per_frame_scores(gt.astype(np.float32), pred)


# --------------------------------------------------------------------------------------
# bad input: clear errors where the official code exits 0 or crashes (spec §9)
# --------------------------------------------------------------------------------------

def test_missing_prediction_frame_names_the_file(known):
    root, results = known
    (results / "alpha" / "00002.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"alpha.*00002\.png"):
        score_results(root, results, "val", workers=1, progress=False)


def test_id_above_the_first_frame_count_is_an_error(known):
    root, results = known
    write_mask(results / "alpha" / "00002.png", square((1, 3), (1, 3), 2))
    with pytest.raises(ValueError, match=r"alpha.*00002\.png.*object id 2.*1 object"):
        score_results(root, results, "val", workers=1, progress=False)


def test_255_in_a_prediction_is_an_error(known):
    root, results = known
    write_raw_palette(results / "alpha" / "00003.png", square((1, 3), (1, 3), 255))
    with pytest.raises(ValueError, match=r"00003\.png.*255"):
        score_results(root, results, "val", workers=1, progress=False)


def test_rgb_prediction_is_an_error(known):
    root, results = known
    Image.fromarray(np.zeros(SIZE + (3,), np.uint8), mode="RGB").save(results / "alpha" / "00001.png")
    with pytest.raises(ValueError, match=r"00001\.png.*RGB"):
        score_results(root, results, "val", workers=1, progress=False)


def test_size_mismatch_is_an_error(known):
    root, results = known
    write_mask(results / "alpha" / "00001.png", np.zeros((12, 16), np.uint8))
    with pytest.raises(ValueError, match=r"00001\.png.*16x12.*8x6"):
        score_results(root, results, "val", workers=1, progress=False)


def test_two_annotated_frames_are_an_error(tmp_path):
    root, results = tmp_path / "davis", tmp_path / "results"
    for t in range(2):
        write_mask(root / "Annotations" / "480p" / "short" / f"{t:05d}.png", square((1, 2), (1, 2)))
    (results / "short").mkdir(parents=True)
    write_split(root, ["short"])
    with pytest.raises(ValueError, match="short.*at least 3"):
        score_results(root, results, "val", workers=1, progress=False)


def test_missing_layout_parts_are_named(known, tmp_path):
    root, results = known
    with pytest.raises(FileNotFoundError, match="available splits for 2017: val"):
        score_results(root, results, "train", workers=1, progress=False)
    with pytest.raises(FileNotFoundError, match="results folder"):
        score_results(root, tmp_path / "nowhere", "val", workers=1, progress=False)
    (results / "beta" / "00001.png").rename(results / "beta_1.png")
    for path in (results / "beta").glob("*"):
        path.unlink()
    (results / "beta").rmdir()
    with pytest.raises(FileNotFoundError, match="sequence beta"):
        score_results(root, results, "val", workers=1, progress=False)


def test_unannotated_jpeg_frames_are_an_error(known):
    root, results = known
    images = root / "JPEGImages" / "480p" / "alpha"
    images.mkdir(parents=True)
    for t in range(6):                                         # 6 JPEGs, 5 annotations
        Image.fromarray(np.zeros(SIZE + (3,), np.uint8)).save(images / f"{t:05d}.jpg")
    with pytest.raises(ValueError, match="every frame must be annotated"):
        score_results(root, results, "val", workers=1, progress=False)


# --------------------------------------------------------------------------------------
# the command line
# --------------------------------------------------------------------------------------

def test_cli_scores_prints_and_replaces_stale_csvs(known, tmp_path, capsys):
    root, results = known
    out = tmp_path / "csv"
    out.mkdir()
    (out / "global_results-val.csv").write_text("J&F-Mean\n0.999\n")          # stale, must not be reused
    code = main(["score", "--davis", str(root), "--results", str(results), "--split", "val",
                 "--out", str(out), "--workers", "1"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "Global results for val" in printed and "0.805" in printed and "alpha_1" in printed
    assert (out / "global_results-val.csv").read_text().splitlines()[1].startswith("0.805,")
    assert {p.name for p in out.iterdir()} == {"global_results-val.csv", "per-sequence_results-val.csv",
                                               "per-frame_results-val.csv"}


def test_cli_default_output_is_the_results_folder(known, capsys):
    root, results = known
    assert main(["score", "--davis", str(root), "--results", str(results), "--workers", "1", "--global-only"]) == 0
    assert "alpha_1" not in capsys.readouterr().out
    header = (results / "global_results-val.csv").read_text().splitlines()[0]
    assert header == ",".join(GLOBAL_COLUMNS)


def test_cli_error_exits_nonzero_and_removes_stale_csvs(known, tmp_path, capsys):
    root, results = known
    out = tmp_path / "csv"
    out.mkdir()
    (out / "global_results-val.csv").write_text("J&F-Mean\n0.999\n")
    (results / "alpha" / "00003.png").unlink()
    code = main(["score", "--davis", str(root), "--results", str(results), "--out", str(out), "--workers", "1"])
    err = capsys.readouterr().err
    assert code == 1
    assert "00003.png" in err and "Traceback" not in err
    assert not (out / "global_results-val.csv").exists()
