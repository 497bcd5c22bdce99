"""The Dagster UI, the control room, renders in a real headless browser (Debian's chromium).

One stack (Milvus Lite, dagster-webserver and dagster-daemon) serves the project's definitions after a
dsp re-embed of the sample library. Each page is loaded once by ``chromium --headless`` and its rendered
DOM is checked while its screenshot goes to ``test-artifacts/ui/`` for a person to look at.
"""

import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from navembed_api.settings import ApiSettings
from navembed_pipeline.cli.local_run import run_reembed
from navembed_pipeline.lib.buckets import bucket_of
from navembed_pipeline.lib.library.navidrome import NavidromeLibrary
from navembed_pipeline.sample_data.sample_library import write_sample_library
from navembed_pipeline.stack import Stack, free_port

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"
# What /work/.library/env/machines/python.md prescribes: no sandbox (root), no GPU, no network chatter.
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                  "--no-first-run", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--hide-scrollbars")
# Virtual time: chromium fast-forwards timers while it waits for every fetch, so the SPA settles in seconds.
VIRTUAL_TIME_MS = 15_000
BROWSER_TIMEOUT_S = 60
IDLE_TIMEOUT_S = 90
REPO_PATH = "__repository__@navembed_pipeline.definitions"
# Dagster's error states (strings from its UI bundle); none may appear on a healthy page.
ERROR_MARKERS = ("Something went wrong", "An unexpected error", "An unknown error", "An error occurred",
                 "Error loading", "Query Error", "Application error", "Asset not found", "Repository not found",
                 "could not be found", "No assets were found", "PythonError")
SETTLED_QUERY = """
{
  runsOrError(filter: {statuses: [QUEUED, NOT_STARTED, STARTING, STARTED, CANCELING]}) {
    ... on Runs { results { runId } }
  }
  sensorOrError(sensorSelector: {repositoryName: "__repository__",
      repositoryLocationName: "navembed_pipeline.definitions", sensorName: "library_change_sensor"}) {
    ... on Sensor { sensorState { ticks(limit: 1) { status } } }
  }
}
"""


@dataclass(frozen=True)
class Page:
    """A page as the browser rendered it."""

    text: str
    html: str
    screenshot: Path


@dataclass(frozen=True)
class DagsterUi:
    """The running webserver, the bucket holding the sample library's corrupt file, the browser."""

    url: str
    corrupt_bucket: str
    browser: str

    def render(self, path: str, *, name: str, height: int = 1000) -> Page:
        """Load ``path`` in headless chromium: its rendered DOM, and a screenshot named ``name``."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        screenshot = ARTIFACTS / f"{name}.png"
        screenshot.unlink(missing_ok=True)
        with tempfile.TemporaryDirectory(prefix="navembed-chromium-", ignore_cleanup_errors=True) as profile:
            done = subprocess.run(
                [self.browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size=1600,{height}",
                 f"--virtual-time-budget={VIRTUAL_TIME_MS}", f"--screenshot={screenshot}", "--dump-dom",
                 f"{self.url}{path}"],
                capture_output=True, text=True, timeout=BROWSER_TIMEOUT_S)
        assert done.returncode == 0 and screenshot.is_file(), \
            f"chromium failed on {path} (exit {done.returncode}):\n{done.stderr[-2000:]}"
        return Page(text=visible_text(done.stdout), html=done.stdout, screenshot=screenshot)


class _TextOnly(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self._hidden += tag in ("script", "style")

    def handle_endtag(self, tag: str) -> None:
        self._hidden -= tag in ("script", "style")

    def handle_data(self, data: str) -> None:
        if not self._hidden and data.strip():
            self.parts.append(data.strip())


def visible_text(html: str) -> str:
    """The page's text without scripts and styles, one space between pieces."""
    parser = _TextOnly()
    parser.feed(html)
    return " ".join(parser.parts)


def assert_no_error_banner(page: Page) -> None:
    shown = [marker for marker in ERROR_MARKERS if marker.lower() in page.text.lower()]
    assert not shown, f"Dagster shows an error ({shown}) on {page.screenshot.name}: {page.text[:1500]}"


def wait_until_settled(url: str) -> None:
    """Wait for the daemon's first sensor tick and every run it launched: the pages then stay still."""
    deadline = time.monotonic() + IDLE_TIMEOUT_S
    while time.monotonic() < deadline:
        data = httpx.post(f"{url}/graphql", json={"query": SETTLED_QUERY}, timeout=30).json()["data"]
        ticks = data["sensorOrError"]["sensorState"]["ticks"]
        if ticks and ticks[0]["status"] != "STARTED" and not data["runsOrError"]["results"]:
            return
        time.sleep(0.5)
    raise AssertionError(f"runs still active after {IDLE_TIMEOUT_S} s: {data}")


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's chromium; its absence fails the test (CI installs it), it is never skipped."""
    browser = shutil.which("chromium")
    if browser is None:
        pytest.fail("chromium is not installed: the Dagster UI check needs Debian's chromium. "
                    "Run `make system-deps` (apt-get install chromium) and test again.", pytrace=False)
    return browser


