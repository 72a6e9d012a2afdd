"""`dlgsweep query`: polars SQL over real Parquet rows, every output format, errors exit 2."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from dlgsweep.cli import main
from dlgsweep.errors import UserError

pytestmark = pytest.mark.ray  # the session's sweep fixture runs real attacks on Ray

SQL = (
    "SELECT activation, count(*) AS n, avg(psnr_mean) AS psnr FROM trials "
    "WHERE status = 'ok' AND model = 'mcmahan_cnn' GROUP BY activation ORDER BY activation"
)


@pytest.fixture(scope="module")
def results(small_sweep: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two sweeps: the real one and a copy named `bn-mode` (a name that needs quoting)."""
    root = tmp_path_factory.mktemp("query") / "results"
    shutil.copytree(small_sweep, root / "mini")
    copy = root / "bn-mode" / "trials"
    copy.mkdir(parents=True)
    for path in list((small_sweep / "trials").glob("*.parquet"))[:10]:
        frame = pl.read_parquet(path).with_columns(pl.lit("bn-mode").alias("sweep"))
        frame.write_parquet(copy / path.name)
    return root


def expected(results: Path) -> pl.DataFrame:
    rows = pl.read_parquet(sorted(results.glob("*/trials/*.parquet")))
    return (
        rows.filter((pl.col("status") == "ok") & (pl.col("model") == "mcmahan_cnn"))
        .group_by("activation")
        .agg(pl.len().cast(pl.Int64).alias("n"), pl.col("psnr_mean").mean().alias("psnr"))
        .sort("activation")
    )


def test_csv_matches_polars(results: Path, capsysbinary) -> None:
    assert main(["query", str(results), SQL, "--format", "csv"]) == 0
    got = pl.read_csv(io.BytesIO(capsysbinary.readouterr().out))
    want = expected(results)
    assert got["activation"].to_list() == want["activation"].to_list()
    assert got["n"].to_list() == want["n"].to_list()
    assert got["psnr"].to_list() == pytest.approx(want["psnr"].to_list())


def test_json_parquet_and_table(results: Path, tmp_path: Path, capsysbinary) -> None:
    want = expected(results)
    assert main(["query", str(results), SQL, "--format", "json"]) == 0
    rows = json.loads(capsysbinary.readouterr().out)
    assert [r["n"] for r in rows] == want["n"].to_list()
    out = tmp_path / "q.parquet"
    assert main(["query", str(results), SQL, "--format", "parquet", "--out", str(out)]) == 0
    assert pl.read_parquet(out)["psnr"].to_list() == pytest.approx(want["psnr"].to_list())
    assert main(["query", str(results), SQL]) == 0
    table = capsysbinary.readouterr().out.decode()
    assert "activation" in table and "sigmoid" in table and "shape: (2, 3)" in table


def test_one_table_per_sweep(results: Path, capsysbinary) -> None:
    counts = {}
    for table in ("trials", "mini", '"bn-mode"', "bn_mode"):
        sql = f"SELECT count(*) AS n FROM {table}"
        assert main(["query", str(results), sql, "--format", "json"]) == 0
        counts[table] = json.loads(capsysbinary.readouterr().out)[0]["n"]
    n_mini = len(list((results / "mini" / "trials").glob("*.parquet")))
    assert counts == {"trials": n_mini + 10, "mini": n_mini, '"bn-mode"': 10, "bn_mode": 10}


def test_lists_timestamps_and_images(results: Path, tmp_path: Path, capsysbinary) -> None:
    sql = "SELECT trial_key, curve_psnr, started_at FROM mini WHERE status = 'ok' LIMIT 2"
    assert main(["query", str(results), sql, "--format", "csv"]) == 0
    got = pl.read_csv(io.BytesIO(capsysbinary.readouterr().out))
    assert json.loads(got["curve_psnr"][0])[0] > 0
    assert main(["query", str(results), "SELECT reconstruction_png FROM mini"]) == 2
    sql = "SELECT ground_truth_png FROM mini WHERE status = 'ok' LIMIT 1"
    out = tmp_path / "img.json"
    assert (
        main(["query", str(results), sql, "--images", "--format", "json", "--out", str(out)]) == 0
    )
    assert json.loads(out.read_text())[0]["ground_truth_png"].startswith("iVBORw0KGgo")  # PNG


