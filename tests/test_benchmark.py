"""``isvos-lite benchmark``: the numbers it prints are consistent and its FLOP count measures the real arithmetic."""

import json

import pytest
import torch

from isvos_lite.cli import main
from isvos_lite.commands.benchmark import PROFILED_MODULES, count_gflop_per_frame, synthetic_video
from isvos_lite.config import get_preset
from isvos_lite.inference import VideoSegmenter
from isvos_lite.model.isvos import ISVOS


def _benchmark_json(capsys, *extra):
    assert main(["benchmark", "--preset", "tiny", "--height", "64", "--width", "96", "--frames", "6", "--warmup", "1",
                 "--threads", "1", "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_flops_and_profile_add_up_and_bound_the_time(capsys):
    result = _benchmark_json(capsys, "--profile", "--flops")
    gflop = result["gflop_per_frame"]
    assert set(gflop) == set(PROFILED_MODULES) | {"memory read, aggregation, pre/post", "total"}
    assert all(value >= 0 for value in gflop.values())
    assert sum(v for k, v in gflop.items() if k != "total") == pytest.approx(gflop["total"], rel=1e-4)
    assert gflop["backbone"] > 0 and gflop["decoder"] > 0
    assert result["conv_ceiling_gflops"] > 0
    assert result["lower_bound_ms_per_frame"] == pytest.approx(1000 * gflop["total"] / result["conv_ceiling_gflops"],
                                                               rel=0.02, abs=0.1)
    profile = result["profile_ms_per_frame"]
    assert profile["total"] == pytest.approx(result["ms_per_frame"], abs=0.1)


def _gflop(model, height, width, frames=5):
    torch.manual_seed(0)
    segmenter = VideoSegmenter(model, mem_every=5, device="cpu", max_internal_size=None)
    video = synthetic_video(height, width, 2)
    frame, mask = next(video)
    segmenter.step(frame, mask)
    return count_gflop_per_frame(model, segmenter, [next(video)[0] for _ in range(frames)], PROFILED_MODULES)


def test_flop_count_follows_the_image_area_and_leaves_the_model_trainable():
    model = ISVOS(get_preset("tiny")).eval()
    small, large = _gflop(model, 64, 96), _gflop(model, 128, 192)
    # convolutions scale with the pixel count: 4x the area, 4x the backbone's arithmetic
    assert large["backbone"] == pytest.approx(4 * small["backbone"], rel=0.02)
    assert large["decoder"] == pytest.approx(4 * small["decoder"], rel=0.05)
    # the counter needs requires_grad off while it runs; it must be restored
    assert all(p.requires_grad for p in model.parameters())


def test_per_module_count_equals_counting_that_module_alone():
    """Once per frame the backbone sees the (already 32-aligned) frame: its share is exactly one backbone pass."""
    from torch.utils.flop_counter import FlopCounterMode

    model = ISVOS(get_preset("tiny")).eval()
    counted = _gflop(model, 64, 96, frames=3)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.backbone(torch.zeros(1, 3, 64, 96))
    assert counted["backbone"] == pytest.approx(counter.get_total_flops() / 1e9, rel=1e-4)


def test_amp_flag_sets_the_precision_and_flops_are_counted_in_either(capsys):
    """--amp / --no-amp reach the segmenter (the result names the precision), and --flops works under autocast too
    (counted in fp32: the same arithmetic in both)."""
    amp = _benchmark_json(capsys, "--amp", "--flops")
    fp32 = _benchmark_json(capsys, "--no-amp", "--flops")
    assert amp["precision"] == "bf16 autocast" and fp32["precision"] == "fp32"
    assert amp["gflop_per_frame"]["total"] == pytest.approx(fp32["gflop_per_frame"]["total"], rel=1e-6)


def test_speed_table_script_prints_both_precisions():
    """scripts/speed_table.py (the README's speed table) runs the benchmark in bf16 and fp32 and lays them side by side."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "speed_table.py"
    done = subprocess.run([sys.executable, str(script), "--preset", "tiny", "--height", "64", "--width", "96",
                           "--frames", "5", "--threads", "1"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    header = next(line for line in lines if line.startswith("| part"))
    assert "bf16" in header and "fp32" in header
    rows = {line.split("|")[1].strip(): line for line in lines if line.startswith("| ") and "---" not in line}
    assert {"backbone", "pixel_decoder", "decoder (MPF)", "total"} <= set(rows)
    total = [float(cell.replace(",", "")) for cell in rows["total"].strip("|").split("|")[1:]]
    assert total[0] > 0 and total[2] > 0 and total[4] > 0          # ms bf16, ms fp32, GFLOP per frame
    bad = subprocess.run([sys.executable, str(script), "--rounds", "0"], capture_output=True, text=True)
    assert bad.returncode != 0 and "--rounds" in bad.stderr
