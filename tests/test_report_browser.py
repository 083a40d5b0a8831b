"""The report in a real browser: headless Chromium loads it with no console error and no network request.

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``:
JSON messages separated by NUL bytes on file descriptors 3 and 4), so the test
needs nothing beyond the Debian ``chromium`` package (``.ci/install-browser``).
Without Chromium the test is skipped, unless the environment variable CI is set,
where it fails. A full-page PNG screenshot goes to ``reports/report_screenshot.png``
(or to $CANARYAUDIT_SCREENSHOT) for a person to look at.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from tests.test_report import MALICIOUS, default_params, make_reports

CHROMIUM = os.environ.get("CANARYAUDIT_CHROMIUM", "/usr/bin/chromium")
VIEWPORT_WIDTH = 1280  # CSS pixels
PAGE_TIMEOUT_S = 60


class Chromium:
    """A headless Chromium speaking the DevTools protocol over a pipe (no WebDriver, no websocket)."""

    def __init__(self, binary: str, profile: Path) -> None:
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def wire_fds() -> None:  # in the child: the browser reads fd 3 and writes fd 4
            read_end, write_end = os.dup(to_browser_r), os.dup(from_browser_w)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        args = [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
                f"--user-data-dir={profile}", "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-default-apps", "--hide-scrollbars", "--force-device-scale-factor=1", "about:blank"]
        self.process = subprocess.Popen(args, pass_fds=(3, 4), preexec_fn=wire_fds,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def _receive(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._from_browser], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError("no message from Chromium")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise EOFError("Chromium closed the DevTools pipe")
            self._buffer += chunk
        raw, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(raw)

    def call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + PAGE_TIMEOUT_S
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, event: str, timeout: float = PAGE_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == event for e in self.events):
            self.events.append(self._receive(deadline))

    def drain(self, seconds: float) -> None:
        """Collect the events that arrive within ``seconds`` (late console messages, requests)."""
        deadline = time.monotonic() + seconds
        try:
            while True:
                self.events.append(self._receive(deadline))
        except TimeoutError:
            pass

    def close(self) -> None:
        try:
            self.call("Browser.close")
            self.process.wait(timeout=10)
        except Exception:  # noqa: BLE001 - a browser that will not close politely is killed
            self.process.kill()
            self.process.wait(timeout=10)
        finally:
            os.close(self._to_browser)
            os.close(self._from_browser)


def chromium_or_skip() -> str:
    if Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    reason = f"{CHROMIUM} not found: install it with .ci/install-browser (apt-get install chromium chromium-driver)"
    if os.environ.get("CI"):
        pytest.fail(f"CI is set and {reason}")
    pytest.skip(reason)


def screenshot_path() -> Path:
    return Path(os.environ.get("CANARYAUDIT_SCREENSHOT", REPO / "reports" / "report_screenshot.png"))


def open_page(browser: Chromium, url: str) -> str:
    """Open ``url`` in a new tab with console, log and network events on; return the session id."""
    target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network"):
        browser.call(f"{domain}.enable", session=session)
    browser.call("Emulation.setDeviceMetricsOverride",
                 {"width": VIEWPORT_WIDTH, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session=session)
    browser.call("Page.navigate", {"url": url}, session=session)
    browser.wait_for("Page.loadEventFired")
    browser.drain(1.0)
    return session


def problems(events: list[dict[str, Any]], page_url: str) -> tuple[list[str], list[str]]:
    """(console errors, network requests other than the page itself) seen in ``events``."""
    errors, requests = [], []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert", "warning"):
            errors.append(" ".join(str(a.get("value", a.get("description"))) for a in params.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            errors.append(str(params.get("exceptionDetails", {}).get("text")))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") in ("error", "warning"):
            errors.append(str(params["entry"].get("text")))
        elif method == "Page.javascriptDialogOpening":
            errors.append(f"dialog opened: {params.get('message')}")
        elif method == "Network.requestWillBeSent" and params.get("request", {}).get("url") != page_url:
            requests.append(str(params.get("request", {}).get("url")))
    return errors, requests


def save_full_page_screenshot(browser: Chromium, session: str, path: Path) -> bytes:
    height = browser.call("Page.getLayoutMetrics", session=session)["cssContentSize"]["height"]
    browser.call("Emulation.setDeviceMetricsOverride",
                 {"width": VIEWPORT_WIDTH, "height": int(height), "deviceScaleFactor": 1, "mobile": False}, session=session)
    shot = browser.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, session=session)
    png = base64.b64decode(shot["data"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)
    return png


def evaluate(browser: Chromium, session: str, expression: str) -> Any:
    return browser.call("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=session)["result"]["value"]


@pytest.mark.timeout(300)
def test_report_in_headless_chromium(tmp_path):
    binary = chromium_or_skip()
    from canaryaudit.gate import evaluate_gate
    from canaryaudit.report.inputs import load_inputs
    from canaryaudit.report.render import render_report

    params = default_params()
    inputs = load_inputs(make_reports(tmp_path / "reports"), tuple(params.train.variants))
    html = render_report(inputs, params, evaluate_gate(params.gate.rules, inputs), generated_at="test run")
    page = tmp_path / "reports" / "index.html"
    page.write_text(html, encoding="utf-8")
    url = page.as_uri()

    browser = Chromium(binary, tmp_path / "profile")
    try:
        session = open_page(browser, url)
        shown = evaluate(browser, session, "document.body.innerText")
        counts = evaluate(browser, session, "[document.scripts.length, document.querySelectorAll("
                                            "'a[href^=\"javascript\"]').length, document.querySelectorAll('svg.chart').length]")
        png = save_full_page_screenshot(browser, session, screenshot_path())
        browser.drain(0.5)
    finally:
        browser.close()
        shutil.rmtree(tmp_path / "profile", ignore_errors=True)

    errors, requests = problems(browser.events, url)
    assert errors == [], f"console errors: {errors}"
    assert requests == [], f"network requests besides the report itself: {requests}"
    assert MALICIOUS[:40] in shown  # the malicious sample shows as text ...
    assert counts[0] == 0 and counts[1] == 0  # ... and made neither a script nor a javascript: link
    assert counts[2] >= 8  # exposure, 2 privacy-utility, 2 ROC per variant with an extract report
    assert "Privacy gate passed" in shown
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 50_000
