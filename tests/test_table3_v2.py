"""scripts/table3_v2.py: the statistics of protocol v2 and its report, on synthetic per-video data.

The two-level bootstrap must count seeds (wider when seeds disagree, as wide as a video-only bootstrap when they
agree), Holm's correction must match a hand computation, the verdict rule must treat gains and costs alike, and
``report`` must regenerate everything from a CSV alone.
"""

import csv
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "table3_v2.py"


@pytest.fixture(scope="module")
def t3():
    spec = importlib.util.spec_from_file_location("table3_v2", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["table3_v2"] = module                         # dataclasses look their module up while defining
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("table3_v2", None)


def _width(t3, d, seed=0, resamples=4000):
    low, high = t3.percentile_interval(t3.hierarchical_bootstrap(d, resamples, np.random.default_rng(seed)))
    return high - low


def test_the_interval_widens_as_seeds_disagree(t3):
    rng = np.random.default_rng(1)
    videos = rng.normal(0, 4, size=60)                        # video-to-video spread of the paired difference
    noise = rng.normal(0, 1, size=(8, 60))
    widths = []
    for seed_sd in (0.0, 1.0, 3.0, 6.0):
        seeds = np.random.default_rng(2).normal(0, 1, size=8) * seed_sd
        widths.append(_width(t3, videos[None, :] + seeds[:, None] + noise))
    assert widths == sorted(widths)
    assert widths[-1] > 2.5 * widths[0]


def test_with_agreeing_seeds_the_interval_is_the_video_only_bootstrap(t3):
    rng = np.random.default_rng(3)
    per_video = rng.normal(1.0, 4, size=60)
    d = np.tile(per_video, (8, 1))                            # every seed gives every video the same difference
    hier = _width(t3, d)
    video_only = t3.percentile_interval(t3.video_bootstrap(per_video, 4000, np.random.default_rng(5)))
    assert hier == pytest.approx(video_only[1] - video_only[0], rel=0.1)
    # drawing videos afresh for every drawn seed (a nested design) would be about sqrt(8) times too narrow here
    nested_width = 2 * 1.96 * np.std(per_video) / np.sqrt(8 * 60)
    assert hier > 2 * nested_width


def test_holm_against_a_hand_computation(t3):
    # sorted: 0.005 x 4 = 0.02; 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04 -> raised to 0.06 (monotone)
    assert t3.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert t3.holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])           # capped at 1
    assert t3.holm([0.02]) == pytest.approx([0.02])                   # one test: unchanged
    assert t3.holm([]) == []


def test_the_verdict_rule_is_symmetric_for_gains_and_costs(t3):
    mirror = {"helps": "hurts", "hurts": "helps", "no evidence": "no evidence"}
    rng = np.random.default_rng(0)
    for low, high in [(0.1, 2.0), (-2.0, -0.1), (-1.0, 1.0), (0.0, 1.0), (-1.0, 0.0)] + \
            [tuple(sorted(rng.normal(0, 2, 2))) for _ in range(50)]:
        assert t3.verdict(-high, -low) == mirror[t3.verdict(low, high)]
    assert t3.verdict(0.0, 1.0) == "no evidence" and t3.verdict(-1.0, 0.0) == "no evidence"
    for estimate, p in [(1.0, 0.01), (1.0, 0.2), (0.5, 0.049)]:
        assert t3.holm_verdict(-estimate, p) == mirror[t3.holm_verdict(estimate, p)]
    # a whole comparison: b - a is exactly the mirror of a - b (same resamples), interval, p and verdict
    data = _synthetic(t3, effect=2.0, seeds=range(3), arms=("isvos", "no_qe"), splits=("lookalike",))
    ab = t3.compare(data, ("isvos", "default"), ("no_qe", "default"), "lookalike", resamples=500)
    ba = t3.compare(data, ("no_qe", "default"), ("isvos", "default"), "lookalike", resamples=500)
    assert ba["estimate"] == pytest.approx(-ab["estimate"])
    assert (ba["low"], ba["high"]) == pytest.approx((-ab["high"], -ab["low"]))
    assert ba["p"] == ab["p"] and ba["verdict"] == mirror[ab["verdict"]] and ab["verdict"] == "helps"


