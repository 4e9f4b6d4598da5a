"""The live web view in a real headless Chromium, driven over the DevTools protocol.

A whole node runs (synthetic venue, every installed calculator, the ``http`` sink on a
free port); Chromium loads ``/`` and the test reads the page through
``Runtime.evaluate``: rows for every symbol, values that change as reports stream in
over ``/ws``, a drawn depth chart. A screenshot lands in pytest's tmp path.

No selenium or playwright: Chromium is started with ``--remote-debugging-port=0``, the
port is read from the ``DevToolsActivePort`` file of its profile folder, and CDP
commands go over a plain ``websockets`` client. Skipped when no Chromium is installed
(Debian: ``apt-get install chromium``; or set ``MARKETCORE_CHROMIUM`` to a binary).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from marketcore.testing import free_port, stop_processes

websockets_client = pytest.importorskip("websockets.asyncio.client")

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def find_chromium() -> str | None:
    configured = os.environ.get("MARKETCORE_CHROMIUM")
    if configured:
        return configured if Path(configured).exists() else shutil.which(configured)
    return next((found for name in CANDIDATES if (found := shutil.which(name))), None)


def wait_until(check, what: str, timeout_s: float = 60.0, every_s: float = 0.2) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` (a bound
    on waiting, not a timing assertion)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            result = check()
        except OSError:
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(every_s)


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture
def node_url(tmp_path: Path) -> Iterator[str]:
    """A real node process with an ``http`` sink; its base URL."""
    port = free_port()
    profile = tmp_path / "web.toml"
    profile.write_text(
        f'[node]\nsymbols = {json.dumps(SYMBOLS)}\n\n[venue]\nuse = "synthetic"\nseed = 11\n\n'
        f'[pipeline.fast]\nperiod_ms = 250\n\n[pipeline.slow]\nperiod_ms = 1000\n\n'
        f'[[sink]]\nuse = "http"\nbind = "127.0.0.1:{port}"\n'
    )
    log = (tmp_path / "node.log").open("w")
    node = subprocess.Popen(
        [sys.executable, "-c", "import sys; from marketcore.cli import main; sys.exit(main())",
         "run", str(profile), "--duration", "120"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: node.poll() is not None or healthy(url), "the node's /healthz")
        assert node.poll() is None, (tmp_path / "node.log").read_text()
        yield url
    finally:
        stop_processes(node, sig=signal.SIGINT)
        log.close()


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[str]:
    """A headless Chromium; the DevTools WebSocket URL of its page."""
    binary = find_chromium()
    if binary is None:
        pytest.skip("no Chromium binary found (apt-get install chromium, or set "
                    "MARKETCORE_CHROMIUM)")
    profile_dir = tmp_path / "chromium-profile"
    args = [binary, "--headless=new", "--remote-debugging-port=0",
            f"--user-data-dir={profile_dir}", "--no-first-run", "--no-default-browser-check",
            "--disable-gpu", "--disable-extensions", "--disable-background-networking",
            "--window-size=1440,900", "--hide-scrollbars", "about:blank"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
    log = (tmp_path / "chromium.log").open("w")
    browser = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    try:
        active = profile_dir / "DevToolsActivePort"
        wait_until(lambda: browser.poll() is not None or
                   (active.exists() and len(active.read_text().splitlines()) >= 2),
                   "Chromium's DevToolsActivePort file")
        assert browser.poll() is None, (tmp_path / "chromium.log").read_text()
        port = int(active.read_text().splitlines()[0])

        def page_target() -> str | None:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as r:
                pages = [t for t in json.load(r) if t.get("type") == "page"]
            return pages[0]["webSocketDebuggerUrl"] if pages else None

        yield wait_until(page_target, "a Chromium page target")
    finally:
        stop_processes(browser, timeout_s=10)
        log.close()


class DevTools:
    """Just enough of the Chrome DevTools Protocol: numbered commands, their replies."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.ids = itertools.count(1)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        command_id = next(self.ids)
        await self.connection.send(json.dumps({"id": command_id, "method": method,
                                               "params": params}))
        while True:  # events arrive in between; skip them
            message = json.loads(await asyncio.wait_for(self.connection.recv(), 60))
            if message.get("id") == command_id:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                return message["result"]

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, what: str, timeout_s: float = 60.0) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"gave up waiting for {what}")
            await asyncio.sleep(0.25)


