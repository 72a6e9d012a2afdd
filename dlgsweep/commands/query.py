"""`dlgsweep query <results> "SQL"`: polars SQL over the trial rows, read-only.

The argparse front of `analysis.query.query` (tables, the read-only check, the formats).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from analysis.query import FORMATS, query, render
from dlgsweep.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "query",
        help="SQL over the trial rows (polars)",
        description=__doc__.splitlines()[0],
        epilog='example: dlgsweep query results "SELECT model, activation, avg(psnr_mean) '
        "FROM trials WHERE status = 'ok' GROUP BY ALL ORDER BY 3 DESC\"",
    )
    parser.add_argument("results", help="results folder or URI (s3://, gs://), or one sweep folder")
    parser.add_argument("sql", help="the query; table `trials` = all rows, one table per sweep")
    parser.add_argument("--format", choices=FORMATS, default="table")
    parser.add_argument("--out", help="write here instead of stdout")
    parser.add_argument("--images", action="store_true", help="include the PNG byte columns")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    frame = query(args.results, args.sql, images=args.images)
    data = render(frame, args.format)
    if args.out:
        Path(args.out).write_bytes(data)
    else:
        if args.format == "parquet" and sys.stdout.isatty():
            raise UserError("--format parquet is binary: give --out FILE or redirect stdout")
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    return 0
