"""``isvos-lite qe-health``: is the Enhanced Key Encoder's query enhancement alive in a checkpoint? (§3.2)

Example::

    isvos-lite qe-health --checkpoint checkpoints/lite.safetensors --davis data/toy --splits val lookalike

Prints, per split, the injection maps' saturated fraction, their mutual correlation and their agreement with
each query's own predicted mask (``isvos_lite.eval.qe_health.map_statistics``), then J&F as trained and with every
map flattened to its spatial mean at inference (``flatten_delta_jf``). ``--probes flatten shuffle other_frame`` adds
the other mechanism probes (maps shuffled across the queries, maps of the frame ``--lag`` frames earlier;
``probe_delta_jf``). ``--no-jf`` skips the (slower) J&F part.
"""

from __future__ import annotations

import argparse
import json

import torch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="a model checkpoint (.safetensors) built with query enhancement")
    parser.add_argument("--davis", required=True, help="DAVIS-format root, e.g. data/toy")
    parser.add_argument("--splits", nargs="+", default=["val"], help="splits of ImageSets/2017 (default val)")
    parser.add_argument("--videos", type=int, default=None, help="videos per split (default: all)")
    parser.add_argument("--stat-videos", type=int, default=16, help="videos whose frames feed the map statistics")
    parser.add_argument("--no-jf", action="store_true", help="map statistics only, no J&F with flattened maps")
    parser.add_argument("--probes", nargs="+", default=["flatten"], metavar="PROBE",
                        help="map probes whose J&F change is measured: flatten (default), shuffle (maps permuted "
                             "across the queries in every frame), other_frame (maps of an earlier frame)")
    parser.add_argument("--lag", type=int, default=None, help="frames back for the other_frame probe (default 10)")
    parser.add_argument("--probe-seed", type=int, default=0, help="seed of the shuffle probe's permutations")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--out", default=None, help="also write the JSON to this file (atomically)")


def run(args: argparse.Namespace) -> int:
    from isvos_lite.atomic import atomic_write_text
    from isvos_lite.checkpoint import load_checkpoint
    from isvos_lite.eval.qe_health import OTHER_FRAME_LAG, PROBES, frames_of_split, map_statistics, probe_delta_jf

    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    unknown = [p for p in args.probes if p not in PROBES]
    if unknown:
        raise ValueError(f"--probes: unknown probe(s) {unknown}; choose among {list(PROBES)}")
    lag = OTHER_FRAME_LAG if args.lag is None else args.lag
    if lag < 1:
        raise ValueError(f"--lag must be >= 1 frame, got {lag}")
    model = load_checkpoint(args.checkpoint)
    if not model.cfg.query_enhancement:
        raise ValueError(f"--checkpoint {args.checkpoint} was trained without query enhancement: it has no injection "
                         "maps to check (pick the full model's checkpoint)")
    model.eval()
    report = {"checkpoint": str(args.checkpoint), "injection": model.cfg.qe_injection,
              "temperature": model.key_encoder.temperature, "splits": {}}
    for split in args.splits:
        entry = map_statistics(model, frames_of_split(args.davis, split, args.stat_videos))
        if not args.no_jf:
            trained, entry["probes"] = None, {}
            for name in dict.fromkeys(args.probes):
                result = probe_delta_jf(model, args.davis, split, name, args.videos, trained_jf=trained,
                                        seed=args.probe_seed, lag=lag)
                trained = result["jf"]
                entry["probes"][name] = result
                entry.update(jf=result["jf"], videos=result["videos"])
                if name == "flatten":                   # the keys this command has always written
                    entry.update(jf_flattened=result["jf_probed"], delta_jf=result["delta_jf"])
        report["splits"][split] = entry
        if not args.json:
            line = (f"{split}: saturated {100 * entry['qe_saturated']:.1f} %, map-map correlation "
                    f"{entry['qe_map_correlation']:.3f}, map-own-mask agreement {entry['qe_mask_agreement']:.3f}, "
                    f"key change when flattened {100 * entry['qe_key_change']:.1f} %, mean logit {entry['qe_logit_mean']:+.2f}")
            said = {"flatten": "flattened", "shuffle": "shuffled across the queries",
                    "other_frame": f"of the frame {lag} earlier"}
            for name, result in entry.get("probes", {}).items():
                line += (f"; J&F {result['jf']:.2f} -> {result['jf_probed']:.2f} with the maps {said[name]} "
                         f"(Δ {result['delta_jf']:+.2f}, {result['videos']} videos)")
            print(line, flush=True)
    text = json.dumps(report, indent=2)
    if args.json:
        print(text)
    if args.out:
        atomic_write_text(args.out, text + "\n")
    return 0
