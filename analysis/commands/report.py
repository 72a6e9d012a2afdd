"""`dlgsweep report <results>/<sweep> --out DIR`: the study's charts, findings and gallery.

Writes every chart as standalone HTML (interactive, JavaScript inline: works offline) and PNG,
and DIR/index.html showing them all with the counts, the findings table and the gallery. Works
on a partial sweep; error rows are excluded and counted.
"""

from __future__ import annotations

import argparse

from workloads.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report",
        help="charts (HTML + PNG), findings and gallery of one sweep",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("sweep", help="one sweep folder or URI: <results>/<sweep>")
    parser.add_argument("--out", required=True, help="folder for index.html and the charts")
    parser.add_argument("--png-scale", type=float, default=1.5, help="PNG pixel scale (1.5)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from analysis.report import build_report

    try:
        report = build_report(args.sweep, args.out, png_scale=args.png_scale)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise UserError(str(exc)) from None
    drawn = [c for c in report.charts if not c.skipped]
    status = report.counts["by_status"]
    print(f"report: {report.out / 'index.html'}")
    print(
        f"rows: {report.counts['rows']} (ok {status.get('ok', 0)}, diverged "
        f"{status.get('diverged', 0)}, error {status.get('error', 0)} excluded)"
    )
    if "expected" in report.counts:
        print(f"trials present: {report.counts['expected'] - report.counts['missing']} of "
              f"{report.counts['expected']}")  # fmt: skip
    print(f"charts: {len(drawn)} drawn, {len(report.charts) - len(drawn)} skipped")
    for chart in report.charts:
        if chart.skipped:
            print(f"  skipped {chart.name}: {chart.skipped}")
    for finding in report.findings:
        print(f"  [{finding.verdict}] {finding.claim}")
    return 0
