"""Render a page in a real headless Chromium (for tests/tuner/test_report.py): console errors,
requests that leave the file, what a probe script sees, and a full-page screenshot.

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``:
NUL-separated JSON on file descriptors 3 and 4), so no websocket library is needed.
Tests using it skip, saying why, only where no Chromium is installed
(``apt-get install -y chromium``; scripts/setup-env.sh does it when run as root);
screenshots go to ``test-artifacts/`` (or ``$HUBTUNE_TEST_ARTIFACTS``).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.paths import ROOT

ARTIFACTS = Path(os.environ.get("HUBTUNE_TEST_ARTIFACTS",
                                ROOT / "test-artifacts"))
CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome",
                                               "google-chrome-stable")) if p), None)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium installed (apt-get install -y chromium; "
    "scripts/setup-env.sh installs it when run as root)")

PROBE = """JSON.stringify({
  plots: [...document.querySelectorAll('figure.plot img')].map(i => {
    const r = i.getBoundingClientRect();
    return {id: i.closest('figure').id, complete: i.complete, natural: i.naturalWidth,
            width: r.width, height: r.height,
            visible: getComputedStyle(i).visibility !== 'hidden' && r.width > 0};
  }),
  headline: !!document.querySelector('#headline'),
  noModel: (document.querySelector('#no-model') || {}).innerText || null,
  ensemble: (() => {
    const s = document.querySelector('#ensemble');
    if (!s) return null;
    const r = s.getBoundingClientRect();
    return {text: s.innerText, width: r.width, height: r.height,
            members: s.querySelectorAll('#ensemble-members tr').length - 1};
  })(),
  log: !!document.querySelector('details#decision-log:not([open])'),
  title: document.title,
})"""


class Chromium:
    """A headless Chromium driven over the DevTools protocol through a pipe."""

    def __init__(self, profile: Path) -> None:
        chrome_in, self._write = os.pipe()
        self._read, chrome_out = os.pipe()
        # Chromium reads commands on fd 3 and writes replies and events on fd 4: the
        # child moves its pipe ends there (from copies above 10, so none is clobbered).
        src_in = fcntl.fcntl(chrome_in, fcntl.F_DUPFD_CLOEXEC, 10)
        src_out = fcntl.fcntl(chrome_out, fcntl.F_DUPFD_CLOEXEC, 10)

        def to_3_and_4() -> None:
            os.dup2(src_in, 3)
            os.dup2(src_out, 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--remote-debugging-pipe", f"--user-data-dir={profile}", "--hide-scrollbars",
             "--window-size=1200,900", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            close_fds=False, preexec_fn=to_3_and_4,
        )
        for fd in (chrome_in, chrome_out, src_in, src_out):
            os.close(fd)
        self._buf = b""
        self._id = 0
        self.events: list[dict[str, Any]] = []
        self.session: str | None = None

    def _message(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buf:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise TimeoutError("Chromium sent nothing in time (or exited)")
            chunk = os.read(self._read, 1 << 16)
            if not chunk:
                raise EOFError("Chromium closed the DevTools pipe")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method: str, timeout: float = 30.0, **params: Any) -> dict[str, Any]:
        """Send one command and return its result (events meanwhile go to ``events``)."""
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params}
        if self.session and not method.startswith(("Target.", "Browser.")):
            msg["sessionId"] = self.session
        os.write(self._write, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._message(timeout)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 30.0) -> dict[str, Any]:
        """Wait for the event ``method`` (also one already received)."""
        for e in self.events:
            if e.get("method") == method:
                return e
        while True:
            e = self._message(timeout)
            self.events.append(e)
            if e.get("method") == method:
                return e

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except (RuntimeError, TimeoutError, EOFError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.close(self._read)
        os.close(self._write)


def render(report: Path, screenshot: Path, profile: Path) -> tuple[dict[str, Any], list[str],
                                                                    list[str]]:
    """Open ``report`` in Chromium; return (what :data:`PROBE` saw, console/log errors,
    URLs requested other than the file itself and data: URLs), saving a full-page PNG."""
    browser = Chromium(profile)
    try:
        target = browser.send("Target.createTarget", url="about:blank")["targetId"]
        browser.session = browser.send("Target.attachToTarget", targetId=target,
                                       flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.send(f"{domain}.enable")
        browser.send("Page.navigate", url=report.resolve().as_uri())
        browser.wait_for("Page.loadEventFired")
        probe = json.loads(browser.send("Runtime.evaluate", expression=PROBE,
                                        returnByValue=True)["result"]["value"])
        shot = browser.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        screenshot.write_bytes(base64.b64decode(shot["data"]))
    finally:
        browser.close()
    errors, requests = [], []
    for e in browser.events:
        m, p = e.get("method"), e.get("params", {})
        if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            errors.append(json.dumps(p.get("args"))[:300])
        elif m == "Runtime.exceptionThrown":
            errors.append(json.dumps(p.get("exceptionDetails"))[:300])
        elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            errors.append(p["entry"].get("text", "")[:300])
        elif m == "Network.requestWillBeSent":
            url = p.get("request", {}).get("url", "")
            if not url.startswith("data:") and url != report.resolve().as_uri():
                requests.append(url)
    return probe, errors, requests
