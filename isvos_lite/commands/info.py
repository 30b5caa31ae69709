"""``isvos-lite info --preset P [--json]``: the architecture of a preset and its parameters per component."""

from __future__ import annotations

import json

from isvos_lite.config import PRESETS, get_preset

COMPONENTS = [
    ("backbone", "shared ResNet backbone (res2-res5)", "§3"),
    ("pixel_decoder", "pixel decoder: deformable encoder + FPN -> P (s32, s16, s8), F_pixel", "§3.1"),
    ("transformer_decoder", "masked-attention transformer decoder + object queries + IS head", "§3.1, Eq. (1)"),
    ("key_encoder", "Enhanced Key Encoder (Q_g, deformable attention, injection, key projection)", "§3.2, Eq. (2)"),
    ("value_encoder", "value encoder (ResNet on image + masks, fused with res4, CBAM)", "§3.2"),
    ("decoder", "VOS decoder with Multi-Path Fusion", "§3.3, Eq. (4)"),
]


def count_parameters(model) -> dict:
    rows = {}
    for name, _, _ in COMPONENTS:
        module = getattr(model, name)
        rows[name] = sum(p.numel() for p in module.parameters())
    # the IS head's class layer (K+1 logits per query) is the only part unused at inference (§3.3);
    # it lives in transformer_decoder.instance_head next to the mask MLP, which inference does use
    class_embed = model.transformer_decoder.instance_head.class_embed
    rows["total"] = sum(p.numel() for p in model.parameters())
    rows["training_only_class_head"] = sum(p.numel() for p in class_embed.parameters())
    return rows


def add_arguments(parser) -> None:
    parser.add_argument("--preset", default="lite", choices=sorted(PRESETS), help="model preset (default: lite)")
    parser.add_argument("--no-query-enhancement", action="store_true", help="the Table 3 'w/o QE' variant")
    parser.add_argument("--no-multi-path-fusion", action="store_true", help="the Table 3 'w/o MPF' variant")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args) -> int:
    from isvos_lite.model.isvos import ISVOS

    cfg = get_preset(args.preset, query_enhancement=not args.no_query_enhancement,
                     multi_path_fusion=not args.no_multi_path_fusion)
    model = ISVOS(cfg)
    counts = count_parameters(model)
    if args.json:
        print(json.dumps({"preset": cfg.name, "config": cfg.to_dict(), "params": counts}, indent=2))
        return 0
    print(f"preset {cfg.name!r}: ResNet-{cfg.backbone_depth} (width {cfg.backbone_width}), C_d={cfg.hidden_dim}, "
          f"N={cfg.num_queries} queries, {cfg.pixel_decoder_layers} pixel-decoder / {cfg.decoder_layers} decoder layers, "
          f"C_k={cfg.key_dim}, C_v={cfg.value_dim}, QE={cfg.query_enhancement}, MPF={cfg.multi_path_fusion}")
    width = max(len(d) for _, d, _ in COMPONENTS)
    for name, desc, ref in COMPONENTS:
        print(f"  {desc:<{width}}  {ref:<14} {counts[name] / 1e6:9.3f} M")
    print(f"  {'total':<{width}}  {'':<14} {counts['total'] / 1e6:9.3f} M "
          f"({counts['total'] * 4 / 2**20:.1f} MiB in fp32)")
    return 0
