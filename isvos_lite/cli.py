"""The one command-line entry point, ``isvos-lite``, with a subcommand per job.

Each subcommand lives in its own module under ``isvos_lite/commands/`` and defines
``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported only when their
subcommand runs, so ``isvos-lite info`` does not pay for importing the notebook stack.

Every command ends in one of three ways: its own output and exit 0; one line ``isvos-lite COMMAND: error: ...``
and exit 1 for bad input and for the operating system refusing a write (a full disk, no permission, a read-only
file system: :func:`os_error_message`); or, when stopped by Ctrl-C (exit 130) or ``kill`` / SIGTERM (exit 143),
one line saying so. Stopping unwinds the command like an error, so its work folders are removed and its
temporary files deleted: nothing half-written is left where a finished result would be.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import signal
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


class Terminated(BaseException):
    """Raised in the main thread when the process receives SIGTERM (like KeyboardInterrupt for SIGINT)."""


def _terminate(signum, frame) -> None:
    if os.getpid() != _terminate.pid:            # a forked worker (DataLoader): die as SIGTERM would make it
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        return
    raise Terminated()


_terminate.pid = os.getpid()


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def os_error_message(err: OSError) -> str:
    """One line for an error the operating system reported (errno known), saying what to do."""
    where = f" ({err.filename})" if err.filename else ""
    code = err.errno
    if code == errno.ENOSPC:
        return (f"no space left on device{where}: free some space or choose an output on another disk, then rerun "
                "the same command (what was finished is kept complete, and it resumes where it can)")
    if code == getattr(errno, "EDQUOT", None):
        return f"disk quota exceeded{where}: free some space or choose an output elsewhere, then rerun the same command"
    if code in (errno.EACCES, errno.EPERM):
        return f"permission denied{where}: choose a folder you can write to (or fix its permissions) and rerun"
    if code == errno.EROFS:
        return f"read-only file system{where}: choose an output folder on a writable disk and rerun"
    if code == errno.EFBIG:
        return (f"file too large{where}: a file-size limit of this system or file system was reached (ulimit -f); "
                "raise it or write elsewhere, then rerun")
    name = errno.errorcode.get(code, "?") if code is not None else "?"
    return f"{err.strerror or err}{where} [{name}]: fix the cause and rerun the same command"


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
    previous = None
    try:
        _terminate.pid = os.getpid()
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:                       # not the main thread (e.g. called from a worker thread): leave it
        pass
    try:
        return int(run(args) or 0)
    except KeyboardInterrupt:
        print("isvos-lite: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print(f"isvos-lite {args.command}: terminated (SIGTERM); unfinished work was discarded and finished results "
              "are kept: rerun the same command to continue", file=sys.stderr)
        return 128 + signal.SIGTERM
    except (FileNotFoundError, ValueError, NotADirectoryError, RuntimeError) as err:
        # errors raised by our own input checks carry their own "what to do"; no traceback wall
        if isinstance(err, OSError) and err.errno is not None:
            print(f"isvos-lite {args.command}: error: {os_error_message(err)}", file=sys.stderr)
        else:
            print(f"isvos-lite {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 1
    except OSError as err:
        # a full disk, a permission or a read-only file system; outputs are written atomically, so none is half-done
        print(f"isvos-lite {args.command}: error: {os_error_message(err) if err.errno is not None else _one_line(err)}",
              file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
