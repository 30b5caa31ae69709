"""The QE-health mechanism probes: maps flattened, shuffled across the queries, taken from another frame (§3.2).

Each probe must change the injected maps exactly as specified, leave the maps the encoder reports untouched, change
the key of a model whose key reads the maps, and, in a whole evaluation, be reset before every video.
"""

import csv
import json

import pytest
import torch

from isvos_lite.config import get_preset
from isvos_lite.eval.qe_health import (OTHER_FRAME_LAG, FlattenedMaps, MapProbe, OtherFrameMaps, ShuffledMaps,
                                       derangement, evaluate_with_probe, flattened_maps, make_probe, map_probe,
                                       probe_delta_jf)
from isvos_lite.model.isvos import ISVOS


def _maps(B=2, N=6, h=4, w=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(B, N, h, w, generator=g)


@pytest.fixture()
def loud_model():
    """A tiny QE model whose key projection reads the map channels loudly (random weights on them)."""
    torch.manual_seed(0)
    model = ISVOS(get_preset("tiny")).eval()
    model.key_encoder.key_proj.weight.data.normal_()
    return model


def test_flattened_maps_are_each_maps_spatial_mean_and_match_the_flatten_switch(loud_model):
    maps = _maps()
    flat = FlattenedMaps()(maps)
    assert flat.shape == maps.shape
    torch.testing.assert_close(flat, maps.mean(dim=(2, 3), keepdim=True).expand_as(maps))
    assert flat.flatten(2).std(-1).max() < 1e-7                       # no map says where anything is
    frames = torch.rand(1, 3, 64, 96)
    with flattened_maps(loud_model):
        by_switch = loud_model.encode_frame(frames).key
    with map_probe(loud_model, FlattenedMaps()):
        by_probe = loud_model.encode_frame(frames).key
    torch.testing.assert_close(by_probe, by_switch)


def test_derangement_moves_every_element():
    g = torch.Generator().manual_seed(0)
    for n in (2, 3, 8, 16):
        for _ in range(50):
            perm = derangement(n, g)
            assert sorted(perm.tolist()) == list(range(n))
            assert not (perm == torch.arange(n)).any()
    with pytest.raises(ValueError, match="at least 2"):
        derangement(1, g)


def test_shuffled_maps_permute_whole_maps_across_queries_never_in_place_and_anew_each_frame():
    maps = _maps(B=3, N=8)
    probe = ShuffledMaps(seed=0)
    probe.reset("video-a")
    out = probe(maps)
    perm = probe.last_permutation                                       # (B, N)
    for b in range(3):
        for n in range(8):
            torch.testing.assert_close(out[b, n], maps[b, perm[b, n]])    # whole maps, spatially intact
        assert not (perm[b] == torch.arange(8)).any()                     # no map keeps its query
    # the same set of maps per frame, only their query assignment changes
    torch.testing.assert_close(out.flatten(2).sort(dim=1).values, maps.flatten(2).sort(dim=1).values)
    # a new permutation in the next frame; the same sequence again after resetting to the same video
    second = probe(maps)
    assert not torch.equal(probe.last_permutation, perm)
    probe.reset("video-a")
    torch.testing.assert_close(probe(maps), out)
    torch.testing.assert_close(probe(maps), second)
    probe.reset("video-b")
    assert not torch.equal(probe(maps), out)
    with pytest.raises(ValueError, match="at least 2"):
        probe(_maps(N=1))


def test_other_frame_maps_are_those_of_lag_frames_earlier_and_frame_0_before_that():
    frames = [torch.full((1, 3, 2, 2), float(t)) for t in range(7)]     # frame t's maps hold the value t
    probe = OtherFrameMaps(lag=2)
    got = [float(probe(m)[0, 0, 0, 0]) for m in frames]
    assert got == [0, 0, 0, 1, 2, 3, 4]                                  # t - 2, frame 0's before frame 2
    probe.reset("next video")
    assert float(probe(frames[5])[0, 0, 0, 0]) == 5                      # a new video starts from its own frame 0
    with pytest.raises(ValueError, match="reset"):
        probe(torch.zeros(1, 3, 4, 4))                                   # another size without a reset
    # the maps handed in are stored as they were (later in-place changes of the caller do not leak in)
    probe = OtherFrameMaps(lag=1)
    m0 = torch.zeros(1, 2, 2, 2)
    probe(m0)
    m0 += 7
    assert float(probe(torch.ones(1, 2, 2, 2)).max()) == 0
    with pytest.raises(ValueError, match="lag"):
        OtherFrameMaps(lag=0)
    assert OtherFrameMaps().lag == OTHER_FRAME_LAG


def test_make_probe_and_the_context_manager(loud_model):
    assert isinstance(make_probe("flatten"), FlattenedMaps)
    assert isinstance(make_probe("shuffle", seed=3), ShuffledMaps) and make_probe("shuffle", seed=3).seed == 3
    assert make_probe("other_frame", lag=4).lag == 4
    with pytest.raises(ValueError, match="unknown probe"):
        make_probe("rotate")
    probe = ShuffledMaps()
    with map_probe(loud_model, probe):
        assert loud_model.key_encoder.map_probe is probe
    assert loud_model.key_encoder.map_probe is None
    with pytest.raises(ValueError, match="query enhancement"):
        with map_probe(ISVOS(get_preset("tiny", query_enhancement=False)), probe):
            pass


@pytest.mark.parametrize("name", ["flatten", "shuffle", "other_frame"])
def test_each_probe_changes_the_key_but_not_the_reported_maps(loud_model, name):
    frames = torch.rand(2, 3, 64, 96)
    first, second = frames[:1], frames[1:]
    plain = [loud_model.encode_frame(f) for f in (first, second)]
    probe = make_probe(name, lag=1)
    probe.reset("v")
    with map_probe(loud_model, probe):
        probed = [loud_model.encode_frame(f) for f in (first, second)]
    for p, q in zip(plain, probed):
        torch.testing.assert_close(q.key_extras["instance_maps"], p.key_extras["instance_maps"])
    # the second frame's key changes under every probe (other_frame: it gets the first frame's maps)
    assert not torch.allclose(probed[1].key, plain[1].key, atol=1e-5)
    if name == "other_frame":                                           # frame 0 keeps its own maps
        torch.testing.assert_close(probed[0].key, plain[0].key)
        # and frame 1's key is the one computed from frame 0's maps, by hand
        enc = loud_model.key_encoder
        maps0 = plain[0].key_extras["instance_maps"]
        by_hand = enc.key_proj(torch.cat([plain[1].key_extras["Q_g"], maps0], 1))
        torch.testing.assert_close(probed[1].key, by_hand)


# --- whole evaluations on a tiny generated world -----------------------------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from isvos_lite.data.export import WorldSizes, generate_world
    from isvos_lite.data.world import WorldConfig
    root = tmp_path_factory.mktemp("probe_world") / "toy"
    config = WorldConfig(height=64, width=96, min_frames=6, max_frames=7, eval_min_frames=6, eval_max_frames=7,
                         max_objects=2)
    generate_world(root, seed=0, config=config,
                   sizes=WorldSizes(train=1, val=2, lookalike=1, heldout=1, youtube_train=1, youtube_valid=1,
                                    coco_train=2, coco_val=2), youtube=False, progress=False)
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from isvos_lite.checkpoint import save_checkpoint
    torch.manual_seed(0)
    model = ISVOS(get_preset("tiny"))
    model.key_encoder.key_proj.weight.data.normal_()
    return save_checkpoint(model, tmp_path_factory.mktemp("probe_ckpt") / "tiny.safetensors")


def _per_object(folder, split):
    with open(folder / f"per-sequence_results-{split}.csv") as f:
        return {r["Sequence"]: (float(r["J-Mean"]), float(r["F-Mean"])) for r in csv.DictReader(f)}


def test_evaluate_without_probe_equals_isvos_lite_eval_and_probes_are_reset_per_video(world, checkpoint, tmp_path):
    from isvos_lite.checkpoint import load_checkpoint
    from isvos_lite.cli import main

    assert main(["eval", "--checkpoint", str(checkpoint), "--davis", str(world), "--split", "val", "--out",
                 str(tmp_path / "eval"), "--no-amp", "--device", "cpu", "--workers", "1", "--threads", "1"]) == 0
    model = load_checkpoint(checkpoint)
    options = dict(mem_every=5, max_memory_frames=16, top_k=20, max_internal_size=480, device="cpu", amp=False)
    evaluate_with_probe(model, world, "val", None, tmp_path / "none", **options)
    assert _per_object(tmp_path / "none", "val") == _per_object(tmp_path / "eval", "val")

    class Recording(OtherFrameMaps):
        def reset(self, video=None):
            super().reset(video)
            self.videos = getattr(self, "videos", []) + [video]

    probe = Recording(lag=2)
    evaluate_with_probe(model, world, "val", probe, tmp_path / "other", **options)
    from isvos_lite.data.sequences import davis_sequences
    assert probe.videos[1:] == [s.name for s in davis_sequences(world, "val")]   # [0]: the constructor's reset
    assert set(_per_object(tmp_path / "other", "val")) == set(_per_object(tmp_path / "eval", "val"))
    assert model.key_encoder.map_probe is None                          # the model is left as it was


def test_probe_delta_jf_and_the_cli(world, checkpoint, tmp_path, capsys):
    from isvos_lite.checkpoint import load_checkpoint
    from isvos_lite.cli import main

    model = load_checkpoint(checkpoint)
    result = probe_delta_jf(model, world, "val", "shuffle")
    assert set(result) >= {"probe", "jf", "jf_probed", "delta_jf", "videos"} and result["videos"] == 2
    assert result["delta_jf"] == pytest.approx(result["jf_probed"] - result["jf"])
    out = tmp_path / "health.json"
    assert main(["qe-health", "--checkpoint", str(checkpoint), "--davis", str(world), "--splits", "val",
                 "--probes", "flatten", "shuffle", "other_frame", "--lag", "2", "--stat-videos", "2", "--json",
                 "--out", str(out)]) == 0
    entry = json.loads(out.read_text())["splits"]["val"]
    assert set(entry["probes"]) == {"flatten", "shuffle", "other_frame"}
    assert entry["delta_jf"] == entry["probes"]["flatten"]["delta_jf"]        # the keys it always wrote
    assert len({p["jf"] for p in entry["probes"].values()}) == 1             # one as-trained J&F for all probes
    capsys.readouterr()
    assert main(["qe-health", "--checkpoint", str(checkpoint), "--davis", str(world), "--probes", "rotate"]) != 0
    assert "--probes: unknown probe(s) ['rotate']" in capsys.readouterr().err
    assert main(["qe-health", "--checkpoint", str(checkpoint), "--davis", str(world), "--lag", "0"]) != 0
    assert "--lag must be >= 1" in capsys.readouterr().err


def test_map_probe_base_class_is_abstract():
    with pytest.raises(NotImplementedError):
        MapProbe()(_maps())
