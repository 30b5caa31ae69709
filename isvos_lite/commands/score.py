"""``isvos-lite score --davis ROOT --results DIR --split val [--out CSVDIR] [--year 2017|2016] [--workers N]``

Scores an existing results folder (any method's DAVIS palette PNGs, ``DIR/<sequence>/<frame>.png``)
with the official DAVIS J&F protocol (paper §4.1; :mod:`isvos_lite.eval.scorer`), prints the
global table and writes ``global_results-<split>.csv``, ``per-sequence_results-<split>.csv`` and
``per-frame_results-<split>.csv`` into CSVDIR (default: the results folder, as the official
script does). Results are always scored afresh: CSVs from an earlier run are replaced, never re-read.
CSVDIR may not be or lie inside the dataset's ground truth (or hold it), and one run at a time writes it.
"""

from __future__ import annotations

import time
from pathlib import Path


def add_arguments(parser) -> None:
    parser.add_argument("--davis", required=True, metavar="ROOT",
                        help="DAVIS folder with Annotations/<resolution>/ and ImageSets/<year>/")
    parser.add_argument("--results", required=True, metavar="DIR", help="results folder: DIR/<sequence>/<frame>.png")
    parser.add_argument("--split", default="val", help="split file in ImageSets/<year>/ (default: val)")
    parser.add_argument("--out", metavar="CSVDIR", default=None, help="where to write the CSVs (default: the results folder)")
    parser.add_argument("--year", type=int, choices=(2016, 2017), default=2017,
                        help="2017: multi-object (default); 2016: one object per sequence")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="processes scoring sequences in parallel (default: min(4, CPU count))")
    parser.add_argument("--resolution", default="480p", help="annotation resolution folder (default: 480p)")
    parser.add_argument("--sequences", nargs="+", default=None, metavar="SEQ",
                        help="score only these sequences instead of the whole split")
    parser.add_argument("--global-only", action="store_true", help="print only the global table, not one row per object")


def run(args) -> int:
    from isvos_lite.eval.scorer import csv_names, score_results
    from isvos_lite.outputs import check_apart, output_lock

    out_dir = Path(args.out) if args.out is not None else Path(args.results)
    root = Path(args.davis)
    check_apart(out_dir, "--out" if args.out is not None else "--results (where the CSVs go without --out)",
                {"--davis's ground truth": root / "Annotations", "--davis's frames": root / "JPEGImages",
                 "--davis's split lists": root / "ImageSets"})
    start = time.perf_counter()
    with output_lock(out_dir, "score"):
        result = score_results(args.davis, args.results, split=args.split, year=args.year, out_dir=out_dir,
                               workers=args.workers, sequences=args.sequences, resolution=args.resolution)
    seconds = time.perf_counter() - start
    print(result.format_table(per_sequence=not args.global_only))
    n_objects = len(result.per_sequence)
    n_frames = len(result.per_frame)
    print(f"scored {n_objects} objects, {n_frames} object-frames in {seconds:.1f} s")
    for name in csv_names(args.split).values():
        print(f"wrote {out_dir / name}")
    return 0
