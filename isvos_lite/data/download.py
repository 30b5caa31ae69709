"""Download the public datasets: official URLs, checksums, resumable atomic download, safe extraction.

Usage::

    python -m isvos_lite.data.download --list
    python -m isvos_lite.data.download davis2017-trainval-480p --root data/

Downloads go to ``<root>/downloads/<file>.part`` and are renamed to ``<file>`` only after the
checksum matched, so an interrupted download never looks complete; running the command again
resumes the ``.part`` file when the server supports HTTP ranges (and restarts it otherwise).
Archives are extracted into ``<root>`` through a temporary folder, refusing members that would
land outside it.

Checksums: where a checksum is not published by the dataset authors and we do not know it for
certain, the table stores ``None``; the computed MD5 is then printed after the download, so you
can pin it (``--md5``) for the next machine. YouTube-VOS, FSS-1000 and the STCN/XMem static bundle
are behind CodaLab / Google Drive logins and cannot be fetched by a script: see data/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

__all__ = ["DatasetArchive", "ARCHIVES", "file_checksum", "download", "extract", "fetch", "main"]


@dataclass(frozen=True)
class DatasetArchive:
    name: str
    url: str
    md5: str | None          # None: not published / not known for certain (printed after download)
    size_mib: int            # approximate, for the user's information
    note: str = ""

    @property
    def filename(self) -> str:
        return self.url.rstrip("/").split("/")[-1]


ARCHIVES: dict[str, DatasetArchive] = {a.name: a for a in [
    DatasetArchive("davis2017-trainval-480p", "https://data.vision.ee.ethz.ch/csergi/share/davis/DAVIS-2017-trainval-480p.zip",
                   None, 800, "DAVIS 2017 train + val, 480p (the standard evaluation resolution)"),
    DatasetArchive("davis2017-trainval-full", "https://data.vision.ee.ethz.ch/csergi/share/davis/DAVIS-2017-trainval-Full-Resolution.zip",
                   None, 3000, "DAVIS 2017 train + val, full resolution"),
    DatasetArchive("davis2017-test-dev-480p", "https://data.vision.ee.ethz.ch/csergi/share/davis/DAVIS-2017-test-dev-480p.zip",
                   None, 400, "DAVIS 2017 test-dev (first-frame masks only; scored on CodaLab)"),
    DatasetArchive("coco-train2017", "http://images.cocodataset.org/zips/train2017.zip",
                   "cced6f7f71b7629ddf16f17bbcfab6b2", 18440, "COCO 2017 training images"),
    DatasetArchive("coco-val2017", "http://images.cocodataset.org/zips/val2017.zip",
                   "442b8da7639aecaf257c1dceb8ba8c80", 780, "COCO 2017 validation images"),
    DatasetArchive("coco-annotations2017", "http://images.cocodataset.org/annotations/annotations_trainval2017.zip",
                   "f4bbac642086de4f52a3fdda2de5fa2c", 242, "COCO 2017 instances_*.json (and captions, keypoints)"),
    DatasetArchive("duts-tr", "http://saliencydetection.net/duts/download/DUTS-TR.zip",
                   None, 260, "DUTS training set (static pretraining, saliency masks)"),
    DatasetArchive("duts-te", "http://saliencydetection.net/duts/download/DUTS-TE.zip",
                   None, 140, "DUTS test set (used for static pretraining too)"),
    DatasetArchive("ecssd-images", "https://www.cse.cuhk.edu.hk/leojia/projects/hsaliency/data/ECSSD/images.zip",
                   None, 60, "ECSSD images (static pretraining)"),
    DatasetArchive("ecssd-masks", "https://www.cse.cuhk.edu.hk/leojia/projects/hsaliency/data/ECSSD/ground_truth_mask.zip",
                   None, 2, "ECSSD masks"),
]}


def file_checksum(path: str | os.PathLike, algorithm: str = "md5", chunk: int = 1 << 20) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, dest: str | os.PathLike, md5: str | None = None, progress: bool = True,
             timeout: float = 60.0, chunk: int = 1 << 16) -> Path:
    """Download ``url`` to ``dest`` (resuming ``dest.part``), verify ``md5``; returns ``dest``.

    An existing ``dest`` whose checksum matches is kept (no download). A checksum mismatch
    removes the partial file and raises ValueError naming both checksums.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        if md5 is None or file_checksum(dest) == md5.lower():
            return dest
        dest.unlink()   # a stale or corrupt file from an older run
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "isvos-lite"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:          # the part file is already complete
            response = None
        else:
            raise RuntimeError(f"download of {url} failed: HTTP {err.code} {err.reason}; check the URL or try again later") from err
    except (urllib.error.URLError, OSError) as err:
        raise RuntimeError(f"download of {url} failed ({err}); check your network connection (a partial file is kept in {part})") from err
    if response is not None:
        with response:
            resumed = offset and response.status == 206
            if not resumed:
                offset = 0                        # the server ignored the range: start again
            length = response.headers.get("Content-Length")
            total = offset + int(length) if length is not None else None
            with open(part, "ab" if resumed else "wb") as handle, \
                    tqdm(total=total, initial=offset, unit="B", unit_scale=True, desc=dest.name, disable=not progress) as bar:
                while True:
                    block = response.read(chunk)
                    if not block:
                        break
                    handle.write(block)
                    bar.update(len(block))
            if total is not None and part.stat().st_size != total:
                raise RuntimeError(f"download of {url} stopped at {part.stat().st_size} of {total} bytes; "
                                   "run the command again to resume")
    actual = file_checksum(part)
    if md5 is not None and actual != md5.lower():
        part.unlink()
        raise ValueError(f"checksum mismatch for {dest.name} from {url}: expected md5 {md5}, got {actual}; "
                         "the file was removed, run the command again (if it keeps failing the archive changed upstream)")
    os.replace(part, dest)
    if md5 is None:
        print(f"{dest.name}: md5 {actual} (no published checksum; pin it with --md5 {actual})")
    return dest