TABLE = """JSON.stringify([...document.querySelectorAll('#rows tr')].map(tr => {
  const row = {};
  for (const td of tr.querySelectorAll('td')) row[td.dataset.field] = td.textContent;
  return row;
}))"""

CHART_INK = """(() => {
  const c = document.getElementById('depth');
  const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let ink = 0;
  for (let i = 3; i < data.length; i += 4) if (data[i] > 0) ink++;
  return ink;
})()"""


async def drive_page(page_ws: str, url: str, screenshot: Path) -> dict[str, Any]:
    async with websockets_client.connect(page_ws, max_size=None) as connection:
        tools = DevTools(connection)
        await tools.send("Page.enable")
        await tools.send("Emulation.setDeviceMetricsOverride", width=1440, height=900,
                         deviceScaleFactor=1, mobile=False)
        await tools.send("Page.navigate", url=url + "/")
        await tools.wait_for(f"document.querySelectorAll('#rows tr').length === {len(SYMBOLS)}"
                             " && document.getElementById('conn').dataset.state === 'open'",
                             "a live row per symbol")
        await tools.wait_for("[...document.querySelectorAll('#rows td[data-field=mid]')]"
                             ".every(td => td.textContent !== '–')", "mid prices on every row")
        first = json.loads(await tools.evaluate(TABLE))
        updates_first = int(await tools.evaluate("document.getElementById('updates').textContent"))
        # Wait for the stream to move the page on: more reports received and some shown
        # value (price, spread, imbalance) different from the first look.
        moved = (f"(() => {{ const now = {TABLE}; const before = {json.dumps(json.dumps(first))};"
                 " const a = JSON.parse(now), b = JSON.parse(before);"
                 " return a.some((row, i) => ['mid', 'last', 'spread', 'imbalance']"
                 ".some(f => row[f] !== b[i][f])); })()")
        await tools.wait_for(moved, "a live value on the page to change")
        later = json.loads(await tools.evaluate(TABLE))
        updates_later = int(await tools.evaluate("document.getElementById('updates').textContent"))
        await tools.wait_for(CHART_INK + " > 500", "the depth chart to be drawn")
        title = await tools.evaluate("document.getElementById('detail-title').textContent")
        shot = await tools.send("Page.captureScreenshot", format="png")
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        return {"first": first, "later": later, "updates": (updates_first, updates_later),
                "title": title}


def test_the_web_view_renders_live_reports(node_url: str, chromium: str, tmp_path: Path):
    screenshot = tmp_path / "web-view.png"
    seen = asyncio.run(drive_page(chromium, node_url, screenshot))

    assert [row["symbol"] for row in seen["first"]] == sorted(SYMBOLS)
    for row in seen["later"]:
        assert row["status"] in ("ok", "degraded", "down"), row
        assert float(row["mid"].replace(",", "")) > 0, row
        assert row["owner"] not in ("", "–"), row
        assert int(row["age"]) >= 0, row
    assert seen["updates"][1] > seen["updates"][0] >= len(SYMBOLS)
    changed = [(a["symbol"], f) for a, b in zip(seen["first"], seen["later"], strict=True)
               for f in ("mid", "last", "spread", "imbalance") if a[f] != b[f]]
    assert changed, "no live value changed on the page"
    assert seen["title"].startswith(sorted(SYMBOLS)[0])
    data = screenshot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    print(f"screenshot: {screenshot}")
