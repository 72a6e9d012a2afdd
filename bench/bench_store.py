"""Benchmark: the results store at 10^5 trials, before (one file per row) and after (compacted).

A synthetic sweep of `--rows` trials (default 100,000: the paper grid's 160 configs x 625 seeds)
in the schema of store/schema.py: real trial keys from the spec, statuses 97% ok / 2%
diverged / 1% error, metrics, 20-point curves, 32 kernel norms and two unique 32x32 RGB PNGs
per row (smoothed noise, ~1.5-3 KB each, about what a CIFAR-10 image compresses to).

Timed, each on the same data side by side:
- before: today's code (kept verbatim below as `old_*`) on one Parquet file per row,
- new code on that same one-file-per-row folder (old results folders still load),
- after: new code on the compacted layout (parts of 10,000 rows, plus 255 row files: the most
  a running sweep leaves between two compactions).

Operations: `status` (read trial_key/status/error), planning a resume (finished keys vs the
spec's keys), a `query` GROUP BY, `report`'s load step (`store.load.load`, no images), and
the spec's expansion into trial keys (the same work for every layout). End to end, as a user
types them (a fresh process each: interpreter start, imports, spec.yaml expanded into keys, the
store read): `dlgsweep status DIR --json` and `resume`'s planning, now and as they worked
before issue 16 (every config of spec.yaml built and validated first). With `--s3-rows N`
(default 2,000) the same on a moto S3 server on loopback, with the HTTP requests counted
(request count is what costs on a real object store: ~10-50 ms each).

    python bench/bench_store.py                       # 10^5 rows; first run writes them (~5 min)
    python bench/bench_store.py --rows 20000 --s3-rows 0
    python bench/bench_store.py --end-to-end           # status/resume planning only (~2 min)
Results: a Markdown table on stdout, and bench_store.md / bench_store.json in --work.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis.query import query  # noqa: E402
from store import load  # noqa: E402
from store import rows as row_files  # noqa: E402
from store import sweep_store as sink  # noqa: E402
from store.schema import CONFIG_COLUMNS, IMAGE_COLUMNS, SCHEMA  # noqa: E402
from store.spec import parse_yaml  # noqa: E402
from store.sweep_store import SweepStore  # noqa: E402

SWEEP = "bench"
LOOSE_AFTER = 255
SQL = (
    "SELECT model, activation, count(*) AS n, avg(psnr_mean) AS psnr FROM trials "
    "WHERE status = 'ok' GROUP BY model, activation ORDER BY model, activation"
)


def spec_yaml(rows: int) -> str:
    seeds = max(1, rows // 160)
    return (
        f"name: {SWEEP}\ngrid:\n  seed: [{', '.join(map(str, range(seeds)))}]\n"
        "  model: [mcmahan_cnn, resnet18]\n  batch_size: [1, 2, 4, 8, 16]\n"
        "  init_method: [xavier_normal, xavier_uniform, kaiming_normal, kaiming_uniform]\n"
        "  activation: [relu, sigmoid]\n  prune: [small, none]\nfixed: {dataset: cifar10}\n"
    )


# -- the data -----------------------------------------------------------------------------------


def pngs(n: int, rng: np.random.Generator) -> list[bytes]:
    from PIL import Image

    out = []
    for _ in range(n):
        small = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((32, 32), Image.BILINEAR)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


def synthetic(configs: pa.Table, rng: np.random.Generator) -> pa.Table:
    """Rows in SCHEMA for the configs (their trial_key and config columns)."""
    n = configs.num_rows
    status = rng.choice(["ok", "diverged", "error"], size=n, p=[0.97, 0.02, 0.01])
    columns: dict[str, pa.Array] = {name: configs.column(name) for name in configs.column_names}
    columns["sweep"] = pa.array([SWEEP] * n)
    columns["status"] = pa.array(status)
    columns["error"] = pa.array([("RuntimeError: boom" if s == "error" else None) for s in status])
    for name in ("psnr_mean", "psnr_min", "psnr_max", "psnr_raw_mean", "ssim_mean"):
        columns[name] = pa.array(rng.normal(20, 5, n))
    for name in ("label_accuracy", "grad_loss_final", "wall_seconds", "seconds_per_iteration"):
        columns[name] = pa.array(rng.random(n))
    columns["grad_zero_fraction"] = pa.array(rng.random(n))
    columns["iterations_run"] = pa.array(np.full(n, 500))
    columns["best_iteration"] = pa.array(rng.integers(0, 500, n))
    columns["attempt"] = pa.array(np.ones(n, dtype=np.int64))
    columns["device"] = pa.array(["cuda"] * n)
    columns["host"] = pa.array([f"gpu-{i % 8}" for i in range(n)])
    now = int(time.time() * 1e6)
    columns["started_at"] = pa.array(now - rng.integers(10**6, 10**8, n), pa.timestamp("us", "UTC"))
    columns["finished_at"] = pa.array(np.full(n, now), pa.timestamp("us", "UTC"))
    offsets = pa.array(np.arange(0, 20 * n + 1, 20, dtype=np.int32))
    columns["curve_iteration"] = pa.ListArray.from_arrays(
        offsets, pa.array(np.tile(np.arange(0, 500, 25), n))
    )
    for name in ("curve_grad_loss", "curve_psnr"):
        columns[name] = pa.ListArray.from_arrays(offsets, pa.array(rng.random(20 * n)))
    kernels = pa.array(np.arange(0, 32 * n + 1, 32, dtype=np.int32))
    columns["grad_kernel_norms"] = pa.ListArray.from_arrays(kernels, pa.array(rng.random(32 * n)))
    for name in IMAGE_COLUMNS:
        columns[name] = pa.array(pngs(n, rng), pa.binary())
    return pa.table(
        [columns.get(f.name, pa.nulls(n, f.type)).cast(f.type) for f in SCHEMA], schema=SCHEMA
    )


def prepare(
    work: Path, rows: int, say, before_layout: bool = True
) -> tuple[pa.Table, list[str], Path, Path]:
    """(all rows, the spec's keys, the one-file-per-row results root, the compacted root);
    `before_layout=False` writes only the compacted one."""
    cache = work / f"rows-{rows}.parquet"
    spec = parse_yaml(spec_yaml(rows))
    if not cache.exists():
        say(f"generating {rows} rows (spec expansion, metrics, 2 PNGs each) ...")
        trials = spec.trials()[:rows]
        configs = pa.Table.from_pylist(
            [{"trial_key": t.trial_key, **t.to_dict()} for t in trials],
            schema=pa.schema([SCHEMA.field("trial_key"), *CONFIG_COLUMNS]),
        )
        pq.write_table(synthetic(configs, np.random.default_rng(0)), cache)
    table = pq.read_table(cache).select(SCHEMA.names)  # a cache may predate a column's move
    keys = table.column("trial_key").to_pylist()
    before = work / f"before-{rows}"
    marker = before / SWEEP / "trials" / ".complete"
    if before_layout and not marker.exists():
        say(f"writing {rows} row files (today's layout) into {before} ...")
        shutil.rmtree(before, ignore_errors=True)
        store = SweepStore.of(str(before), SWEEP)
        store.check_writable()
        store.save_spec(spec.to_yaml())
        folder = before / SWEEP / "trials"
        for i in range(table.num_rows):
            row = table.slice(i, 1)
            pq.write_table(row, folder / f"{keys[i]}.parquet")
        marker.write_text("done")
    after = work / f"after-{rows}"
    shutil.rmtree(after, ignore_errors=True)
    store = SweepStore.of(str(after), SWEEP)
    store.check_writable()
    store.save_spec(spec.to_yaml())
    write_after(store, table)
    return table, keys, before, after


def write_after(store: SweepStore, table: pa.Table) -> None:
    """The compacted layout: finished rows in sorted parts, error rows and the last
    LOOSE_AFTER finished rows as row files (a sweep between two compactions)."""
    finished = pc.is_in(table.column("status"), pa.array(row_files.FINISHED))
    done, rest = table.filter(finished), table.filter(pc.invert(finished))
    loose = pa.concat_tables([rest, done.slice(done.num_rows - LOOSE_AFTER)])
    done = done.slice(0, done.num_rows - LOOSE_AFTER)
    done = done.take(pc.sort_indices(done, sort_keys=[("trial_key", "ascending")]))
    for start in range(0, done.num_rows, sink.PART_ROWS):
        store._write_part(done.slice(start, sink.PART_ROWS))
    for i in range(loose.num_rows):
        store.write_table(loose.slice(i, 1), guard=False)


# -- today's code, verbatim (orchestrator/sink.py and analysis/load.py before this change) --------


def old_read_rows(fs: pafs.FileSystem, sweep_path: str, columns: list[str]) -> pa.Table:
    """SweepStore.read_rows as it was: list, then one pq.read_table per file, in turn."""
    selector = pafs.FileSelector(f"{sweep_path}/trials", allow_not_found=True)
    paths = sorted(
        i.path
        for i in fs.get_file_info(selector)
        if i.type == pafs.FileType.File and row_files.is_row_file(i.base_name)
    )
    wanted = list(dict.fromkeys(["trial_key", *columns]))
    tables = []
    for path in paths:
        try:
            table = pq.read_table(path, filesystem=fs, columns=wanted)
        except (pa.ArrowException, OSError):
            continue
        if (
            table.num_rows == 1
            and table.column("trial_key")[0].as_py() == path.rsplit("/")[-1][:-8]
        ):
            tables.append(table.select(columns))
    return pa.concat_tables(tables)


def old_load(fs: pafs.FileSystem, sweep_path: str) -> pl.DataFrame:
    """The reader as it was (then analysis.load.load): every non-image column of every row file."""
    selector = pafs.FileSelector(f"{sweep_path}/trials", allow_not_found=True)
    paths = sorted(i.path for i in fs.get_file_info(selector) if row_files.is_row_file(i.base_name))
    columns = [n for n in SCHEMA.names if n not in IMAGE_COLUMNS]
    if isinstance(fs, pafs.LocalFileSystem):
        frame = pl.read_parquet(paths, columns=columns, missing_columns="insert", glob=False)
        return frame
    dataset = ds.dataset(paths, schema=SCHEMA, format="parquet", filesystem=fs)
    return pl.from_arrow(dataset.to_table(columns=columns))


def old_query(fs: pafs.FileSystem, sweep_path: str) -> pl.DataFrame:
    frame = old_load(fs, sweep_path)
    return pl.SQLContext({"trials": frame}, eager=False).execute(SQL).collect()


PLANNING = "resume planning (finished vs spec)"
ORDER = ["status (trial_key, status, error)", PLANNING, "query GROUP BY",
         "report load step (no images)"]  # fmt: skip
value_table: list[pa.Table] = []


def _keep(table: pa.Table) -> int:
    value_table[:] = [table]
    return table.num_rows


def finished(table: pa.Table) -> set[str]:
    keys, statuses = table.column("trial_key").to_pylist(), table.column("status").to_pylist()
    return {k for k, s in zip(keys, statuses) if s in row_files.FINISHED}


# -- the timings ---------------------------------------------------------------------------------


def timed(action) -> tuple[float, object]:
    start = time.perf_counter()
    value = action()
    return time.perf_counter() - start, value


def operations(uri: str, keys: list[str], old: bool):
    """(name, action) of the four operations on one sweep folder, old or new code."""
    store = SweepStore(uri)
    fs, path = store.fs, store.path
    spec_keys = set(keys)
    if old:
        return [
            ("status (trial_key, status, error)",
             lambda: _keep(old_read_rows(fs, path, ["trial_key", "status", "error"]))),
            ("query GROUP BY", lambda: old_query(fs, path).height),
            ("report load step (no images)", lambda: old_load(fs, path).height),
        ]  # fmt: skip
    return [
        ("status (trial_key, status, error)",
         lambda: store.read_rows(columns=["trial_key", "status", "error"]).table.num_rows),
        (PLANNING, lambda: len(spec_keys - {
            k for k, s in store.statuses().items() if s in row_files.FINISHED})),
        ("query GROUP BY", lambda: query(uri, SQL).height),
        ("report load step (no images)", lambda: load.load(uri).frame.height),
    ]  # fmt: skip


def measure(columns: dict[str, tuple[str, bool]], keys, say, counter=None) -> dict:
    """name -> {column -> (seconds, requests)}: each operation on each layout, in turn."""
    results: dict[str, dict] = {}
    for label, (uri, old) in columns.items():
        for name, action in operations(uri, keys, old):
            before = sum(counter.values()) if counter is not None else 0
            seconds, value = timed(action)
            requests = sum(counter.values()) - before if counter is not None else None
            results.setdefault(name, {})[label] = {"seconds": seconds, "requests": requests}
            say(f"  {name:<38} {label:<34} {seconds:8.2f} s  (-> {value})")
            if old and name.startswith("status"):
                # today's resume planning is that same read (trial_key, status) plus a set
                # difference: timed once, not twice (at 10^5 row files it takes minutes)
                table = value_table[0]
                extra, _ = timed(lambda: len(set(keys) - finished(table)))
                results.setdefault(PLANNING, {})[label] = {
                    "seconds": seconds + extra,
                    "requests": requests,
                }
    return {name: results[name] for name in ORDER if name in results}


def s3_section(work: Path, table: pa.Table, keys: list[str], rows: int, say) -> dict:
    """The same operations on a moto S3 server on loopback, HTTP requests counted."""
    import logging

    from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    counter: Counter[str] = Counter()
    app = DomainDispatcherApplication(create_backend_app)

    def counting(environ, start_response):  # noqa: ANN001, ANN202
        counter[environ["REQUEST_METHOD"]] += 1
        return app(environ, start_response)

    server = make_server("127.0.0.1", 0, counting, True, request_handler=MotoRequestHandler)
    import threading

    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    import boto3

    boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}").create_bucket(Bucket="bench")
    query_string = f"endpoint_override=127.0.0.1:{port}&scheme=http&region=us-east-1"
    subset = table.slice(0, rows)
    sub_keys = keys[:rows]
    spec_text = parse_yaml(spec_yaml(max(rows, 160))).to_yaml()
    before_uri = f"s3://bench/before/{SWEEP}?{query_string}"
    after_uri = f"s3://bench/after/{SWEEP}?{query_string}"
    say(f"S3 (moto on loopback): uploading {rows} row files and the compacted layout ...")
    store = SweepStore(before_uri)
    store.save_spec(spec_text)
    for i in range(rows):
        buffer = pa.BufferOutputStream()
        pq.write_table(subset.slice(i, 1), buffer)
        with store.fs.open_output_stream(store.trial_path(sub_keys[i])) as stream:
            stream.write(buffer.getvalue())
    after = SweepStore(after_uri)
    after.save_spec(spec_text)
    write_after(after, subset)
    # one row written the old way (staged, then moved) and the new way (looked at, then PUT)
    row = subset.slice(0, 1)
    counter.clear()
    old_write(SweepStore(f"s3://bench/w-old/{SWEEP}?{query_string}"), row)
    write_old = sum(counter.values())
    counter.clear()
    fresh = SweepStore(f"s3://bench/w-new/{SWEEP}?{query_string}")
    fresh.next_attempt("run", sub_keys[0])
    fresh.write_table(row)
    write_new = sum(counter.values())
    columns = {
        "before: old code, one file per row": (before_uri, True),
        "new code, one file per row": (before_uri, False),
        "after: new code, compacted": (after_uri, False),
    }
    results = measure(columns, sub_keys, say, counter)
    server.shutdown()
    return {"rows": rows, "results": results, "write_requests": [write_old, write_new]}


def old_write(store: SweepStore, table: pa.Table) -> None:
    """SweepStore.write_table as it was: staged under .staging/, then fs.move into trials/."""
    key = table.column("trial_key")[0].as_py()
    staging = f"{store.path}/.staging"
    store.fs.create_dir(staging, recursive=True)
    store.fs.create_dir(f"{store.path}/trials", recursive=True)
    staged = f"{staging}/{key}.tmp"
    with store.fs.open_output_stream(staged) as stream:
        pq.write_table(table, stream)
    store.fs.move(staged, store.trial_path(key))


def markdown(results: dict, columns: list[str], requests: bool = False) -> str:
    head = "| operation | " + " | ".join(columns) + " | before / after |"
    lines = [head, "| --- |" + " --- |" * (len(columns) + 1)]
    for name, by in results.items():
        cells = []
        for c in columns:
            cell = f"{by[c]['seconds']:.2f} s"
            if requests and by[c]["requests"] is not None:
                cell += f" ({by[c]['requests']} req)"
            cells.append(cell)
        ratio = by[columns[0]]["seconds"] / max(by[columns[-1]]["seconds"], 1e-9)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {ratio:.0f}x |")
    return "\n".join(lines)


# -- end to end: the commands a user types, each in a fresh process ------------------------------

STATUS_BEFORE = """
import sys
from store.sweep_store import SweepStore
from store.spec import parse_yaml
store = SweepStore(sys.argv[1], flag="DIR")
spec = parse_yaml(store.read_spec())  # every TrialConfig built and validated, as before
expected = [t.trial_key for t in spec.trials()]
rows = store.read_rows(columns=["trial_key", "status", "error"]).table
print(len(expected), rows.num_rows)
"""
RESUME_PLANNING = """
import sys
from store.sweep_store import SweepStore
from orchestrator.sweep import plan_run
store = SweepStore(sys.argv[1], flag="DIR")
plan = plan_run(store.saved_spec(), store)  # what `dlgsweep resume` does before Ray starts
print(len(plan.keys), len(plan.pending))
"""
RESUME_PLANNING_BEFORE = """
import sys
from store.rows import FINISHED
from store.sweep_store import SweepStore
from store.spec import parse_yaml
store = SweepStore(sys.argv[1], flag="DIR")
trials = parse_yaml(store.read_spec()).trials()  # as before: every config built, then keyed
statuses = store.statuses()
pending = [t for t in trials if statuses.get(t.trial_key) not in FINISHED]
print(len(trials), len(pending))
"""


def wall(argv: list[str]) -> tuple[float, str]:
    """Seconds a fresh process takes, interpreter start and imports included; its stdout."""
    import subprocess

    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    return time.perf_counter() - start, done.stdout.strip()


def end_to_end(sweep: Path, say) -> dict[str, dict[str, float]]:
    """`dlgsweep status DIR --json` and `resume`'s planning on the compacted layout, now and
    the way they worked before issue 16 (spec.yaml expanded into validated configs)."""
    python = sys.executable
    runs = {
        "dlgsweep status DIR --json": (
            [python, "-m", "dlgsweep.cli", "status", str(sweep), "--json"],
            [python, "-c", STATUS_BEFORE, str(sweep)],
        ),
        "resume planning (spec.yaml -> pending configs)": (
            [python, "-c", RESUME_PLANNING, str(sweep)],
            [python, "-c", RESUME_PLANNING_BEFORE, str(sweep)],
        ),
    }
    out = {}
    for name, (now, before) in runs.items():
        before_s, _ = wall(before)
        now_s, printed = wall(now)
        out[name] = {"before": before_s, "now": now_s}
        say(f"  {name:<48} before {before_s:6.2f} s   now {now_s:6.2f} s  (-> {printed})")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--s3-rows", type=int, default=2_000, help="0: skip the S3 part")
    parser.add_argument("--work", default="/tmp/dlgsweep-bench-store", help="data, reused")
    parser.add_argument(
        "--end-to-end",
        action="store_true",
        help="only `status` and resume planning end to end on the compacted layout (no "
        "one-file-per-row folder: minutes less to prepare)",
    )
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)

    def say(line: str) -> None:
        print(line, flush=True)

    table, keys, before, after = prepare(work, args.rows, say, before_layout=not args.end_to_end)
    say(f"end to end, {args.rows} trials, compacted layout, a fresh process each:")
    e2e = end_to_end(after / SWEEP, say)
    e2e_text = [
        f"\n## End to end at {args.rows} trials (compacted; a fresh process: start, imports, "
        "spec.yaml, the store)\n",
        "| command | before issue 16 | now |",
        "| --- | --- | --- |",
        *(f"| {n} | {t['before']:.2f} s | {t['now']:.2f} s |" for n, t in e2e.items()),
    ]
    if args.end_to_end:
        out = "\n".join(e2e_text) + "\n"
        print("\n" + out)
        (work / "bench_store_e2e.md").write_text(out)
        (work / "bench_store_e2e.json").write_text(json.dumps(e2e, indent=2))
        return
    spec_seconds, _ = timed(
        lambda: [t.trial_key for t in parse_yaml(spec_yaml(args.rows)).trials()]
    )
    say(f"local disk, {args.rows} rows; the spec's expansion into keys: {spec_seconds:.1f} s")
    columns = {
        "before: old code, one file per row": (str(before / SWEEP), True),
        "new code, one file per row": (str(before / SWEEP), False),
        "after: new code, compacted": (str(after / SWEEP), False),
    }
    local = measure(columns, keys, say)
    compact = SweepStore(str(after / SWEEP))
    extra = synthetic_more(table, sink.COMPACT_MIN_ROWS)
    for i in range(extra.num_rows):
        compact.write_table(extra.slice(i, 1), guard=False)
    compact_seconds, done = timed(lambda: compact.compact())
    say(f"one compaction ({done.merged_rows} rows -> part): {compact_seconds:.2f} s")
    report = {
        "rows": args.rows,
        "local": local,
        "spec_expansion_seconds": spec_seconds,
        "compaction_seconds": compact_seconds,
        "compaction_rows": done.merged_rows,
        "sizes_mb": {
            "before": du(before) / 2**20,
            "after": du(after) / 2**20,
        },
        "png_bytes_mean": float(
            np.mean([len(b) for b in table.column("ground_truth_png")[:1000].to_pylist()])
        ),
    }
    report["end_to_end"] = e2e
    text = [
        *e2e_text,
        f"\n## Results store, {args.rows} trials, local disk\n",
        markdown(local, list(columns)),
        f"\nThe spec's expansion into {args.rows} trial keys (the same for every layout, part of "
        f"`status` and `resume`): {spec_seconds:.1f} s. One compaction of "
        f"{done.merged_rows} finished rows into a part: {compact_seconds:.2f} s. "
        f"On disk: {report['sizes_mb']['before']:.0f} MB as row files, "
        f"{report['sizes_mb']['after']:.0f} MB compacted; PNGs ~{report['png_bytes_mean']:.0f} B.",
    ]
    if args.s3_rows:
        s3 = s3_section(work, table, keys, min(args.s3_rows, args.rows), say)
        report["s3"] = s3
        text += [
            f"\n## Results store, {s3['rows']} trials, S3 (moto on loopback), HTTP requests\n",
            markdown(s3["results"], list(columns), requests=True),
            f"\nWriting one row: {s3['write_requests'][0]} requests before (staged + moved), "
            f"{s3['write_requests'][1]} after (attempt counter read + written, row looked at, "
            "one PUT).",
        ]
    out = "\n".join(text) + "\n"
    print("\n" + out)
    (work / "bench_store.md").write_text(out)
    (work / "bench_store.json").write_text(json.dumps(report, indent=2))


def synthetic_more(table: pa.Table, n: int) -> pa.Table:
    """n more finished rows (new trial keys) for one compaction step."""
    rows = table.filter(pc.equal(table.column("status"), "ok")).slice(0, n)
    fresh = pa.array([f"{i:016x}" for i in range(n)])
    return rows.set_column(rows.column_names.index("trial_key"), "trial_key", fresh)


def du(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


if __name__ == "__main__":
    main()
