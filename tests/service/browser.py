"""Headless browsers for the browser tests, driven with the `websockets` client (no WebDriver binary, no Playwright
download): Chromium over the Chrome DevTools Protocol, Firefox over WebDriver BiDi.

    path, why = install_browser("chromium")  # Debian's package, installed by scripts/install-browser.sh if missing
    with Chromium(path, tmp / "profile", camera=y4m) as browser:  # fake webcam fed from a Y4M video
        page = browser.new_page("http://127.0.0.1:8000/demo")
        page.wait_for("document.querySelector('#stat-answered').textContent > 5")
        page.screenshot(Path("test-artifacts/demo.png"))
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import subprocess
import time
from pathlib import Path

import numpy as np
from websockets.sync.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / "scripts" / "install-browser.sh"
VIEWPORT = (1280, 900)


def install_browser(name: str) -> tuple[str | None, str]:
    """(path, "") when the browser ("chromium" or "firefox") is there or could be installed, else (None, why)."""
    try:
        done = subprocess.run(["bash", str(INSTALL), name], capture_output=True, text=True, timeout=480)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"{name} could not be installed: {exc}"
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        return None, f"{name} could not be installed: {why}"
    return done.stdout.strip().splitlines()[-1], ""


def write_y4m(path: Path, frames: list[np.ndarray], fps: int) -> Path:
    """RGB frames (H, W, 3) uint8 -> a YUV4MPEG2 file (4:2:0), the format Chromium's fake camera reads."""
    import cv2

    h, w = frames[0].shape[:2]
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for rgb in frames:
            f.write(b"FRAME\n")
            f.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420).tobytes())  # (3H/2, W): Y, then U, then V planes
    return path


class Page:
    """One tab. `evaluate` runs a JavaScript expression (promises awaited) and returns its JSON value."""

    def __init__(self) -> None:
        self.errors: list[str] = []  # uncaught exceptions and console errors of the page

    def evaluate(self, expression: str) -> object:
        raise NotImplementedError

    def screenshot_png(self) -> bytes:
        raise NotImplementedError

    def wait_for(self, expression: str, timeout: float = 30.0, what: str = "") -> object:
        """Poll `expression` until it is truthy; fail with the page's state after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what or expression}; page says: {self.state()}; "
                                     f"errors: {self.errors}")
            time.sleep(0.2)

    def state(self) -> dict:
        return self.evaluate("""({message: document.getElementById('message').textContent,
            status: document.getElementById('server-status').textContent,
            note: document.getElementById('stage-note').textContent,
            sent: document.getElementById('stat-sent').textContent,
            answered: document.getElementById('stat-answered').textContent})""")

    def screenshot(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.screenshot_png())
        return path


class _Browser:
    """A headless browser process with a fresh profile and a JSON-over-WebSocket remote protocol."""

    def __init__(self, args: list[str], profile: Path) -> None:
        self.args, self.profile = args, profile
        self.proc: subprocess.Popen | None = None
        self.ws: ClientConnection | None = None
        self.ids = itertools.count(1)
        self._stack = contextlib.ExitStack()

    def endpoint(self) -> str | None:
        """The protocol's WebSocket URL, once the browser has written it into the profile."""
        raise NotImplementedError

    def __enter__(self) -> _Browser:
        self.profile.mkdir(parents=True, exist_ok=True)
        with open(self.profile.parent / f"{self.profile.name}.log", "wb") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while (url := self.endpoint()) is None:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"the browser did not start; see {self.profile}.log")
            time.sleep(0.1)
        self.ws = self._stack.enter_context(connect(url, max_size=None, compression=None, open_timeout=20))
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stack.close()
        self.ws = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def command(self, message: dict, timeout: float = 30) -> dict:
        """Send one command; events that arrive before its reply go to `event`."""
        msg_id = message["id"] = next(self.ids)
        self.ws.send(json.dumps(message))
        deadline = time.monotonic() + timeout
        while True:
            reply = json.loads(self.ws.recv(timeout=max(deadline - time.monotonic(), 0.01)))
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise RuntimeError(f"{message['method']}: {reply['error']} {reply.get('message', '')}")
                return reply.get("result", {})
            self.event(reply)

    def event(self, event: dict) -> None:
        pass


