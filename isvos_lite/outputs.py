"""Output folders that never cost a user anything: inputs kept apart, one run per folder, own files recognised.

Every command that writes a folder (``predict``, ``eval``, ``score``, ``train``) goes through three rules:

* :func:`check_apart` — an ``--out`` that *is*, *holds* or *lies inside* one of the command's inputs (a frames
  folder, a mask, a dataset root with its ground truth) is refused before anything is written. ``--overwrite``
  never changes that, and the message never offers it.
* :func:`output_lock` — one run per output folder. The lock is an ``flock`` on a hidden file next to the folder
  (``.<name>.lock``), so it is released by the operating system when its process ends in any way (even
  ``kill -9``): a second run fails at once with a message naming the first (command, process id, start time,
  host) instead of deleting its temporary files and mixing two results.
* :class:`Manifest` — a folder a command writes holds ``.isvos-lite-outputs.json``, the list of the files that
  command wrote. ``--overwrite`` replaces only those; a file the user put there stays, and a folder without a
  manifest is not the command's to replace.

The file-level writes themselves are atomic (``isvos_lite.atomic``).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from isvos_lite.atomic import atomic_write_text

__all__ = ["check_apart", "output_lock", "OutputBusy", "Manifest", "MANIFEST_NAME", "lock_path", "remove_if_empty"]

MANIFEST_NAME = ".isvos-lite-outputs.json"
MANIFEST_FORMAT = "isvos-lite-outputs"


# ---------------------------------------------------------------------------------------------- inputs vs outputs
def _resolved(path: str | os.PathLike) -> Path:
    return Path(os.path.abspath(os.path.expanduser(os.fspath(path)))).resolve()


def check_apart(out: str | os.PathLike, out_option: str, inputs: dict[str, str | os.PathLike | None]) -> None:
    """Raise ValueError when ``out`` is, holds or lies inside one of ``inputs`` ({option: path}; None skipped).

    Writing there could replace or delete what the user gave the command (their frames, masks, ground truth),
    so no option lifts the refusal.
    """
    target = _resolved(out)
    for option, path in inputs.items():
        if path is None:
            continue
        source = _resolved(path)
        if target == source:
            relation = "is"
        elif source.is_relative_to(target):
            relation = "holds"
        elif target.is_relative_to(source):
            relation = "lies inside"
        else:
            continue
        raise ValueError(f"{out_option} {out} {relation} {option} {path}: writing there could replace or delete "
                         f"your input. Choose an output folder outside {path} (e.g. a new folder next to it)")


# ---------------------------------------------------------------------------------------------- one run per folder
class OutputBusy(ValueError):
    """Another isvos-lite run holds the lock of this output folder."""


def lock_path(folder: str | os.PathLike) -> Path:
    """The hidden lock file of ``folder``: ``<parent>/.<name>.lock`` (outside the folder, which may be swapped)."""
    folder = _resolved(folder)
    return folder.parent / f".{folder.name or 'root'}.lock"


def _describe_holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, json.JSONDecodeError):
        info = {}
    if not info:
        return "another isvos-lite run (starting up)"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("started", 0)))
    return (f"another isvos-lite run ({info.get('command', '?')}, pid {info.get('pid', '?')} on "
            f"{info.get('host', '?')}, started {started})")


@contextmanager
def output_lock(folder: str | os.PathLike, command: str, option: str = "--out"):
    """Hold the lock of ``folder`` for the block; raise :class:`OutputBusy` at once if another run holds it."""
    path = lock_path(folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = _acquire(path, folder, command, option)
    try:
        yield path
    finally:
        try:
            path.unlink(missing_ok=True)        # still holding the lock: nobody else can be between open and lock
        except OSError:
            pass
        _release(handle)


def _acquire(path: Path, folder, command: str, option: str):
    while True:
        handle = open(path, "a+")
        if not _try_lock(handle):
            handle.close()
            raise OutputBusy(f"{option} {folder} is being written by {_describe_holder(path)}; wait for it to "
                             f"finish, stop it, or choose another {option}")
        # the file may have been unlinked by the previous holder between our open and our lock: then retry
        try:
            same = os.fstat(handle.fileno()).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        _release(handle)
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps({"command": command, "pid": os.getpid(), "host": socket.gethostname(),
                             "started": time.time()}))
    handle.flush()
    return handle


if sys.platform == "win32":                                   # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(handle) -> bool:
        try:
            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False

    def _release(handle) -> None:
        try:
            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
        except OSError:
            pass
        handle.close()
else:
    import fcntl

    def _try_lock(handle) -> bool:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def _release(handle) -> None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        handle.close()


def remove_if_empty(folder: str | os.PathLike) -> None:
    """Remove ``folder`` if it exists and is empty (a refused or failed run leaves no empty output folder)."""
    try:
        Path(folder).rmdir()
    except OSError:
        pass


# ---------------------------------------------------------------------------------------------- own files
@dataclass
class Manifest:
    """The files a command wrote into a folder (``MANIFEST_NAME`` inside it); names are relative to the folder.

    ``complete`` is False while a replacement is under way, so that a reader never takes a folder caught half-way
    through ``--overwrite`` for a finished result.
    """

    command: str
    files: list[str] = field(default_factory=list)
    complete: bool = True

    @staticmethod
    def path(folder: str | os.PathLike) -> Path:
        return Path(folder) / MANIFEST_NAME

    @classmethod
    def read(cls, folder: str | os.PathLike) -> "Manifest | None":
        """The folder's manifest, or None when it has none (or an unreadable one: then it is not known as ours)."""
        path = cls.path(folder)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
            return None
        return cls(str(data.get("command", "")), [str(f) for f in data.get("files", [])], bool(data.get("complete")))

    def write(self, folder: str | os.PathLike) -> None:
        atomic_write_text(self.path(folder), json.dumps({"format": MANIFEST_FORMAT, "command": self.command,
                                                         "complete": self.complete, "files": sorted(self.files)},
                                                        indent=1))

    def foreign(self, folder: str | os.PathLike) -> list[str]:
        """Entries of ``folder`` (top level) that this manifest does not list: the user's, never to be touched."""
        own = set(self.files) | {MANIFEST_NAME}
        return sorted(p.name for p in Path(folder).iterdir() if p.name not in own)


def foreign_entries(folder: str | os.PathLike) -> list[str]:
    """Entries of ``folder`` that no isvos-lite manifest there accounts for (all of them without a manifest)."""
    manifest = Manifest.read(folder)
    if manifest is None:
        return sorted(p.name for p in Path(folder).iterdir())
    return manifest.foreign(folder)
