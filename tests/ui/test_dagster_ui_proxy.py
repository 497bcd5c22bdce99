"""The Dagster UI as `navembed up` serves it: through the API at /dagster, behind the admin token, in chromium.

One stack with the API (the webserver on its private socket) over the sample library after a dsp re-embed.
A real headless chromium is refused without the token, signs in at /login like a person, and then gets the
whole single-page app through the proxy: its scripts, its GraphQL, and its WebSocket subscriptions.
Screenshots go to ``test-artifacts/ui/`` for a person to look at.
"""

import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from navembed_api.settings import ApiSettings
from navembed_pipeline.cli.local_run import run_reembed
from navembed_pipeline.sample_data.sample_library import write_sample_library
from navembed_pipeline.stack import Stack, free_port
from tests.api.app_fixtures import TOKEN
from tests.ui.cdp import Browser
from tests.ui.test_dagster_ui import ARTIFACTS, chromium  # noqa: F401 - the chromium fixture

# The page's own WebSocket to the proxied GraphQL endpoint: resolves to the server's first message type.
WEBSOCKET_HANDSHAKE = """new Promise(resolve => {
  const socket = new WebSocket(location.origin.replace('http', 'ws') + '/dagster/graphql', 'graphql-ws');
  socket.onopen = () => socket.send(JSON.stringify({type: 'connection_init', payload: {}}));
  socket.onmessage = event => { resolve(JSON.parse(event.data).type); socket.close(); };
  socket.onerror = () => resolve('error');
  socket.onclose = event => resolve('closed ' + event.code);
  setTimeout(() => resolve('timeout'), 20000);
})"""
GRAPHQL_FROM_PAGE = """fetch('/dagster/graphql', {method: 'POST', headers: {'Content-Type': 'application/json'},
  body: JSON.stringify({query: '{ version }'})}).then(r => r.status)"""


@dataclass(frozen=True)
class ProxiedUi:
    api: str
    run_id: str
    browser: str


@pytest.fixture(scope="module")
def proxied(chromium: str, tmp_path_factory: pytest.TempPathFactory,  # noqa: F811
            milvus_uri: str) -> Iterator[ProxiedUi]:
    root = tmp_path_factory.mktemp("dagster-proxy")
    library = write_sample_library(root / "library", seconds=2)
    # The session's Milvus Lite server: one the run below started would outlive the stack (it is shared).
    settings = ApiSettings(data_dir=root / "data", navidrome_db=library.db_path, music_root=library.root,
                           milvus_uri=milvus_uri, models="dsp", admin_token=TOKEN, socket_path=None,
                           api_port=free_port(), sensor_interval_seconds=3600)
    with pytest.MonkeyPatch.context() as env:
        env.delenv("DAGSTER_HOME", raising=False)  # run_reembed exports the stack's; restored afterwards
        summary = run_reembed(settings, ["dsp"], show_progress=False)
    assert summary.success, summary.error
    with Stack(settings) as stack:
        assert stack.urls.dagster == f"{stack.urls.api}/dagster"
        yield ProxiedUi(api=stack.urls.api, run_id=summary.run_id, browser=chromium)


def test_without_the_token_the_browser_gets_the_sign_in_page_and_no_graphql(proxied: ProxiedUi) -> None:
    with Browser(proxied.browser) as browser:
        browser.go(f"{proxied.api}/dagster/runs")
        browser.wait_for("location.pathname === '/login' && !!document.querySelector('input[name=token]')",
                         what="the redirect to the sign-in page")
        assert "needs the admin token" in browser.text()
        assert browser.evaluate(GRAPHQL_FROM_PAGE) == 401
        assert browser.evaluate(WEBSOCKET_HANDSHAKE) != "connection_ack"
        browser.screenshot(ARTIFACTS / "proxy-sign-in.png")


def test_after_signing_in_the_dagster_ui_loads_and_shows_the_run_and_the_assets(proxied: ProxiedUi) -> None:
    with Browser(proxied.browser) as browser:
        browser.go(f"{proxied.api}/dagster/runs")
        browser.wait_for("!!document.querySelector('input[name=token]')", what="the sign-in form")
        browser.evaluate(f"document.querySelector('input[name=token]').value = {json.dumps(TOKEN)};"
                         "document.querySelector('form').submit(); true")
        browser.wait_for("location.pathname === '/dagster/runs'", what="the way back to the runs page")
        # The runs list is the SPA's GraphQL answer, rendered: the run id shows once the app has loaded.
        browser.wait_for(f"document.body.innerText.includes({json.dumps(proxied.run_id[:8])})",
                         what="the run in the runs list")
        browser.screenshot(ARTIFACTS / "proxy-runs.png")
        assert browser.evaluate(GRAPHQL_FROM_PAGE) == 200
        assert browser.evaluate(WEBSOCKET_HANDSHAKE) == "connection_ack"

        browser.go(f"{proxied.api}/dagster/runs/{proxied.run_id}")
        # The run page streams its event log over the WebSocket subscription.
        browser.wait_for("document.body.innerText.includes('RUN_SUCCESS')", what="the run's event log")
        browser.screenshot(ARTIFACTS / "proxy-run.png")

        browser.go(f"{proxied.api}/dagster/assets/dsp_embeddings?view=partitions")
        browser.wait_for("document.body.innerText.includes('Materialized (256)')", what="the dsp partitions page")
        browser.screenshot(ARTIFACTS / "proxy-asset.png")
