"""A minimal Chrome DevTools Protocol client over ``--remote-debugging-pipe`` (no websockets, no Playwright).

Chromium reads NUL-terminated JSON commands on fd 3 and writes responses and events on fd 4.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
WIDTH, HEIGHT = 1280, 900


def find_chromium() -> str | None:
    """The system Chromium (``$ROBENCH_CHROMIUM`` first), or ``None``."""
    explicit = os.environ.get("ROBENCH_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).exists() else shutil.which(explicit)
    return next((found for name in CANDIDATES if (found := shutil.which(name))), None)


def _high(fd: int) -> int:
    """Move ``fd`` above 10 so that the child's dup2 onto 3 and 4 cannot clobber it (non-inheritable)."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


@dataclass
class PageReport:
    """What loading one page produced."""

    console: list[dict[str, Any]] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    log_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    images: list[dict[str, Any]] = field(default_factory=list)
    screenshot: bytes = b""

    @property
    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and browser-log errors, as text."""
        console = [f"console.{m['type']}: {m['text']}" for m in self.console if m["type"] in ("error", "assert")]
        return console + [f"exception: {e}" for e in self.exceptions] + [f"log: {e}" for e in self.log_errors]


class Chromium:
    """One headless Chromium process driven over the DevTools pipe."""

    def __init__(self, binary: str, profile: Path, timeout: float = 30.0) -> None:
        self.timeout = timeout
        to_browser_r, self._to_browser = (_high(fd) for fd in os.pipe())
        self._from_browser, from_browser_w = (_high(fd) for fd in os.pipe())

        def wire() -> None:  # runs in the child: the protocol's fixed descriptors (dup2 makes them inheritable)
            os.dup2(to_browser_r, 3)
            os.dup2(from_browser_w, 4)

        args = [binary, "--headless", "--remote-debugging-pipe", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
                "--disable-extensions", "--disable-background-networking", "--hide-scrollbars", f"--window-size={WIDTH},{HEIGHT}",
                f"--user-data-dir={profile}"]  # fmt: skip
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.append("--no-sandbox")  # Chromium refuses to sandbox as root (CI containers)
        self.process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, close_fds=False,
            preexec_fn=wire,  # noqa: PLW1509 - single-threaded test process
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def close(self) -> None:
        """Ask the browser to quit, then make sure it is gone."""
        try:
            self.send("Browser.close")
        except (OSError, RuntimeError, TimeoutError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stderr is not None:
            self.process.stderr.close()
        for fd in (self._to_browser, self._from_browser):
            try:
                os.close(fd)
            except OSError:
                pass

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer from Chromium")
            ready, _, _ = select.select([self._from_browser], [], [], left)
            if ready:
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    stderr = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                    raise RuntimeError(f"Chromium closed the DevTools pipe: {stderr[-2000:]}")
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        """Send one command and return its result; events that arrive meanwhile are kept in ``events``."""
        self._next_id += 1
        command: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            command["sessionId"] = session
        os.write(self._to_browser, json.dumps(command).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            message = self._read_message(deadline)
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, method: str, session: str) -> dict[str, Any]:
        """Wait for an event of this session."""
        deadline = time.monotonic() + self.timeout
        for index, event in enumerate(self.events):
            if event.get("method") == method and event.get("sessionId") == session:
                return self.events.pop(index)
        while True:
            message = self._read_message(deadline)
            if message.get("method") == method and message.get("sessionId") == session:
                return message
            self.events.append(message)


_IMAGES_JS = """Promise.all([...document.images].map(img => img.decode().then(
  () => ({alt: img.alt, width: img.naturalWidth, height: img.naturalHeight, error: null}),
  err => ({alt: img.alt, width: img.naturalWidth, height: img.naturalHeight, error: String(err)}))))"""


def load_page(binary: str, page: Path, profile: Path) -> PageReport:
    """Open ``page`` in a fresh headless Chromium; collect console, errors, requests, images, a screenshot."""
    browser = Chromium(binary, profile)
    report = PageReport()
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.send(f"{domain}.enable", session=session)
        browser.send("Emulation.setDeviceMetricsOverride", {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False}, session)
        browser.send("Page.navigate", {"url": page.resolve().as_uri()}, session)
        browser.wait_for("Page.loadEventFired", session)
        images = browser.send("Runtime.evaluate", {"expression": _IMAGES_JS, "awaitPromise": True, "returnByValue": True}, session)
        report.images = images["result"].get("value", [])
        shot = browser.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": False}, session)
        report.screenshot = base64.b64decode(shot["data"])
        browser.send("Runtime.evaluate", {"expression": "1"}, session)  # flush events queued before this point
        for event in browser.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled":
                text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
                report.console.append({"type": params.get("type"), "text": text})
            elif method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                report.exceptions.append(details.get("exception", {}).get("description") or details.get("text", ""))
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                report.log_errors.append(params["entry"].get("text", ""))
            elif method == "Network.requestWillBeSent":
                report.requests.append(params.get("request", {}).get("url", ""))
    finally:
        browser.close()
    return report


_LAYOUT_JS = """(() => {
  const width = document.documentElement.clientWidth;
  const wrapped = [...document.querySelectorAll('td.num')].filter(td => getComputedStyle(td).whiteSpace !== 'nowrap').length;
  const unscrolled = [...document.querySelectorAll('table')].filter(t => !t.parentElement.classList.contains('scroll')).length;
  const wide = [...document.querySelectorAll('main > *, .scroll, img')].filter(e => e.getBoundingClientRect().right > width + 1)
    .map(e => e.tagName + (e.className ? '.' + e.className : '') + ' ' + (e.getAttribute('alt') || ''));
  const panels = [...document.querySelectorAll('.panels img')].map(i => {
    const r = i.getBoundingClientRect();
    return [Math.round(r.left), Math.round(r.top), Math.round(r.width)];
  });
  return {width, scrollWidth: document.documentElement.scrollWidth, wrapped, unscrolled, wide, panels};
})()"""


def measure_layout(binary: str, page: Path, profile: Path, width: int, screenshot: Path | None = None) -> dict[str, Any]:
    """Lay ``page`` out at ``width`` CSS pixels (a phone below 600): the page's and the tables' widths,
    numeric cells that may wrap, reliability panels' positions; a full-page screenshot if asked."""
    browser = Chromium(binary, profile)
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        browser.send("Page.enable", session=session)
        browser.send("Runtime.enable", session=session)
        browser.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": width < 600}, session)
        browser.send("Page.navigate", {"url": page.resolve().as_uri()}, session)
        browser.wait_for("Page.loadEventFired", session)
        layout = browser.send("Runtime.evaluate", {"expression": _LAYOUT_JS, "returnByValue": True}, session)["result"]["value"]
        if screenshot is not None:
            height = browser.send("Runtime.evaluate", {"expression": "document.documentElement.scrollHeight", "returnByValue": True}, session)["result"]["value"]
            clip = {"x": 0, "y": 0, "width": max(width, layout["scrollWidth"]), "height": height, "scale": 1}
            shot = browser.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}, session)
            screenshot.write_bytes(base64.b64decode(shot["data"]))
    finally:
        browser.close()
    return layout
