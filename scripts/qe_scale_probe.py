"""Why flattening the EKE's maps changes nothing: how loud the injected channels are in the query key.

    python scripts/qe_scale_probe.py runs/table3/full-0/model.safetensors runs/table3/full_identity_sharp-0/model.safetensors

For each checkpoint with query enhancement, on 12 val frames of data/world (6 videos x 2 frames):
- the spatial standard deviation per channel of Q_g and of the injected channels (the maps, or the identity
  features I(x)), i.e. how much each half of Q_cat = [Q_g, injected] varies from pixel to pixel;
- the relative distance of the trained key projection's weights from their initial values (the model rebuilt with
  the run's seed, as the trainer builds it), on the Q_g channels and on the injected channels.
Numbers quoted in docs/DESIGN_NOTES.md §1.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from safetensors.torch import load_file

from isvos_lite.checkpoint import load_checkpoint, read_checkpoint_config
from isvos_lite.eval.qe_health import frames_of_split
from isvos_lite.model.isvos import ISVOS


def spatial_deviation(x: torch.Tensor) -> float:
    """RMS over (batch, channel, pixel) of x minus its per-channel spatial mean. x: (B, C, h, w)."""
    return float((x - x.mean(dim=(2, 3), keepdim=True)).pow(2).mean().sqrt())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--davis", default="data/world")
    parser.add_argument("--seed", type=int, default=None, help="the run's --seed (default: from the file name '-<seed>')")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    frames = frames_of_split(args.davis, "val", num_videos=6, per_video=2)          # (12, 3, H, W)
    for path in args.checkpoints:
        model = load_checkpoint(path).eval()
        encoder = model.key_encoder
        if not model.cfg.query_enhancement:
            print(f"{path}: no query enhancement, nothing injected")
            continue
        with torch.no_grad():
            feats = model.encode_frame(frames)
            out = encoder(feats.res4, feats.instance["queries"], feats.instance["query_pos"], feats.instance["pred_masks"])
            injected = out["instance_maps"]                                          # (B, N, h, w)
            if encoder.injection == "identity":
                injected = encoder.identity_features(injected, out["q_vos"])
        qg_dev, inj_dev = spatial_deviation(out["Q_g"]), spatial_deviation(injected)
        seed = args.seed
        if seed is None:
            run_name = Path(path).resolve().parent.name                                      # e.g. "full-0"
            if not run_name.rsplit("-", 1)[-1].isdigit():
                parser.error(f"cannot read the seed from the run folder {run_name!r} of {path}: pass --seed")
            seed = int(run_name.rsplit("-", 1)[-1])
        cfg, _ = read_checkpoint_config(path)
        torch.manual_seed(seed)
        initial = ISVOS(cfg).key_encoder.key_proj.weight.detach()                     # as the trainer builds it
        trained = load_file(path)["key_encoder.key_proj.weight"]
        C = cfg.hidden_dim
        change = [float((trained[:, part] - initial[:, part]).norm() / initial[:, part].norm())
                  for part in (slice(0, C), slice(C, None))]
        print(f"{path}: spatial deviation per channel Q_g {qg_dev:.3f}, injected {inj_dev:.3f} "
              f"(Q_g {qg_dev / inj_dev:.0f}x louder); key projection moved {100 * change[0]:.0f} % on Q_g, "
              f"{100 * change[1]:.0f} % on the injected channels")


if __name__ == "__main__":
    main()
