"""Browser tests: Playwright (PyPI) driving Debian's Chromium against a real `hubbub serve`.

Chromium's WebRTC only uses loopback addresses when it has no other network, so every
browser test runs inside a loopback-only network namespace (docs/decisions/
0007-browser-tests-in-a-network-namespace.md). A plain `pytest` run (the outer one)
collects each test here as a `NetnsItem`, which re-runs that one test in a child pytest
under `unshare -n` (with `ip link set lo up` first) and reports its outcome; inside
(HUBBUB_NETNS=1) the tests run as ordinary async pytest tests with the fixtures below.

Without Chromium, Playwright or the rights to make a namespace, the tests skip with the
reason on a laptop and FAIL in CI (CI=true).
"""

import contextlib
import functools
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI

IN_NETNS = os.environ.get("HUBBUB_NETNS") == "1"
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
HARNESS_JS = Path(__file__).with_name("harness.js")
CHROMIUM = os.environ.get("HUBBUB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream", "--allow-loopback-in-peer-connection",
    "--disable-background-networking",
]
INNER_TIMEOUT = 240.0  # seconds for one test in the namespace, browser start included


# ---- outside: run each test in a network namespace ---------------------------------


@functools.cache
def netns_command() -> tuple[list[str], str]:
    """The `unshare` prefix that works here (root: -n; else a user namespace: -rn), or
    why none does."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return [], "`unshare` (util-linux) and `ip` (iproute2) are needed"
    errors = []
    for prefix in (["unshare", "-n"], ["unshare", "-rn"]):
        probe = subprocess.run([*prefix, "sh", "-c", "ip link set lo up"],
                               capture_output=True, text=True, check=False)
        if probe.returncode == 0:
            return prefix, ""
        errors.append(f"{' '.join(prefix)}: {probe.stderr.strip()}")
    return [], "cannot make a network namespace (" + "; ".join(errors) + ")"


def missing_requirement() -> str | None:
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    _, why = netns_command()
    return why or None


def _outcome(report: Path) -> tuple[str, str]:
    """('passed' | 'failed' | 'skipped' | 'missing', message) from a JUnit XML report."""
    if not report.is_file():
        return "missing", ""
    case = next(ET.parse(report).getroot().iter("testcase"), None)
    if case is None:
        return "missing", ""
    for tag in ("failure", "error", "skipped"):
        node = case.find(tag)
        if node is not None:
            outcome = "skipped" if tag == "skipped" else "failed"
            return outcome, node.get("message") or ""
    return "passed", ""


class NetnsItem(pytest.Item):
    """Runs one browser test in a child pytest inside `unshare -n`."""

    def runtest(self) -> None:
        why = missing_requirement()
        if why:
            if IN_CI:
                pytest.fail(f"browser tests cannot run: {why}", pytrace=False)
            pytest.skip(why)
        prefix, _ = netns_command()
        with tempfile.TemporaryDirectory(prefix="hubbub-netns-") as tmp:
            report = Path(tmp) / "report.xml"
            cmd = [*prefix, "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
                   sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                   f"--junitxml={report}", self.nodeid]
            proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "HUBBUB_NETNS": "1"},
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True, start_new_session=True)
            try:
                output, _ = proc.communicate(timeout=INNER_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                output, _ = proc.communicate()
                pytest.fail(f"{self.nodeid} did not finish in {INNER_TIMEOUT:.0f} s in the "
                            f"network namespace; its output:\n{output[-20000:]}",
                            pytrace=False)
            outcome, message = _outcome(report)
        if outcome == "passed" and proc.returncode == 0:
            return
        if outcome == "skipped":
            if IN_CI:
                pytest.fail(f"skipped in the network namespace, which CI does not allow: "
                            f"{message}", pytrace=False)
            pytest.skip(message)
        pytest.fail(f"failed in the network namespace ({' '.join(prefix)}, exit "
                    f"{proc.returncode}); the child pytest said:\n{output[-20000:]}",
                    pytrace=False)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"{self.name} (in a network namespace)"


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str,
                              obj: object) -> pytest.Item | None:
    if IN_NETNS or not isinstance(collector, pytest.Module):
        return None
    if not (name.startswith("test") and callable(obj)):
        return None
    item = NetnsItem.from_parent(collector, name=name)
    for mark in getattr(obj, "pytestmark", []):
        item.add_marker(mark)
    return item


# ---- inside: a real server and a real browser ----------------------------------------


@dataclass
class Hubbub:
    """`hubbub serve` as a process; restartable on the same port and store."""

    store: str
    log_path: Path
    port: int = 0
    proc: subprocess.Popen[str] | None = None
    url: str = ""
    extra: list[str] = field(default_factory=list)

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/ws"

    def start(self) -> None:
        log = self.log_path.open("a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hubbub", "serve", "--port", str(self.port),
             "--store", self.store, "--log-level", "info", *self.extra],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True)
        log.close()
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 20)
        line = self.proc.stdout.readline() if ready else ""
        match = re.search(r"listening on (http://\S+)", line)
        if not match:
            self.proc.kill()
            raise AssertionError(f"hubbub did not start: {line!r}\n{self.log()}")
        self.url = match.group(1)
        self.port = int(self.url.rsplit(":", 1)[1])
        stdout = self.proc.stdout
        threading.Thread(target=lambda: stdout.read(), daemon=True).start()

    def kill(self) -> None:
        """SIGKILL: no close frames, nothing flushed beyond what was committed."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Hubbub]:
    hub = Hubbub(store="sqlite:///" + str(tmp_path / "hubbub.db"),
                 log_path=tmp_path / "hubbub.log")
    hub.start()
    try:
        yield hub
    finally:
        hub.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
    hub = getattr(item, "funcargs", {}).get("server")
    if report.when == "call" and report.failed and isinstance(hub, Hubbub):
        report.sections.append(("hubbub server log", hub.log()[-15000:]))


