"""The HTML report of one or several sweeps: every chart as HTML and PNG, findings, an explorer.

`build_report(paths, out)` opens each sweep once (store.opened: rows read, spec.yaml parsed
once) and writes into `out`:

    index.html          the findings (one verdict column per sweep, or per variant of a sweep
                        with `variants:`), where each part's protocol departs from the deck's,
                        the counts, every chart, the gallery (images linked from explorer/)
    explorer.html       every trial as a row (sortable, filterable), parallel coordinates of the
                        config axes against PSNR; a click shows the trial's ground truth,
                        reconstruction and convergence curve (images under explorer/)
    <chart>.html        each chart on its own page (Vega, Vega-Lite and vega-embed inline)
    <chart>.png         each chart rendered by vl-convert
    gallery.html/.png   ground truth beside reconstruction, one trial per config group
    findings.csv        the claims against our numbers, one row per (sweep, claim)
    findings_strata.csv each claim's strata and averaged-over levels, a row each, as numbers
    counts.json         rows by status, skipped files, expected vs present trials, per chart n
    frontier.csv        for a sweep whose spec has `search:` (issue 17): one row per cell, the
                        strength found, its bracket and the gradient distortion there; with
                        frontier_seeds.csv (each seed's own threshold), the defense_frontier
                        chart and the frontier's findings (`analysis.frontier`)

Several sweeps (`dlgsweep report A B --out DIR`) share every chart: each sweep is a facet row;
a sweep with variants is one part per variant (`corrections/seed-protocol`, ...), as if each
were a sweep of its own: a findings column and a facet row each, counted with its sweep.
All pages work offline, opened from disk: the JavaScript is inlined (no CDN), images are files
next to the pages. A partial sweep is fine: each chart says how many trials its points rest on;
error rows are excluded and counted; a chart without data is skipped with its reason.

The modules, each importing only those above it:

    model     Report, SweepPart, ChartOutput; the parts (`findings.named_parts`), their
              findings and counts, the frontiers, built from the opened sweeps
    pages     the HTML: index.html's sections, a chart's page, gallery.html
    charts    each chart's .html and .png, the defense frontier's chart
    export    build_report: the output folder, findings.csv, attackers.csv, frontier csvs,
              counts.json, the gallery's trials and gallery.png, the explorer
"""

from analysis.report.export import build_report, gallery_png
from analysis.report.model import SEARCH_NOTE, ChartOutput, Report, SweepPart
from analysis.report.pages import (
    findings_html,
    frontier_table_html,
    gallery_html,
    not_tested,
)
from analysis.stats import VERDICTS

# what callers import from here (dlgsweep.commands.report, bench/, tests/)
__all__ = [
    "SEARCH_NOTE", "VERDICTS", "ChartOutput", "Report", "SweepPart", "build_report",
    "findings_html", "frontier_table_html", "gallery_html", "gallery_png", "not_tested",
]  # fmt: skip
