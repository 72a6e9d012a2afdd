"""`dlgsweep report <results>/<sweep> [<results>/<sweep> ...] --out DIR`: charts, findings,
gallery and an explorer, of one sweep or of several side by side.

Writes every chart as standalone HTML (interactive, JavaScript inline: works offline) and PNG,
DIR/index.html showing them all with the findings table (one verdict column per sweep), the
protocol notes, the counts and the gallery, and DIR/explorer.html (every trial; a click shows
its images and convergence curve). With several sweeps each chart has one row of panels per
sweep. Works on a partial sweep; error rows are excluded and counted.
"""

from __future__ import annotations

import argparse

from dlgsweep.errors import UserError

SCORES = ("psnr_mean", "psnr_raw_mean")  # = analysis.findings.SCORES (no polars import here)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report",
        help="charts (HTML + PNG), findings, gallery and explorer of one or more sweeps",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument(
        "sweeps", nargs="+", metavar="sweep",
        help="a sweep folder or URI, <results>/<sweep>; several: side by side",
    )  # fmt: skip
    parser.add_argument("--out", required=True, help="folder for index.html and the charts")
    parser.add_argument(
        "--score", default="psnr_mean", choices=SCORES,
        help="the score the findings test: psnr_mean (clamped, matched; default) or "
        "psnr_raw_mean (the seed study's: unclamped, unmatched)",
    )  # fmt: skip
    parser.add_argument("--png-scale", type=float, default=1.5, help="PNG pixel scale (1.5)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from analysis.report import build_report

    try:
        report = build_report(args.sweeps, args.out, png_scale=args.png_scale, score=args.score)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise UserError(str(exc)) from None
    drawn = [c for c in report.charts if not c.skipped]
    print(f"report: {report.out / 'index.html'}")
    sweeps = report.sweeps
    for part in sweeps.values():
        counts = part.counts
        status = counts["by_status"]
        name = f"{part.sweep}: " if len(sweeps) > 1 else ""
        print(
            f"{name}rows: {counts['rows']} (ok {status.get('ok', 0)}, diverged "
            f"{status.get('diverged', 0)}, error {status.get('error', 0)} excluded)"
        )
        if "expected" in counts:
            print(f"{name}trials present: {counts['expected'] - counts['missing']} of "
                  f"{counts['expected']}")  # fmt: skip
        for variant, by in counts.get("variants", {}).items():
            rows = ", ".join(f"{n} {s}" for s, n in sorted(by.items()))
            print(f"  {part.sweep}/{variant}: {rows}")
    print(f"charts: {len(drawn)} drawn, {len(report.charts) - len(drawn)} skipped")
    for chart in report.charts:
        if chart.skipped:
            print(f"  skipped {chart.name}: {chart.skipped}")
    print(f"explorer: {report.out / 'explorer.html'} ({report.explorer_rows} trials)")
    if len(report.parts) > 1:
        print(f"  verdicts: [{' | '.join(p.name for p in report.parts)}]")
    from analysis.report import not_tested

    untested = not_tested(report.parts)
    for i, finding in enumerate(report.parts[0].findings):
        if finding.key in untested:
            continue
        verdicts = " | ".join(p.findings[i].verdict for p in report.parts)
        print(f"  [{verdicts}] {finding.claim}")
    if untested:
        print("  not tested by this sweep: " + ", ".join(untested))
    for found in report.frontiers:
        outcomes = found.table["outcome"].value_counts(sort=True).iter_rows()
        print(
            f"frontier {found.sweep}: {found.table.height} cells of {found.search.axis} ("
            + ", ".join(f"{n} {o}" for o, n in outcomes)
            + f"): {report.out / 'frontier.csv'}"
        )
        for label, items in found.findings.items():
            for finding in items:
                print(f"  [{finding.verdict}] {label}: {finding.claim}")
    return 0
