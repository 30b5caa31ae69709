"""The one command-line entry point, ``isvos-lite``, with a subcommand per job.

Each subcommand lives in its own module under ``isvos_lite/commands/`` and defines
``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported only when their
subcommand runs, so ``isvos-lite info`` does not pay for importing the notebook stack.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "toy-data": ("isvos_lite.commands.toy_data", "generate the procedural teaching world (DAVIS / COCO / YouTube-VOS formats)"),
    "train": ("isvos_lite.commands.train", "train a preset (static pretraining and/or main training, joint IS + VOS)"),
    "predict": ("isvos_lite.commands.predict", "segment your own video from one first-frame mask"),
    "propose": ("isvos_lite.commands.propose", "the instance branch's object proposals on a frame (click one with predict --click)"),
    "eval": ("isvos_lite.commands.evaluate", "run a checkpoint on a DAVIS / YouTube-VOS split and score it"),
    "instance-ap": ("isvos_lite.commands.instance_ap", "instance-segmentation mask AP (COCO, pycocotools) of the IS branch"),
    "convert-mask": ("isvos_lite.commands.convert_mask", "turn a colour / grey / JPEG mask into a palette PNG of object ids"),
    "score": ("isvos_lite.commands.score", "score existing results with the DAVIS 2017 J&F metric"),
    "benchmark": ("isvos_lite.commands.benchmark", "time per-frame inference and peak memory for a preset"),
    "info": ("isvos_lite.commands.info", "parameter counts per component of a preset"),
    "demo": ("isvos_lite.commands.demo", "segment a teaching-world video with the shipped checkpoint"),
    "gallery": ("isvos_lite.commands.gallery", "draw a gallery figure of a generated dataset"),
    "qe-health": ("isvos_lite.commands.qe_health", "is query enhancement alive? the EKE maps' health and the J&F cost of flattening them"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; ``only`` imports just that subcommand's module (the others stay listed in --help)."""
    parser = argparse.ArgumentParser(
        prog="isvos-lite",
        description="ISVOS (Look Before You Match, CVPR 2023) in readable PyTorch: data, training, inference, evaluation.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if only is not None and name != only:
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name != module_name:
                raise
            continue
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(only=chosen if chosen in COMMANDS else None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    run = getattr(args, "_run", None)
    if run is None:
        print(f"isvos-lite: the '{args.command}' command is not available in this build", file=sys.stderr)
        return 2
    try:
        return int(run(args) or 0)
    except KeyboardInterrupt:
        print("isvos-lite: interrupted", file=sys.stderr)
        return 130
    except (FileNotFoundError, ValueError, NotADirectoryError, RuntimeError) as err:
        # errors raised by our own input checks carry their own "what to do"; no traceback wall
        print(f"isvos-lite {args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