def test_bootstrap_p(t3):
    assert t3.bootstrap_p(np.ones(999)) == pytest.approx(2 / 1000)
    assert t3.bootstrap_p(np.array([-1.0, 1.0] * 500)) == 1.0


def _synthetic(t3, effect, seeds, arms, splits, conditions=("default",), videos=8, seed_sd=0.5, rng_seed=0):
    """data[(arm, seed, condition, split)] = {video: [(J, F), ...]} with ``effect`` points added to ISVOS."""
    rng = np.random.default_rng(rng_seed)
    base = {(split, v): rng.uniform(0.4, 0.8) for split in splits for v in range(videos)}
    data = {}
    for arm in arms:
        for s in seeds:
            shift = rng.normal(0, seed_sd) / 100
            for cond in conditions:
                for split in splits:
                    gain = effect / 100 if arm == "isvos" and cond == "default" else 0.0
                    data[(arm, s, cond, split)] = {
                        f"{split}-{v:03d}": [(min(1, base[(split, v)] + gain + shift + rng.normal(0, 0.01)),) * 2
                                             for _ in range(1 + v % 2)] for v in range(videos)}
    return data


def _write(path, data, t3):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(t3.CSV_COLUMNS)
        for (arm, seed, cond, split), videos in data.items():
            for video, objects in videos.items():
                for k, (j, fm) in enumerate(objects, start=1):
                    w.writerow([arm, seed, cond, split, video, k, f"{j:.6f}", f"{fm:.6f}"])


def _report(t3, tmp_path, csv_path, monkeypatch):
    out = tmp_path / "results.md"
    monkeypatch.setattr(sys, "argv", ["table3_v2.py", "report", "--from-csv", "--csv", str(csv_path), "--map-stats",
                                      str(tmp_path / "none.csv"), "--out", str(out), "--figure",
                                      str(tmp_path / "primary.png"), "--overview", str(tmp_path / "overview.png"),
                                      "--resamples", "300"])
    assert t3.main() == 0
    return out.read_text()