@pytest.fixture(scope="module")
def ui(chromium: str, tmp_path_factory: pytest.TempPathFactory, milvus_uri: str) -> Iterator[DagsterUi]:
    """The stack's webserver on an instance holding a dsp re-embed run, welcome dialog dismissed."""
    root = tmp_path_factory.mktemp("dagster-ui")
    library = write_sample_library(root / "library", seconds=2)
    settings = ApiSettings(data_dir=root / "data", navidrome_db=library.db_path, milvus_uri=milvus_uri,
                           models="dsp", dagster_port=free_port())
    corrupt = [t.id for t in NavidromeLibrary(library.db_path).tracks() if t.path == library.corrupt_path]
    with pytest.MonkeyPatch.context() as env:
        env.delenv("DAGSTER_HOME", raising=False)  # run_reembed exports the stack's; restored afterwards
        # Before the daemon starts, so its sensor finds nothing to do and no second run competes.
        summary = run_reembed(settings, ["dsp"], show_progress=False)
    assert summary.success, summary.error
    with Stack(settings, api=False) as stack:
        url = stack.urls.dagster
        # What "Skip" on the "Join the Dagster community" dialog does; it would cover every page.
        httpx.post(f"{url}/graphql", json={"query": "mutation { setNuxSeen }"}, timeout=30).raise_for_status()
        wait_until_settled(url)
        yield DagsterUi(url=url, corrupt_bucket=bucket_of(corrupt[0]), browser=chromium)


def test_asset_graph_shows_every_embedding_asset_and_the_dsp_fill(ui: DagsterUi) -> None:
    page = ui.render(f"/locations/{REPO_PATH}/asset-groups/embeddings", name="asset-graph", height=1300)
    assert_no_error_banner(page)
    for asset in ("library_tracks", "dsp_embeddings", "muq_embeddings", "mert_embeddings", "latent_embeddings",
                  "musicnn_embeddings"):
        assert asset in page.text, f"{asset} missing from the asset graph: {page.text[:1500]}"
    assert page.text.count("256 partitions") == 5
    assert "100% filled" in page.text  # dsp; the other models were not run


def test_partitions_page_shows_all_256_buckets_materialized(ui: DagsterUi) -> None:
    page = ui.render("/assets/dsp_embeddings?view=partitions", name="dsp-partitions")
    assert_no_error_banner(page)
    for expected in ("256 Partitions Selected", "Materialized (256)", "Failed (0)", "Missing (0)"):
        assert expected in page.text, f"{expected!r} missing from the partitions page: {page.text[:1500]}"


def test_a_bucket_with_an_unreadable_file_shows_its_failures_as_a_markdown_table(ui: DagsterUi) -> None:
    page = ui.render(f"/assets/dsp_embeddings?view=partitions&partition={ui.corrupt_bucket}",
                     name="dsp-partition-failures")
    assert_no_error_banner(page)
    assert "<table><thead><tr><th>track</th><th>track id</th><th>error</th></tr></thead>" in page.html
    assert "Broken - Damaged" in page.text and "not a readable audio file" in page.text


def test_the_checks_tab_shows_the_bucket_with_a_failed_track_and_healthy_vectors(ui: DagsterUi) -> None:
    page = ui.render("/assets/dsp_embeddings?view=checks&checkDetail=tracks_embedded_or_failed", name="dsp-checks")
    assert_no_error_banner(page)
    for check in ("tracks_embedded_or_failed", "vectors_valid", "model_version_current"):
        assert check in page.text, f"{check} missing from the Checks tab: {page.text[:2000]}"
    # the list gives each check its aggregate status over the buckets: the bucket check failed (a WARN:
    # the yellow warning icon), the vector checks passed
    assert re.search(r"tracks_embedded_or_failed\s+Failed", page.text), page.text[:1500]
    assert re.search(r"vectors_valid\s+Succeeded", page.text), page.text[:1500]
    assert re.search(r"model_version_current\s+Succeeded", page.text), page.text[:1500]
    assert "Partitions" in page.text  # the check's per-bucket view


def test_the_asset_overview_shows_check_results_freshness_and_the_collection(ui: DagsterUi) -> None:
    page = ui.render("/assets/dsp_embeddings?view=overview", name="dsp-overview", height=1400)
    assert_no_error_banner(page)
    for expected in ("Latest check results", "Freshness policy", "dsp_embedding"):
        assert expected in page.text, f"{expected!r} missing from the overview: {page.text[:2500]}"
    # the daemon evaluated the policy against the run just made: fresh
    assert "Passing" in page.text or "Pass" in page.text, page.text[:2500]
