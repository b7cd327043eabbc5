"""S3 SOURCE and DEST through pyarrow against a local S3 server (moto on 127.0.0.1): quarantine, resume,
and no secret in logs or artifacts."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from helpers import EXPECTED_WRITTEN_IDS, TRANSACTIONS
from test_flow import artifacts_of

SECRET = "s3cr3t-value-never-printed"


@pytest.fixture
def s3_server(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "moto_server"), "-H", "127.0.0.1",
                             "-p", str(port)], stdout=open(tmp_path / "moto.log", "w"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(endpoint, timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    env = {"AWS_ACCESS_KEY_ID": "rayft-test", "AWS_SECRET_ACCESS_KEY": SECRET,
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint}
    yield env
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=20)


@pytest.mark.slow
def test_s3_source_and_dest_with_quarantine_and_resume(s3_server, prefect_api):
    s3 = pafs.S3FileSystem(endpoint_override=s3_server["AWS_ENDPOINT_URL"], access_key="rayft-test",
                           secret_key=SECRET, region="us-east-1", allow_bucket_creation=True)
    s3.create_dir("lake")
    with s3.open_output_stream("lake/in/tx.csv") as f:
        f.write(TRANSACTIONS)
    policy = "/tmp/rayft-s3-policy.toml"
    with open(policy, "w") as f:
        f.write("max_error_rate = 0.9\n")
    env = {**os.environ, **s3_server, "PREFECT_API_URL": prefect_api}
    args = [sys.executable, "-m", "flows.cli", "run", "s3://lake/in/tx.csv", "s3://lake/out",
            "--transform", "tasks.examples:transactions", "--policy", policy, "--json"]
    runs = [subprocess.run(args, env=env, capture_output=True, text=True, timeout=600) for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stderr[-3000:]
        assert SECRET not in run.stdout + run.stderr
    first, second = (json.loads(r.stdout) for r in runs)
    assert (first["rows_written"], first["rows_quarantined"]) == (3, 5)
    assert second["shards_skipped"] == 1 and second["rows_written"] == 3   # resumed on S3

    def read(prefix):
        files = [i.path for i in s3.get_file_info(pafs.FileSelector(prefix)) if i.path.endswith(".parquet")]
        return pq.ParquetDataset(files, filesystem=s3).read().to_pandas()
    assert sorted(read("lake/out/data")["id"]) == EXPECTED_WRITTEN_IDS
    q = read("lake/out/quarantine")
    assert sorted(q["_line"]) == [3, 4, 6, 7, 8] and set(q["_source"]) == {"s3://lake/in/tx.csv"}
    with s3.open_input_stream("lake/out/_rayft/summary.json") as f:
        assert json.loads(f.read())["flow_run_id"] == second["flow_run_id"]
    for run in (first, second):
        for artifact in artifacts_of(run["flow_run_id"]).values():
            assert SECRET not in json.dumps(artifact.data, default=str)


@pytest.mark.slow
def test_s3_credentials_from_a_block_with_a_secret_field(s3_server, prefect_api, tmp_path):
    from blocks.s3 import S3Credentials
    s3 = pafs.S3FileSystem(endpoint_override=s3_server["AWS_ENDPOINT_URL"], access_key="rayft-test",
                           secret_key=SECRET, region="us-east-1", allow_bucket_creation=True)
    s3.create_dir("vault")
    with s3.open_output_stream("vault/in/tx.csv") as f:
        f.write(TRANSACTIONS)
    S3Credentials(aws_access_key_id="rayft-test", aws_secret_access_key=SECRET, region_name="us-east-1",
                  endpoint_url=s3_server["AWS_ENDPOINT_URL"]).save("lake-test", overwrite=True)
    policy = tmp_path / "p.toml"
    policy.write_text('max_error_rate = 0.9\ns3_credentials = "lake-test"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}   # nothing in the environment
    env["PREFECT_API_URL"] = prefect_api
    run = subprocess.run([sys.executable, "-m", "flows.cli", "run", "s3://vault/in/tx.csv", "s3://vault/out",
                          "--transform", "tasks.examples:transactions", "--policy", str(policy), "--json"],
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert SECRET not in run.stdout + run.stderr
    summary = json.loads(run.stdout)
    assert (summary["rows_written"], summary["rows_quarantined"]) == (3, 5)
    assert s3.get_file_info("vault/out/_rayft/summary.json").type == pafs.FileType.File
    for artifact in artifacts_of(summary["flow_run_id"]).values():
        assert SECRET not in json.dumps(artifact.data, default=str)
