"""How many CPU threads PyTorch should use, and one ``--threads`` option for the commands that run a model.

PyTorch starts one thread per core. On a machine where other jobs already keep the cores busy that
**oversubscribes** them: threads wait for each other and the CPU time itself grows (the demo took 10 s idle and
135–263 s beside two trainings on 2 cores). So the default here is ``min(cores, 4)`` minus the cores the other work
keeps busy (the 1-minute load average), and never less than one thread. ``ISVOS_LITE_THREADS`` overrides it for
notebooks and commands alike; ``--threads N`` overrides both.
"""

from __future__ import annotations

import os

ENV_VAR = "ISVOS_LITE_THREADS"
MAX_DEFAULT_THREADS = 4          # beyond this, inference at teaching sizes gains little on a CPU


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_threads(cores: int | None = None, load: float | None = None) -> int:
    """min(cores, 4), less the cores busy with other work (``os.getloadavg`` over a minute); at least 1."""
    cores = available_cores() if cores is None else cores
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):           # Windows has no load average
            load = 0.0
    free = cores - int(round(load))
    return max(1, min(cores, MAX_DEFAULT_THREADS, free))


def resolve_threads(requested: int | None = None, what: str = "--threads", how: str = "--threads N") -> tuple[int, str]:
    """(threads, why): ``requested`` (the option ``what``, set as ``how``), else ``$ISVOS_LITE_THREADS``, else
    :func:`default_threads`."""
    if requested is not None:
        source, value = what, requested
    elif os.environ.get(ENV_VAR):
        source, raw = ENV_VAR, os.environ[ENV_VAR]
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"{ENV_VAR}={raw!r} is not a whole number; set it to the CPU threads to use, e.g. 1")
    else:
        cores = available_cores()
        try:
            load = f", load {os.getloadavg()[0]:.1f}"
        except (AttributeError, OSError):
            load = ""
        return default_threads(), f"default: {cores} cores{load}; choose with {how} or {ENV_VAR}=N"
    if value < 1:
        raise ValueError(f"{source} must be >= 1 CPU thread, got {value}")
    return value, source


def use_threads(requested: int | None = None, what: str = "--threads", how: str = "--threads N") -> str:
    """Set PyTorch's CPU threads (see :func:`resolve_threads`); returns a one-line note of what was chosen."""
    import torch

    threads, why = resolve_threads(requested, what, how)
    torch.set_num_threads(threads)
    return f"torch threads: {threads} ({why})"


def add_threads_argument(parser) -> None:
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help=f"CPU threads for PyTorch (default: min(cores, {MAX_DEFAULT_THREADS}) less the cores "
                             f"other work keeps busy, at least 1; or ${ENV_VAR})")
