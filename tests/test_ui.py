"""The Prefect UI in a real headless Chromium (Debian's package): a finished run and its summary artifact."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from processes import PrefectServer, run_transactions_against
from test_deployments import Api

CHROMIUM = shutil.which("chromium")
OUTPUT = Path(__file__).parent / "output"
# The flags this machine's notes give for Debian's Chromium as root, on a closed network.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is installed by .ci/run")
def test_ui_shows_the_finished_run_and_its_summary_artifact(tmp_path):
    server = PrefectServer(tmp_path / "home")   # the real server: it serves the UI
    try:
        server.wait_healthy()
        summary = run_transactions_against(server.api_url, tmp_path)
        artifacts = Api(server.api_url)("POST", "/artifacts/filter", {"artifacts": {
            "flow_run_id": {"any_": [summary["flow_run_id"]]}, "key": {"any_": ["rayft-summary"]}}})
        [artifact_id] = [a["id"] for a in artifacts]
        run_name = Api(server.api_url)("GET", f"/flow_runs/{summary['flow_run_id']}")["name"]
        check_pages(server.api_url.removesuffix("/api"), summary["flow_run_id"], run_name, artifact_id, tmp_path)
    finally:
        server.stop()


def check_pages(ui: str, flow_run_id: str, run_name: str, artifact_id: str, tmp_path: Path) -> None:
    """Playwright drives Debian's Chromium (no browser download): open the finished run, go to its
    Artifacts tab, open the summary artifact, and find the ledger on the page."""
    from playwright.sync_api import expect, sync_playwright
    OUTPUT.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{ui}/runs/flow-run/{flow_run_id}")
        expect(page.get_by_text(run_name).first).to_be_visible(timeout=60_000)
        expect(page.get_by_text("Completed").first).to_be_visible()
        page.screenshot(path=str(OUTPUT / "ui-flow-run.png"))
        page.get_by_text("Artifacts", exact=True).first.click()
        page.get_by_text("rayft-summary").first.click()
        expect(page.get_by_text("prefect-ray-ft run: completed")).to_be_visible(timeout=60_000)
        expect(page.get_by_role("cell", name="rows_quarantined")).to_be_visible()
        assert artifact_id in page.url
        page.screenshot(path=str(OUTPUT / "ui-summary-artifact.png"))
        browser.close()
    assert (OUTPUT / "ui-summary-artifact.png").stat().st_size > 20_000