def _safe_members_zip(archive: zipfile.ZipFile, target: Path) -> None:
    for name in archive.namelist():
        if not (target / name).resolve().is_relative_to(target.resolve()):
            raise ValueError(f"archive member {name!r} would be written outside {target}; refusing to extract")


def extract(archive: str | os.PathLike, out_dir: str | os.PathLike) -> list[Path]:
    """Extract a .zip / .tar(.gz/.bz2/.xz) into ``out_dir`` atomically per top-level entry; returns them."""
    archive = Path(archive)
    out_dir = Path(out_dir)
    if not archive.exists():
        raise FileNotFoundError(f"archive {archive} does not exist")
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_dir, prefix=".extract-"))
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as handle:
                _safe_members_zip(handle, staging)
                handle.extractall(staging)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as handle:
                if hasattr(tarfile, "data_filter"):
                    handle.extractall(staging, filter="data")   # refuses absolute paths, links out, devices
                else:   # Python < 3.10.12 / 3.11.4: check the paths ourselves
                    for member in handle.getmembers():
                        if not (staging / member.name).resolve().is_relative_to(staging.resolve()) or member.islnk() or member.issym():
                            raise ValueError(f"archive member {member.name!r} of {archive} is unsafe; refusing to extract")
                    handle.extractall(staging)
        else:
            raise ValueError(f"{archive} is neither a zip nor a tar archive (corrupt download?); delete it and download again")
        placed = []
        for entry in sorted(staging.iterdir()):
            destination = out_dir / entry.name
            if destination.exists():
                if destination.is_dir() and entry.is_dir():
                    _merge_into(entry, destination)
                    placed.append(destination)
                    continue
                if destination.is_dir():
                    shutil.rmtree(destination)
                else:
                    destination.unlink()
            os.replace(entry, destination)
            placed.append(destination)
        return placed
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _merge_into(source: Path, destination: Path) -> None:
    """Move the contents of ``source`` into the existing folder ``destination`` (e.g. two DAVIS zips -> one DAVIS/)."""
    for entry in source.iterdir():
        target = destination / entry.name
        if target.exists() and target.is_dir() and entry.is_dir():
            _merge_into(entry, target)
        else:
            if target.exists():
                shutil.rmtree(target) if target.is_dir() else target.unlink()
            os.replace(entry, target)


def fetch(name: str, root: str | os.PathLike = "data", extract_archive: bool = True, md5: str | None = None,
          url: str | None = None, progress: bool = True) -> Path:
    """Download (and extract) one archive of :data:`ARCHIVES` into ``root``; returns the archive path."""
    if name not in ARCHIVES:
        raise ValueError(f"unknown dataset {name!r}; choose one of: {', '.join(ARCHIVES)}")
    entry = ARCHIVES[name]
    root = Path(root)
    path = download(url or entry.url, root / "downloads" / entry.filename, md5=md5 or entry.md5, progress=progress)
    if extract_archive:
        placed = extract(path, root)
        print(f"extracted {path.name} into {root}: {', '.join(p.name for p in placed)}")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m isvos_lite.data.download", description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="datasets to fetch (see --list)")
    parser.add_argument("--root", default="data", help="where archives are downloaded (root/downloads) and extracted (default data)")
    parser.add_argument("--list", action="store_true", help="list the known archives")
    parser.add_argument("--md5", default=None, help="expected MD5 (overrides the table; for one dataset)")
    parser.add_argument("--url", default=None, help="download from this mirror instead of the official URL (for one dataset)")
    parser.add_argument("--no-extract", action="store_true", help="only download")
    args = parser.parse_args(argv)
    if args.list or not args.names:
        for entry in ARCHIVES.values():
            checksum = entry.md5 or "md5 unknown (printed after download)"
            print(f"{entry.name:26s} ~{entry.size_mib:>6d} MiB  {checksum}\n{'':26s} {entry.url}\n{'':26s} {entry.note}")
        return 0
    if (args.md5 or args.url) and len(args.names) != 1:
        print("--md5 and --url apply to one dataset at a time", file=sys.stderr)
        return 2
    try:
        for name in args.names:
            fetch(name, args.root, extract_archive=not args.no_extract, md5=args.md5, url=args.url)
    except (ValueError, RuntimeError, FileNotFoundError) as err:
        print(f"download: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