@pytest.mark.parametrize("effect, expected", [(6.0, "helps"), (-6.0, "hurts"), (0.0, "no evidence")])
def test_report_runs_on_a_small_synthetic_csv(t3, tmp_path, monkeypatch, effect, expected):
    arms = tuple(t3.ARMS)
    conditions = ("default", "maps_flattened", "maps_shuffled", "maps_other_frame", "memory_1", "memory_8")
    data = _synthetic(t3, effect, range(3), arms, ("lookalike", "val", "heldout"), conditions)
    _write(tmp_path / "per_video.csv", data, t3)
    text = _report(t3, tmp_path, tmp_path / "per_video.csv", monkeypatch)
    assert "## The primary question" in text
    primary = text.split("## The primary question")[1].split("##")[0]
    assert f"— {expected}**" in primary
    assert "provisional**: 3 of the protocol's 8 seeds" in primary
    assert "Holm" in text and text.count("(exploratory)") == len(t3.SECONDARY)
    assert "| does QE help on the other splits? | ISVOS − w/o QE | real | — | not run |" in text   # no real split
    assert "## Missing evaluations" in text and "isvos-7 default lookalike" in text
    for name in ("primary.png", "overview.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # everything comes from the CSV: rendering twice gives the same text
    assert _report(t3, tmp_path, tmp_path / "per_video.csv", monkeypatch) == text


def test_the_csv_is_checked(t3, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("arm,seed,split,video,J,F\nisvos,0,val,v,0.5,0.5\n")
    with pytest.raises(ValueError, match="bad.csv lacks the column"):
        t3.load_per_video(bad)


def test_collect_and_collect_v1_read_the_official_per_sequence_csvs(t3, tmp_path, monkeypatch):
    def per_sequence(path, rows):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("Sequence,J-Mean,F-Mean\n" + "".join(f"{s},{j},{f}\n" for s, j, f in rows))

    runs = tmp_path / "runs"
    per_sequence(t3.eval_dir(runs, "isvos", 0, "default", "lookalike") / "per-sequence_results-lookalike.csv",
                 [("lookalike-000_1", 0.5, 0.7), ("look_alike-001_2", 0.4, 0.6)])
    per_sequence(t3.eval_dir(runs, "no_qe", 3, "maps_flattened", "val") / "per-sequence_results-val.csv",
                 [("val-000_1", 0.1, 0.2)])                    # not a planned evaluation: not collected
    assert t3.collect(runs, tmp_path / "pv.csv", tmp_path / "stats.csv") == 2
    rows = list(csv.DictReader(open(tmp_path / "pv.csv")))
    assert [(r["arm"], r["seed"], r["condition"], r["split"], r["video"], r["object"], r["J"], r["F"]) for r in rows] == [
        ("isvos", "0", "default", "lookalike", "lookalike-000", "1", "0.5", "0.7"),
        ("isvos", "0", "default", "lookalike", "look_alike-001", "2", "0.4", "0.6")]
    # the earlier protocol's layout, its arm names mapped to these
    old = tmp_path / "old"
    per_sequence(old / "eval" / "full-1" / "val" / "per-sequence_results-val.csv", [("val-000_1", 0.9, 0.8)])
    per_sequence(old / "eval" / "full_no_instance_stage-2" / "heldout" / "per-sequence_results-heldout.csv",
                 [("heldout-004_3", 0.3, 0.2)])
    monkeypatch.setattr(sys, "argv", ["table3_v2.py", "collect-v1", "--runs", str(old), "--csv", str(tmp_path / "v1.csv")])
    assert t3.main() == 0
    data = t3.load_per_video(tmp_path / "v1.csv")
    assert data[("isvos", 1, "default", "val")] == {"val-000": [(0.9, 0.8)]}
    assert data[("no_instance", 2, "default", "heldout")] == {"heldout-004": [(0.3, 0.2)]}


def test_the_plan_puts_the_primary_question_first(t3, tmp_path):
    tasks = t3.plan_tasks(Path("data/world3"), tmp_path, Path("checkpoints/lite_instance.safetensors"))
    names = [t.name for t in tasks]
    assert len(names) == len(set(names))
    trains = [n for n in names if n.startswith("train-")]
    assert len(trains) == 8 * 2 + 3 * 3
    primary = [f"eval-{arm}-{s}-default-lookalike" for s in range(8) for arm in ("isvos", "no_qe")]
    last_primary = max(names.index(n) for n in primary)
    assert names[:4] == ["train-isvos-0", "eval-isvos-0-default-lookalike", "train-no_qe-0",
                         "eval-no_qe-0-default-lookalike"]
    assert all(names.index(n) > last_primary for n in names
               if n.startswith("eval-") and n not in primary)                    # other evaluations come after
    assert all(names.index(f"train-{a}-{s}") > last_primary for a in ("no_mpf", "no_qe_mpf", "no_instance")
               for s in range(3))
    probes = [n for n in names if n.startswith("probe-")]
    assert len(probes) == 3 * (8 + 3 + 3 + 3)
    by_name = {t.name: t for t in tasks}
    assert "--no-amp" in by_name["eval-isvos-0-default-val"].command
    assert by_name["eval-isvos-0-memory_2-val"].command[-2:] == ["--max-memory-frames", "2"]
    train = by_name["train-no_instance-0"].command
    assert "--init-instance" not in train and "--init-instance" in by_name["train-isvos-0"].command
    assert train[train.index("--main-iters") + 1] == "960" and train[:3] == ["nice", "-n", "19"]
    assert "--no-query-enhancement" in by_name["train-no_qe-5"].command
