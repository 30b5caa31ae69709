"""``isvos-lite toy-data``: generate the procedural teaching world (DAVIS / COCO / YouTube-VOS formats).

Example::

    isvos-lite toy-data --out data/toy --seed 0
    isvos-lite toy-data --out data/tiny --videos 4 --frames 8 8 --eval-frames 8 8 --height 64 --width 96
"""

from __future__ import annotations

import argparse
import os

from isvos_lite.data.export import WorldSizes, generate_world
from isvos_lite.data.world import WorldConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = WorldConfig()
    sizes = WorldSizes()
    parser.add_argument("--out", required=True, help="output folder (DAVIS 2017 layout + coco/ + youtube/)")
    parser.add_argument("--seed", type=int, default=0, help="world seed; the same seed gives the same world (default 0)")
    parser.add_argument("--videos", type=int, default=None,
                        help=f"training videos (default {sizes.train}); the other splits scale with it unless given")
    parser.add_argument("--val-videos", type=int, default=None, help=f"validation videos (default {sizes.val})")
    parser.add_argument("--lookalike-videos", type=int, default=None,
                        help=f"videos of the 'lookalike' split: one annotated target, unannotated look-alikes "
                        f"(default {sizes.lookalike})")
    parser.add_argument("--heldout-videos", type=int, default=None,
                        help=f"videos of the 'heldout' split: textures, shapes, background, motion and lighting "
                        f"never seen in training (default {sizes.heldout})")
    parser.add_argument("--trainphoto-videos", type=int, default=None,
                        help=f"training videos dressed in real photographs, trainphoto-NNN in the train list "
                        f"(default {sizes.train_photo}, half of --videos)")
    parser.add_argument("--real-videos", type=int, default=None,
                        help=f"videos of the 'real' split: photographs training never uses, moved by a camera, with "
                        f"exact masks (default {sizes.real}, a quarter of --videos)")
    parser.add_argument("--train-lookalike-fraction", type=float, default=sizes.train_lookalike_fraction,
                        help=f"fraction of the training videos of the lookalike kind (default {sizes.train_lookalike_fraction})")
    parser.add_argument("--youtube-videos", type=int, nargs=2, default=None, metavar=("TRAIN", "VALID"),
                        help=f"YouTube-VOS export sizes (default {sizes.youtube_train} {sizes.youtube_valid})")
    parser.add_argument("--no-youtube", action="store_true", help="skip the YouTube-VOS export")
    parser.add_argument("--height", type=int, default=defaults.height, help=f"frame height (default {defaults.height})")
    parser.add_argument("--width", type=int, default=defaults.width, help=f"frame width (default {defaults.width})")
    parser.add_argument("--frames", type=int, nargs=2, default=(defaults.min_frames, defaults.max_frames),
                        metavar=("MIN", "MAX"),
                        help=f"frames per training video (default {defaults.min_frames} {defaults.max_frames})")
    parser.add_argument("--eval-frames", type=int, nargs=2, default=(defaults.eval_min_frames, defaults.eval_max_frames),
                        metavar=("MIN", "MAX"), help="frames per val / lookalike / heldout video "
                        f"(default {defaults.eval_min_frames} {defaults.eval_max_frames})")
    parser.add_argument("--objects", type=int, nargs=2, default=(defaults.min_objects, defaults.max_objects),
                        metavar=("MIN", "MAX"), help=f"objects per video (default {defaults.min_objects} {defaults.max_objects})")
    parser.add_argument("--radius", type=float, nargs=2, default=(defaults.min_radius, defaults.max_radius),
                        metavar=("MIN", "MAX"), help="object size: equal-area radius as a fraction of the frame height "
                        f"(default {defaults.min_radius} {defaults.max_radius})")
    parser.add_argument("--max-speed", type=float, default=defaults.max_speed,
                        help=f"largest motion per frame, fraction of the frame height (default {defaults.max_speed})")
    parser.add_argument("--max-spin", type=float, default=defaults.max_spin_deg,
                        help=f"largest rotation per frame in degrees (default {defaults.max_spin_deg})")
    parser.add_argument("--leave-probability", type=float, default=defaults.leave_probability,
                        help=f"chance an object may leave the frame and come back (default {defaults.leave_probability})")
    parser.add_argument("--coco-images", type=int, nargs=2, default=None, metavar=("TRAIN", "VAL"),
                        help="images of the COCO instance twin, coco/ (default "
                        f"{sizes.coco_train} {sizes.coco_val}, scaled with --videos)")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                        help="processes rendering videos; the output does not depend on it (default: 2, or 1 on one core)")
    parser.add_argument("--jpeg-quality", type=int, default=85, help="JPEG quality of the frames (default 85)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    config = WorldConfig(
        height=args.height, width=args.width,
        min_frames=args.frames[0], max_frames=args.frames[1],
        eval_min_frames=args.eval_frames[0], eval_max_frames=args.eval_frames[1],
        min_objects=args.objects[0], max_objects=args.objects[1],
        min_radius=args.radius[0], max_radius=args.radius[1],
        max_speed=args.max_speed, max_spin_deg=args.max_spin,
        leave_probability=args.leave_probability,
    )
    sizes = WorldSizes.scaled(args.videos) if args.videos is not None else WorldSizes()
    if args.val_videos is not None:
        sizes.val = args.val_videos
    if args.lookalike_videos is not None:
        sizes.lookalike = args.lookalike_videos
    if args.heldout_videos is not None:
        sizes.heldout = args.heldout_videos
    if args.trainphoto_videos is not None:
        sizes.train_photo = args.trainphoto_videos
    if args.real_videos is not None:
        sizes.real = args.real_videos
    if args.youtube_videos is not None:
        sizes.youtube_train, sizes.youtube_valid = args.youtube_videos
    if args.coco_images is not None:
        sizes.coco_train, sizes.coco_val = args.coco_images
    sizes.train_lookalike_fraction = args.train_lookalike_fraction
    sizes.__post_init__()    # re-check the counts after the overrides (names the bad one)
    if not 1 <= args.jpeg_quality <= 100:
        raise ValueError(f"--jpeg-quality must be in 1..100, got {args.jpeg_quality}")
    summary = generate_world(args.out, seed=args.seed, config=config, sizes=sizes, youtube=not args.no_youtube,
                             overwrite=args.overwrite, jpeg_quality=args.jpeg_quality, progress=not args.quiet,
                             workers=args.workers)
    print(summary)
    return 0