# Every page keeps the Content-Security-Policy violations it met (`csp_violations`).
CSP_RECORDER = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation',
  (e) => window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`));
"""


async def csp_violations(page: Any) -> list[str]:
    return list(await page.evaluate("window.__cspViolations"))


class Browser:
    """Pages in separate contexts (separate users), each logging its console to stdout
    (pytest shows it for a failing test), screenshotted into test-artifacts/ on failure."""

    def __init__(self, browser: Any) -> None:
        self.browser = browser
        self.pages: dict[str, Any] = {}
        self.contexts: dict[str, Any] = {}

    async def page(self, name: str, url: str, **options: Any) -> Any:
        """`options`: Playwright's context options (a phone: viewport, has_touch, ...)."""
        context = await self.browser.new_context(
            **{"viewport": {"width": 1280, "height": 800}, **options})
        await context.add_init_script(CSP_RECORDER)
        page = await context.new_page()
        page.set_default_timeout(15000)
        page.on("console", lambda m: print(f"[{name}] console.{m.type}: {m.text}"))
        page.on("pageerror", lambda e: print(f"[{name}] page error: {e}"))
        await page.goto(url)
        self.pages[name], self.contexts[name] = page, context
        return page

    async def harness_page(self, name: str, server: Hubbub) -> Any:
        """A blank same-origin page (so `/hubbub.js` imports) with tests/browser/harness.js."""
        page = await self.page(name, server.url + "/healthz")
        await page.add_script_tag(path=str(HARNESS_JS))
        return page

    async def save_failure_artifacts(self, test_name: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        for name, page in self.pages.items():
            path = ARTIFACTS / f"{test_name}-{name}.png"
            with contextlib.suppress(Exception):
                await page.screenshot(path=str(path), timeout=5000)
                print(f"screenshot of {name!r} on failure: {path}")


@pytest.fixture
async def browser(request: pytest.FixtureRequest) -> AsyncIterator[Browser]:
    if not IN_NETNS:
        pytest.skip("browser tests run inside a network namespace (HUBBUB_NETNS=1)")
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS,
                                            headless=True)
        wrapper = Browser(chromium)
        try:
            yield wrapper
        finally:
            rep = getattr(request.node, "rep_call", None)
            if rep is not None and rep.failed:
                await wrapper.save_failure_artifacts(request.node.name)
            await chromium.close()