def test_bad_sql_exits_2_with_polars_message(results: Path, capsys) -> None:
    assert main(["query", str(results), "SELECT nope FROM trials"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dlgsweep query: error: ColumnNotFoundError") and "nope" in err
    assert main(["query", str(results), "SELEC * FROM trials"]) == 2
    assert "SQL" in capsys.readouterr().err
    assert main(["query", str(results), "SELECT * FROM no_such_table"]) == 2
    assert "no_such_table" in capsys.readouterr().err


@pytest.mark.parametrize(
    "sql",
    [
        "DROP TABLE trials",
        "CREATE TABLE x AS SELECT 1",
        "DELETE FROM trials",
        "/* x */ DROP TABLE trials",
        "-- x\nDELETE FROM trials",
        "EXPLAIN DROP TABLE trials",
        "SELECT 1; DROP TABLE trials",
        "UPDATE trials SET seed = 1",
    ],
)
def test_read_only_judged_on_the_parsed_statement(results: Path, capsys, sql) -> None:
    assert main(["query", str(results), sql]) == 2
    assert "read-only" in capsys.readouterr().err


def _dropped(context: pl.SQLContext, _: pl.LazyFrame) -> bool:
    return "trials" not in context.tables()


# what each statement does when polars runs it with no guard in front
EFFECTS = {
    "DROP TABLE trials": _dropped,
    "/* x */ DROP TABLE trials": _dropped,
    "SELECT 1; DROP TABLE trials": _dropped,
    "CREATE TABLE x AS SELECT 1": lambda context, _: "x" in context.tables(),
    "-- x\nDELETE FROM trials": lambda _, result: result.collect().height == 0,
}


@pytest.mark.parametrize("sql", list(EFFECTS))
def test_the_guard_refuses_what_polars_would_run(results: Path, sql) -> None:
    """Each statement, given to polars' SQL context over the same tables without the guard,
    runs and takes effect (drops or creates a table, deletes every row): so `query` refusing
    it is the guard's doing, not polars'. Without `check_read_only` they run (checked)."""
    from analysis.query import query, tables

    context = pl.SQLContext(tables(str(results)), eager=False)
    assert context.execute("SELECT count(*) AS n FROM trials").collect()["n"][0] > 0
    result = None
    for statement in filter(str.strip, sql.split(";")):
        result = context.execute(statement)  # polars alone: no error
    assert EFFECTS[sql](context, result)
    with pytest.raises(UserError, match="read-only"):
        query(str(results), sql)


def test_table_functions_reading_other_files_are_refused(results: Path, tmp_path, capsys) -> None:
    other = tmp_path / "other.parquet"
    pl.DataFrame({"secret": [1]}).write_parquet(other)
    for sql in (f"SELECT * FROM read_parquet('{other}')", f"SELECT * FROM read_csv('{other}')"):
        assert main(["query", str(results), sql]) == 2
        assert "read files are refused" in capsys.readouterr().err


def test_reads_still_run(results: Path, capsys) -> None:
    for sql in (
        "WITH a AS (SELECT seed FROM trials) SELECT count(*) AS n FROM a",
        "EXPLAIN SELECT seed FROM trials",
        "SHOW TABLES",
    ):
        assert main(["query", str(results), sql]) == 0, capsys.readouterr().err
        capsys.readouterr()


def test_an_image_column_without_images_names_the_flag(results: Path, capsys) -> None:
    assert main(["query", str(results), "SELECT reconstruction_png FROM trials"]) == 2
    assert "--images" in capsys.readouterr().err
    sql = "SELECT reconstruction_png FROM trials LIMIT 1"
    assert main(["query", str(results), sql, "--images", "--format", "json"]) == 0


def test_console_script_exit_code(results: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "dlgsweep.cli", "query", str(results), "SELECT FROM WHERE"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith("dlgsweep query: error:")
