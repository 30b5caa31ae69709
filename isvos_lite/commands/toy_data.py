"""``isvos-lite toy-data``: generate the procedural teaching world (DAVIS / COCO / YouTube-VOS formats).

Example::

    isvos-lite toy-data --out data/toy --seed 0
    isvos-lite toy-data --out data/tiny --videos 4 --frames 8 8 --height 64 --width 96
"""

from __future__ import annotations

import argparse

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
    parser.add_argument("--distractor-videos", type=int, default=None,
                        help=f"videos of the look-alike 'distractor' split (default {sizes.distractor})")
    parser.add_argument("--youtube-videos", type=int, nargs=2, default=None, metavar=("TRAIN", "VALID"),
                        help=f"YouTube-VOS export sizes (default {sizes.youtube_train} {sizes.youtube_valid})")
    parser.add_argument("--no-youtube", action="store_true", help="skip the YouTube-VOS export")
    parser.add_argument("--height", type=int, default=defaults.height, help=f"frame height (default {defaults.height})")
    parser.add_argument("--width", type=int, default=defaults.width, help=f"frame width (default {defaults.width})")
    parser.add_argument("--frames", type=int, nargs=2, default=(defaults.min_frames, defaults.max_frames),
                        metavar=("MIN", "MAX"), help=f"frames per video (default {defaults.min_frames} {defaults.max_frames})")
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
    parser.add_argument("--coco-every", type=int, default=sizes.coco_every,
                        help=f"every n-th frame becomes a COCO image (default {sizes.coco_every})")
    parser.add_argument("--jpeg-quality", type=int, default=85, help="JPEG quality of the frames (default 85)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    config = WorldConfig(
        height=args.height, width=args.width,
        min_frames=args.frames[0], max_frames=args.frames[1],
        min_objects=args.objects[0], max_objects=args.objects[1],
        min_radius=args.radius[0], max_radius=args.radius[1],
        max_speed=args.max_speed, max_spin_deg=args.max_spin,
        leave_probability=args.leave_probability,
    )
    sizes = WorldSizes.scaled(args.videos) if args.videos is not None else WorldSizes()
    if args.val_videos is not None:
        sizes.val = args.val_videos
    if args.distractor_videos is not None:
        sizes.distractor = args.distractor_videos
    if args.youtube_videos is not None:
        sizes.youtube_train, sizes.youtube_valid = args.youtube_videos
    sizes.coco_every = args.coco_every
    for name in ("val", "distractor", "youtube_train", "youtube_valid"):
        if getattr(sizes, name) < 0:
            raise ValueError(f"the number of {name} videos must be >= 0, got {getattr(sizes, name)}")
    if not 1 <= args.jpeg_quality <= 100:
        raise ValueError(f"--jpeg-quality must be in 1..100, got {args.jpeg_quality}")
    summary = generate_world(args.out, seed=args.seed, config=config, sizes=sizes, youtube=not args.no_youtube,
                             overwrite=args.overwrite, jpeg_quality=args.jpeg_quality, progress=not args.quiet)
    print(summary)
    return 0