class ChromiumPage(Page):
    def __init__(self, browser: Chromium, session: str) -> None:
        super().__init__()
        self.browser, self.session = browser, session

    def send(self, method: str, **params: object) -> dict:
        return self.browser.command({"method": method, "params": params, "sessionId": self.session})

    def evaluate(self, expression: str) -> object:
        reply = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in reply:
            raise AssertionError(f"{expression!r} raised: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    def screenshot_png(self) -> bytes:
        return base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"])


class Chromium(_Browser):
    """Headless Chromium over the DevTools Protocol; `camera`: a Y4M file its fake webcam plays in a loop."""

    def __init__(self, executable: str, profile: Path, camera: Path | None = None, fake_ui: bool = True) -> None:
        args = [
            executable, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--disable-background-networking", "--no-first-run", "--no-default-browser-check",
            "--disable-component-update", "--disable-sync", "--mute-audio", f"--user-data-dir={profile}",
            "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
            f"--window-size={VIEWPORT[0]},{VIEWPORT[1]}",
        ]
        if camera is not None:
            args += ["--use-fake-device-for-media-stream", f"--use-file-for-fake-video-capture={camera}"]
        if fake_ui:  # grant the camera without the permission prompt (headless otherwise refuses it)
            args.append("--use-fake-ui-for-media-stream")
        super().__init__([*args, "about:blank"], profile)
        self.pages: dict[str, ChromiumPage] = {}

    def endpoint(self) -> str | None:
        try:
            port, path = (self.profile / "DevToolsActivePort").read_text().splitlines()[:2]
        except (OSError, ValueError):  # not written yet, or half written
            return None
        return f"ws://127.0.0.1:{port}{path}"

    def event(self, event: dict) -> None:
        page = self.pages.get(event.get("sessionId", ""))
        method, params = event.get("method"), event.get("params", {})
        if page is None:
            return
        if method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            page.errors.append(details.get("exception", {}).get("description") or details.get("text", "exception"))
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            page.errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params["args"]))

    def new_page(self, url: str) -> ChromiumPage:
        target = self.command({"method": "Target.createTarget", "params": {"url": "about:blank"}})["targetId"]
        session = self.command({"method": "Target.attachToTarget",
                                "params": {"targetId": target, "flatten": True}})["sessionId"]
        page = self.pages[session] = ChromiumPage(self, session)
        page.send("Runtime.enable")
        page.send("Page.enable")
        page.send("Emulation.setDeviceMetricsOverride", width=VIEWPORT[0], height=VIEWPORT[1], deviceScaleFactor=1,
                  mobile=False)
        page.send("Page.navigate", url=url)
        page.wait_for("document.readyState === 'complete'", timeout=30, what="the page to load")
        return page


class FirefoxPage(Page):
    def __init__(self, browser: Firefox, context: str) -> None:
        super().__init__()
        self.browser, self.context = browser, context

    def send(self, method: str, **params: object) -> dict:
        return self.browser.command({"method": method, "params": params})

    def evaluate(self, expression: str) -> object:
        function = f"async function () {{ return JSON.stringify((await ({expression})) ?? null); }}"
        reply = self.send("script.callFunction", functionDeclaration=function, target={"context": self.context},
                          awaitPromise=True)
        if reply.get("type") == "exception":
            raise AssertionError(f"{expression!r} raised: {reply['exceptionDetails'].get('text')}")
        return json.loads(reply["result"]["value"])

    def screenshot_png(self) -> bytes:
        return base64.b64decode(self.send("browsingContext.captureScreenshot", context=self.context)["data"])


class Firefox(_Browser):
    """Headless Firefox over WebDriver BiDi, with its own fake camera (a coloured test pattern, no face)."""

    PREFS = {"media.navigator.streams.fake": True, "media.navigator.permission.disabled": True,
             "browser.shell.checkDefaultBrowser": False, "datareporting.policy.dataSubmissionEnabled": False,
             "toolkit.telemetry.reportingpolicy.firstRun": False, "app.update.disabledForTesting": True,
             "remote.prefs.recommended": True}

    def __init__(self, executable: str, profile: Path) -> None:
        profile.mkdir(parents=True, exist_ok=True)
        (profile / "user.js").write_text("".join(f"user_pref({json.dumps(k)}, {json.dumps(v)});\n"
                                                 for k, v in self.PREFS.items()))
        super().__init__([executable, "--headless", "--no-remote", "--profile", str(profile),
                          "--remote-debugging-port", "0", "--window-size", f"{VIEWPORT[0]},{VIEWPORT[1]}",
                          "about:blank"], profile)
        self.page: FirefoxPage | None = None

    def endpoint(self) -> str | None:
        path = self.profile / "WebDriverBiDiServer.json"
        try:
            server = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return f"ws://{server['ws_host']}:{server['ws_port']}/session"

    def event(self, event: dict) -> None:
        params = event.get("params", {})
        if self.page is not None and event.get("method") == "log.entryAdded" and params.get("level") == "error":
            self.page.errors.append(params.get("text", "error"))

    def new_page(self, url: str) -> FirefoxPage:
        self.command({"method": "session.new", "params": {"capabilities": {}}})
        self.command({"method": "session.subscribe", "params": {"events": ["log.entryAdded"]}})
        context = self.command({"method": "browsingContext.getTree", "params": {}})["contexts"][0]["context"]
        self.page = FirefoxPage(self, context)
        self.page.send("browsingContext.setViewport", context=context,
                       viewport={"width": VIEWPORT[0], "height": VIEWPORT[1]})
        self.page.send("browsingContext.navigate", context=context, url=url, wait="complete")
        return self.page
