"""JupyterLab as a learner opens it: the README's first command (`python3 workbook.py lab`), driven in
headless Chromium by Playwright.

- "Restart Kernel and Run All Cells" from the Kernel menu, on every learner notebook and on the
  start-here notebook: no error output, no dead kernel, each run within its time budget.
- One check cell's HTML table as a learner sees it, for an exercise cell holding a known-buggy
  solution: its passed and failed rows and its points, and the run recorded in the progress record.
- What the browser opens goes through the Jupyter server (jupyter-server-proxy): the start-here
  notebook's link to an app's /docs, a page in an iframe with a live WebSocket and a live event
  stream, and no output of any notebook that points the browser at the kernel's loopback address.

Chromium is Debian's (`apt-get install chromium`, at /usr/bin/chromium or LAB_CHROMIUM); nothing is
downloaded at run time. Without it the browser test skips and says why; the proxy's own tests
(HTTP, server-sent events, WebSocket through the Jupyter server) run anyway.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, WebSocket
from sse_starlette import EventSourceResponse

import labsupport as lab
from labsupport import course, fixtures, progress, suites
from labsupport.serving import jupyter_base_url

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("LAB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]
NOTEBOOK_BUDGET = float(os.environ.get("LAB_BROWSER_NOTEBOOK_BUDGET", "60"))  # s per Run All
TOTAL_BUDGET = float(os.environ.get("LAB_BROWSER_TOTAL_BUDGET", "120"))       # s for all of them, on an idle machine
PARALLEL = int(os.environ.get("LAB_BROWSER_PARALLEL", "2"))                    # notebooks at a time
ONLY = os.environ.get("LAB_BROWSER_NOTEBOOKS", "")                             # numbers, default all
START_TIMEOUT = 120.0
RUN_BEGINS = 30.0  # s from the dialog's accept until the kernel restarts or a cell runs
START_HERE = "00_start_here.ipynb"
TABLE_EXERCISES = ("06-header-versions", "06-url-versions", "01-welcome-email")  # first usable is shown


def _missing_browser() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium; or set LAB_CHROMIUM)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (it is in the lock's test extras)"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- JupyterLab, started as the README starts it ---------------------------------------------------


class Lab:
    def __init__(self, process: subprocess.Popen, url: str, token: str, home: Path):
        self.process, self.url, self.token, self.home = process, url, token, home
        self.record = home / "progress"

    def api(self, path: str, method: str = "GET") -> httpx.Response:
        return httpx.request(method, f"{self.url}{path}", headers={"Authorization": f"token {self.token}"},
                             timeout=30)

    def log(self) -> str:
        return (self.home / "lab.log").read_text(errors="replace")[-3000:]


def _settings(folder: Path) -> None:
    """User settings of the test's own JupyterLab: no autosave (the notebooks in the repository are
    never written), no news or update checks (no network)."""
    for plugin, values in {"docmanager-extension/plugin": {"autosave": False},
                           "apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False}
                           }.items():
        path = folder / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values), encoding="utf-8")


@pytest.fixture(scope="module")
def jupyter_lab(tmp_path_factory):
    home = tmp_path_factory.mktemp("jupyterlab")
    _settings(home / "settings")
    token, port = secrets.token_hex(16), _free_port()
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST" and not k.startswith("JPY_")}
    env.update(JUPYTER_RUNTIME_DIR=str(home / "runtime"), JUPYTER_CONFIG_DIR=str(home / "config"),
               JUPYTERLAB_SETTINGS_DIR=str(home / "settings"), JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
               IPYTHONDIR=str(home / "ipython"), LAB_PROGRESS_DIR=str(home / "progress"))
    command = [sys.executable, str(ROOT / "workbook.py"), "lab", "--no-browser", f"--port={port}",
               "--ServerApp.port_retries=0", "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}",
               "--LabApp.expose_app_in_browser=True"]
    with open(home / "lab.log", "wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    server = Lab(process, f"http://127.0.0.1:{port}", token, home)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            if server.api("/api/status").status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"JupyterLab did not start within {START_TIMEOUT:g} s:\n{server.log()}")
        time.sleep(0.25)
    yield server
    try:
        server.api("/api/shutdown", "POST")  # ends the kernels too
        process.wait(20)
    except (httpx.HTTPError, subprocess.TimeoutExpired):
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def _probe_app():
    """An app with a WebSocket echo and a slow event stream, to go through the proxy."""
    import asyncio

    app = FastAPI(title="probe")

    @app.get("/items")
    async def items():
        return [1, 2]

    @app.websocket("/ws")
    async def echo(ws: WebSocket):
        await ws.accept()
        await ws.send_text("echo " + await ws.receive_text())
        await ws.close()

    @app.get("/events")
    async def events():
        async def ticks():
            for n in range(4):
                yield {"data": str(n)}
                await asyncio.sleep(0.4)
        return EventSourceResponse(ticks())

    return app


def test_the_jupyter_server_forwards_http_event_streams_and_websockets(jupyter_lab):
    """jupyter-server-proxy, as the workbook's JupyterLab has it: /docs finds its schema through the
    prefix, events arrive one by one (not when the stream ends), a WebSocket echoes."""
    import websockets.sync.client

    server = lab.serve(_probe_app(), name="proxy-probe")
    try:
        prefix = f"/proxy/127.0.0.1:{server.port}"
        auth = {"Authorization": f"token {jupyter_lab.token}"}
        with httpx.Client(base_url=jupyter_lab.url + prefix, headers=auth, timeout=20) as client:
            assert client.get("/items").json() == [1, 2]
            docs = client.get("/docs")
            assert docs.status_code == 200 and f"url: '{prefix}/openapi.json'" in docs.text
            assert client.get("/openapi.json").json()["servers"] == [{"url": prefix}]
            arrivals = []
            with client.stream("GET", "/events", headers={"Accept": "text/event-stream"}) as stream:
                for line in stream.iter_lines():
                    if line.startswith("data:"):
                        arrivals.append(time.monotonic())
        assert len(arrivals) == 4 and arrivals[-1] - arrivals[0] > 0.8, "the events came all at once"
        with websockets.sync.client.connect(f"ws://127.0.0.1:{jupyter_lab.url.rsplit(':', 1)[1]}{prefix}/ws",
                                            additional_headers=auth, open_timeout=20) as ws:
            ws.send("ping")
            assert ws.recv(timeout=20) == "echo ping"
    finally:
        server.stop()


# -- where a browser reaches the kernel's servers -------------------------------------------------


def test_outside_a_jupyter_server_the_browser_url_is_the_loopback_one(monkeypatch):
    monkeypatch.delenv("JUPYTERHUB_SERVICE_PREFIX", raising=False)
    jupyter_base_url.cache_clear()
    try:
        server = lab.serve(_probe_app(), name="url-probe")
        try:
            assert server.browser_url("/docs") == f"{server.url}/docs"
            assert f'href="{server.url}/docs"' in server.link("/docs").data
        finally:
            server.stop()
        monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/ada/")
        jupyter_base_url.cache_clear()
        server = lab.serve(_probe_app(), name="url-probe")
        try:
            assert server.browser_url("docs") == f"/user/ada/proxy/127.0.0.1:{server.port}/docs"
            frame = server.frame("/live")._repr_html_()
            assert f'src="/user/ada/proxy/127.0.0.1:{server.port}/live"' in frame and 'title="url-probe"' in frame
        finally:
            server.stop()
    finally:
        jupyter_base_url.cache_clear()


def test_a_kernel_finds_its_jupyter_servers_base_url(tmp_path):
    """The server that started a kernel is its parent process: its runtime file gives the base URL."""
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    (runtime / "jpserver-1.json").write_text(json.dumps({"pid": 1, "base_url": "/someone-else/"}))
    (runtime / "jpserver-2.json").write_text(json.dumps({"pid": os.getpid(), "base_url": "/lab-base"}))
    (runtime / "jpserver-3.json").write_text("{broken")
    env = {k: v for k, v in os.environ.items() if k != "JUPYTERHUB_SERVICE_PREFIX"}
    env["JUPYTER_RUNTIME_DIR"] = str(runtime)
    child = [sys.executable, "-c", "from labsupport.serving import jupyter_base_url; print(jupyter_base_url())"]
    assert subprocess.run(child, env=env, capture_output=True, text=True, timeout=120).stdout.strip() == "/lab-base/"
    (runtime / "jpserver-2.json").unlink()
    assert subprocess.run(child, env=env, capture_output=True, text=True, timeout=120).stdout.strip() == "None"


def test_only_this_servers_proxy_prefix_becomes_its_root_path():
    server = lab.serve(_probe_app(), name="prefix-probe")
    try:
        for prefix, expected in [(f"/proxy/127.0.0.1:{server.port}", True), (f"/hub/user/a/proxy/{server.port}", True),
                                 (f"/proxy/{server.port + 1}", False), ("https://evil.example/x", False)]:
            docs = server.client.get("/docs", headers={"X-Forwarded-Prefix": prefix})
            assert docs.status_code == 200
            assert (f"url: '{prefix}/openapi.json'" in docs.text) is expected, prefix
            assert server.client.get("/items", headers={"X-Forwarded-Prefix": prefix}).json() == [1, 2]
        assert "url: '/openapi.json'" in server.client.get("/docs").text
    finally:
        server.stop()


# -- the same locked environment in Codespaces and on Binder --------------------------------------


def test_codespaces_and_binder_install_the_lock():
    text = (ROOT / ".devcontainer" / "devcontainer.json").read_text()
    devcontainer = json.loads(re.sub(r"^\s*//.*$", "", text, flags=re.M))  # JSON with comment lines
    install = devcontainer["postCreateCommand"]
    assert "workbook" in install and "ensure_installed" in install, "the README's installer, not a second one"
    assert devcontainer["forwardPorts"] == [8888]
    assert "workbook.py lab" in devcontainer["postStartCommand"]
    image_python = re.search(r"python:\d-?(3\.\d+)", devcontainer["image"]).group(1)
    assert tuple(map(int, image_python.split("."))) >= (3, 11)
    binder = ROOT / "binder"
    requirements = (binder / "requirements.txt").read_text().split()
    assert "-r" in requirements and "../requirements.lock" in requirements
    assert (binder / "runtime.txt").read_text().strip() == f"python-{image_python}"
    post_build = (binder / "postBuild").read_text()
    assert "pip install --no-deps -e ." in post_build and os.access(binder / "postBuild", os.X_OK)
    assert "jupyter-server-proxy" in (ROOT / "requirements.lock").read_text()


# -- the browser -----------------------------------------------------------------------------------

STATE_JS = """(path) => {
  const app = window.jupyterapp;
  const panel = Array.from(app.shell.widgets("main")).find(w => w.context && w.context.path === path);
  if (!panel || !panel.sessionContext || !panel.context.isReady) return null;
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  const cells = panel.content.widgets.filter(c => c.model.type === "code").map(c => ({
    id: c.model.id, count: c.model.executionCount, state: c.model.executionState,
    error: c.model.outputs.toJSON().some(o => o.output_type === "error")}));
  return {kernel: kernel ? kernel.status : "none", connection: kernel ? kernel.connectionStatus : "none", cells};
}"""

OUTPUTS_JS = """(path) => {
  const panel = Array.from(window.jupyterapp.shell.widgets("main")).find(w => w.context && w.context.path === path);
  return panel.content.widgets.filter(c => c.model.type === "code").map(c => ({
    id: c.model.id, outputs: c.model.outputs.toJSON()}));
}"""

OPEN_JS = """async (path) => {
  const app = window.jupyterapp;
  await app.restored;
  const panel = await app.commands.execute("docmanager:open", {path, factory: "Notebook"});
  await panel.context.ready;
  await panel.sessionContext.ready;
  app.shell.activateById(panel.id);
  // the stored counts and outputs go: a cell that shows a count afterwards ran in this run
  for (const cell of panel.content.widgets.filter(c => c.model.type === "code")) {
    cell.model.executionCount = null;
    cell.model.outputs.clear();
  }
  panel.context.model.dirty = false;
  return panel.id;
}"""

CLOSE_JS = """async (path) => {
  const panel = Array.from(window.jupyterapp.shell.widgets("main")).find(w => w.context && w.context.path === path);
  if (!panel) return;
  try { await panel.sessionContext.shutdown(); } catch (error) { /* a dead kernel: nothing to end */ }
  panel.context.model.dirty = false;  // never saved: the repository's notebooks stay as they are
  panel.dispose();
}"""

SET_SOURCE_JS = """([path, id, source]) => {
  const panel = Array.from(window.jupyterapp.shell.widgets("main")).find(w => w.context && w.context.path === path);
  panel.content.widgets.find(c => c.model.id === id).model.sharedModel.setSource(source);
}"""

ACTIVATE_JS = """(path) => {
  const app = window.jupyterapp;
  app.shell.activateById(Array.from(app.shell.widgets("main")).find(w => w.context && w.context.path === path).id);
}"""

CURRENT_JS = """(path) => {
  const current = window.jupyterapp.shell.currentWidget;
  return !!current && !!current.context && current.context.path === path
    && current.node.contains(document.activeElement);
}"""

BEGUN_JS = """(path) => {
  const s = (""" + STATE_JS + """)(path);
  return !!s && (s.kernel !== "idle" || s.cells.some(c => c.count !== null || c.state === "running"));
}"""

SCROLL_JS = """async ([path, id]) => {
  const panel = Array.from(window.jupyterapp.shell.widgets("main")).find(w => w.context && w.context.path === path);
  const index = panel.content.widgets.findIndex(c => c.model.id === id);
  await panel.content.scrollToItem(index, "start");
  return index;
}"""

INSERT_JS = """([path, source]) => {
  // A new code cell at the end of the notebook (never saved); returns its id.
  const panel = Array.from(window.jupyterapp.shell.widgets("main")).find(w => w.context && w.context.path === path);
  const shared = panel.content.model.sharedModel;
  shared.insertCell(shared.cells.length, {cell_type: "code", source});
  return panel.content.widgets[panel.content.widgets.length - 1].model.id;
}"""


def _learner_notebooks() -> list[str]:
    return [nb.filename for nb in course.load().notebooks if nb.written and nb.learner_path.exists()]


class Run:
    """One notebook's "Restart Kernel and Run All Cells" in a browser page."""

    def __init__(self, page, name: str):
        self.page, self.name = page, name
        self.started = self.finished = None
        self.problems: list[str] = []
        self.outputs: list[dict] = []
        self.settled = 0  # polls in a row that found the run over
        self.loads: list[float] = []  # the machine's load average at each poll
        self.notes: list[str] = []  # what happened on the way that is not a problem of the notebook

    def start(self) -> None:
        from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

        self.page.evaluate(OPEN_JS, self.name)
        self.page.wait_for_function(
            "(path) => { const s = (" + STATE_JS + ")(path); return s && s.kernel === 'idle'; }",
            arg=self.name, timeout=START_TIMEOUT * 1000)
        for attempt in range(2):
            # the Kernel menu acts on the current notebook: this one, once JupyterLab has made it current
            self.page.evaluate(ACTIVATE_JS, self.name)
            self.page.wait_for_function(CURRENT_JS, arg=self.name, timeout=START_TIMEOUT * 1000)
            self.page.locator(".lm-MenuBar-itemLabel", has_text=re.compile("^Kernel$")).click()
            self.page.locator(".lm-Menu-itemLabel", has_text="Restart Kernel and Run All Cells").click()
            self.page.locator(".jp-Dialog .jp-mod-accept").click()
            self.started = time.monotonic()
            try:  # begun: the kernel restarts, or a cell runs
                self.page.wait_for_function(BEGUN_JS, arg=self.name, timeout=RUN_BEGINS * 1000)
                return
            except PlaywrightTimeoutError:
                self.notes.append(f"Restart Kernel and Run All began nothing within {RUN_BEGINS:g} s "
                                  f"(try {attempt + 1})")
        self.problems.append(self.notes[-1])

    def poll(self) -> bool:
        """Whether the run is over (finished, failed or out of time)."""
        if self.problems:  # it never began
            self.finished = time.monotonic()
            return True
        state = self.page.evaluate(STATE_JS, self.name)
        elapsed = time.monotonic() - self.started
        self.loads.append(os.getloadavg()[0])
        if state is None:
            self.problems.append("the notebook's panel went away")
        elif state["kernel"] == "dead" or state["connection"] == "disconnected" and elapsed > 5:
            self.problems.append(f"the kernel died (status {state['kernel']}, connection {state['connection']})")
        elif self._over(state, elapsed > self.budget):
            # over: every cell ran, or one failed (Run All stops there), or the budget is spent;
            # seen twice in a row, since between two cells the kernel is idle for a moment
            self.settled += 1
            if self.settled < 2:
                return False
            not_run = [c["id"] for c in state["cells"] if c["count"] is None]
            if elapsed > self.budget and not_run:
                self.problems.append(f"still running after its budget of {self.budget:.0f} s ({self._where(state)})")
            elif not_run and not any(c["error"] for c in state["cells"]):
                self.problems.append(f"cells that did not run: {', '.join(not_run)}")
        elif elapsed > self.budget:
            self.problems.append(f"still running after its budget of {self.budget:.0f} s ({self._where(state)})")
        else:
            self.settled = 0
            return False
        self.finished = time.monotonic()
        self.outputs = self.page.evaluate(OUTPUTS_JS, self.name) if state is not None else []
        for cell in self.outputs:
            for output in cell["outputs"]:
                if output.get("output_type") == "error":
                    self.problems.append(f"cell {cell['id']}: {output.get('ename')}: {output.get('evalue', '')[:200]}")
        return True

    @staticmethod
    def _where(state: dict) -> str:
        """Where a run that is out of time stands: the kernel, the cells running, the last cell that ran."""
        cells = state["cells"]
        ran = [c["id"] for c in cells if c["count"] is not None]
        running = [c["id"] for c in cells if c["state"] == "running"]
        return (f"kernel {state['kernel']}, {len(ran)} of {len(cells)} code cells ran, last {ran[-1] if ran else 'none'}"
                f", running: {', '.join(running) or 'none'}")

    @property
    def budget(self) -> float:
        """NOTEBOOK_BUDGET on an idle machine, stretched by the mean load per core during the run (5x at most)."""
        busy = sum(self.loads) / max(1, len(self.loads)) / (os.cpu_count() or 1)
        return NOTEBOOK_BUDGET * min(5.0, max(1.0, busy))

    @staticmethod
    def _over(state: dict, out_of_time: bool) -> bool:
        cells = state["cells"]
        quiet = state["kernel"] == "idle" and all(c["state"] != "running" for c in cells)
        done = all(c["count"] is not None for c in cells) or any(c["error"] for c in cells)
        return quiet and (done or out_of_time)

    @property
    def seconds(self) -> float:
        return self.finished - self.started

    def loopback_links(self) -> list[str]:
        """Addresses on the kernel's loopback interface in what the browser renders (HTML, JS)."""
        found = []
        for cell in self.outputs:
            for output in cell["outputs"]:
                for kind in ("text/html", "application/javascript"):
                    text = output.get("data", {}).get(kind, "")
                    text = "".join(text) if isinstance(text, list) else text
                    for match in re.findall(r"(?:https?|wss?)://(?:127\.0\.0\.1|localhost)(?::\d+)?[^\s\"'<>:]*", text):
                        found.append(f"{self.name}, cell {cell['id']}: {match}")
        return sorted(set(found))


def _table_fixture():
    """An exercise and a buggy fixture of it that passes some visible checks and fails others."""
    for exercise_id in TABLE_EXERCISES:
        try:
            exercise = course.exercise(exercise_id)
            suite = suites.get(exercise_id)
        except Exception:
            continue
        if not exercise.notebook.learner_path.exists():
            continue
        visible = {c.name for c in suite.checks if not c.hidden}
        for fixture in fixtures.of(exercise):
            failing = fixture.fails & visible
            if fixture.kind == "buggy" and failing and failing != visible:
                return exercise, suite, fixture
    return None


def _run_cell(page, name: str, cell_id: str) -> None:
    """Select the cell by a click on its prompt and press Shift+Enter, as a learner runs a cell."""
    index = page.evaluate(SCROLL_JS, [name, cell_id])
    cell = page.locator(f'.jp-Notebook:visible .jp-Cell[data-windowed-list-index="{index}"]')
    cell.locator(".jp-InputPrompt").click()
    page.keyboard.press("Shift+Enter")


def _check_table(page, lab_server, exercise, suite, fixture) -> None:
    """Run the fixture as the exercise cell, then the check cell; read the table the browser shows."""
    name = exercise.notebook.filename
    page.evaluate(ACTIVATE_JS, name)
    page.evaluate(SET_SOURCE_JS, [name, f"{exercise.id}-solution", fixture.source])
    _run_cell(page, name, f"{exercise.id}-solution")
    _run_cell(page, name, f"{exercise.id}-check")
    page.wait_for_function(
        "(path) => { const s = (" + STATE_JS + ")(path); return s && s.kernel === 'idle' && "
        "s.cells.every(c => c.state !== 'running'); }", arg=name, timeout=NOTEBOOK_BUDGET * 1000)
    page.evaluate(SCROLL_JS, [name, f"{exercise.id}-check"])
    cell = page.locator(".jp-Notebook:visible .jp-Cell:has(.jp-OutputArea-output table)").filter(
        has_text=f"{exercise.id}: {exercise.title}")
    table = cell.locator(".jp-OutputArea-output table")
    table.wait_for(state="visible", timeout=30_000)
    rows = table.locator("tbody tr").all()
    seen = {}
    for row in rows:
        status, description, points, why = [td.inner_text().strip() for td in row.locator("td").all()]
        seen[description] = (status, points, why)
    visible = [c for c in suite.checks if not c.hidden]
    shown = cell.locator(".jp-OutputArea-output").inner_text()
    assert set(seen) == {c.description for c in visible}, shown
    for check in visible:
        status, points, why = seen[check.description]
        if check.name in fixture.fails:
            assert status.endswith("fail") and points == f"0/{check.points}" and why, (check.name, seen[check.description])
        else:
            assert status.endswith("pass") and points == f"{check.points}/{check.points}" and not why, \
                (check.name, shown)
    earned = sum(c.points for c in visible if c.name not in fixture.fails)
    header = cell.locator(".jp-OutputArea-output b").first.inner_text()
    assert header == f"{exercise.id}: {exercise.title}"
    assert f"{earned}/{suite.visible_points} points" in cell.locator(".jp-OutputArea-output").inner_text()
    recorded = progress.load(lab_server.record / progress.FILENAME).exercises[exercise.id]
    assert (recorded["earned"], recorded["possible"]) == (earned, suite.visible_points)


PROXY_PAGE_CELL = '''import asyncio
from fastapi import FastAPI, WebSocket
from fastapi.responses import HTMLResponse
from sse_starlette import EventSourceResponse

probe_app = FastAPI()
PAGE = """<!doctype html><p id="ws">waiting</p><p id="sse">waiting</p><script>
const url = new URL("ws", location.href);
url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
const ws = new WebSocket(url);
ws.onopen = () => ws.send("ping");
ws.onmessage = (event) => { document.getElementById("ws").textContent = event.data; };
const times = [], source = new EventSource("events");
source.onmessage = (event) => {
  times.push(performance.now());
  if (event.data === "last") { source.close(); document.getElementById("sse").textContent =
    `${times.length} events over ${Math.round(times[times.length - 1] - times[0])} ms`; }
};
</script>"""


@probe_app.get("/live")
async def live() -> HTMLResponse:
    return HTMLResponse(PAGE)


@probe_app.websocket("/ws")
async def echo(ws: WebSocket) -> None:
    await ws.accept()
    await ws.send_text("echo " + await ws.receive_text())


@probe_app.get("/events")
async def events() -> EventSourceResponse:
    async def ticks():
        for n in range(4):
            yield {"data": str(n)}
            await asyncio.sleep(0.4)
        yield {"data": "last"}
    return EventSourceResponse(ticks())


probe = lab.serve(probe_app, name="probe")
probe.frame("/live", height=120)
'''


def _check_proxied_views(page, context, name: str) -> None:
    """The start-here notebook's /docs link, and a live page in an iframe, through the Jupyter server."""
    page.evaluate(ACTIVATE_JS, name)
    link = page.locator(".jp-OutputArea-output a", has_text="API docs").first
    href = link.get_attribute("href")
    assert re.fullmatch(r"/proxy/127\.0\.0\.1:\d+/docs", href), href
    with context.expect_page() as opened:
        link.click()
    docs = opened.value
    docs.wait_for_load_state("domcontentloaded", timeout=60_000)
    assert docs.url.split("?")[0].endswith(href) and docs.title() == "hello - Swagger UI"
    schema_url = re.search(r"url: '([^']+)'", docs.content()).group(1)
    assert schema_url == href[: -len("/docs")] + "/openapi.json", schema_url
    # Swagger UI's own scripts come from a CDN (FastAPI's default), which a test machine may not reach:
    # fetch the schema from the docs page the way Swagger UI does, through the proxy
    schema = docs.evaluate("async (url) => (await fetch(url)).json()", schema_url)
    assert schema["info"]["title"] == "hello" and "/hello" in schema["paths"]
    docs.close()
    _run_cell(page, name, page.evaluate(INSERT_JS, [name, PROXY_PAGE_CELL]))
    frame_element = page.locator("iframe[title=probe]")
    frame_element.wait_for(timeout=60_000)
    assert re.fullmatch(r"/proxy/127\.0\.0\.1:\d+/live", frame_element.get_attribute("src"))
    frame = page.frame_locator("iframe[title=probe]")
    frame.locator("#ws", has_text="echo ping").wait_for(timeout=30_000)
    summary = frame.locator("#sse", has_text="events over")
    summary.wait_for(timeout=30_000)
    count, spread = map(int, re.match(r"(\d+) events over (\d+) ms", summary.inner_text()).groups())
    assert count == 5 and spread > 800, f"the events arrived together ({count} over {spread} ms): buffered"


@pytest.mark.timeout(900)
def test_every_notebook_runs_all_in_jupyterlab(jupyter_lab):
    missing = _missing_browser()
    if missing:
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    names = [START_HERE, *[n for n in _learner_notebooks() if n != START_HERE]]
    if ONLY:  # a subset while working on one notebook: LAB_BROWSER_NOTEBOOKS=00,06
        names = [n for n in names if n[:2] in ONLY.split(",")]
    table = _table_fixture()
    runs: list[Run] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()  # one JupyterLab; the notebooks that run at once are tabs of it
        page.goto(f"{jupyter_lab.url}/lab?token={jupyter_lab.token}")
        page.wait_for_function("() => window.jupyterapp && window.jupyterapp.started", timeout=START_TIMEOUT * 1000)
        later = {START_HERE, table[0].notebook.filename if table else None}  # looked at once all have run
        waiting, active = list(names), []
        began, loads = time.monotonic(), []
        while waiting or active:
            while waiting and len(active) < max(1, PARALLEL):
                run = Run(page, waiting.pop(0))
                run.start()
                active.append(run)
            time.sleep(0.25)
            loads.append(os.getloadavg()[0])
            for run in list(active):
                if run.poll():
                    active.remove(run)
                    runs.append(run)
                    if run.name not in later or run.problems:
                        page.evaluate(CLOSE_JS, run.name)
        total = time.monotonic() - began
        ran = {run.name: run for run in runs}
        if table and table[0].notebook.filename in ran and not ran[table[0].notebook.filename].problems:
            _check_table(page, jupyter_lab, *table)
        if START_HERE in ran and not ran[START_HERE].problems:
            _check_proxied_views(page, context, START_HERE)
        browser.close()
    report = "\n".join(f"{run.name}: {run.seconds:.1f} s" + "".join(f"\n    {p}" for p in run.notes + run.problems)
                       for run in runs)
    print(f"\nRun All in JupyterLab, {PARALLEL} at a time, {total:.0f} s in all (load {os.getloadavg()[0]:.1f}):\n"
          + report)
    assert sorted(run.name for run in runs) == sorted(names)
    assert not any(run.problems for run in runs), report
    # the budget is a learner's, on an idle machine: while other tests share the cores (CI runs four
    # workers on two), it stretches by how many runnable tasks each core had on average
    busy = max(1.0, sum(loads) / max(1, len(loads)) / (os.cpu_count() or 1))
    assert total <= TOTAL_BUDGET * busy, (f"all notebooks took {total:.0f} s, more than {TOTAL_BUDGET:g} s "
                                          f"(x {busy:.1f} for the machine's load):\n{report}")
    recorded = progress.load(jupyter_lab.record / progress.FILENAME).exercises
    assert set(recorded) == {e.id for e in course.load().exercises if e.notebook.filename in names}, \
        "every check cell run in JupyterLab is recorded"
    loopback = [link for run in runs for link in run.loopback_links()]
    assert not loopback, ("the browser is sent to the kernel's loopback address, which a remote JupyterLab "
                          "cannot reach; use server.browser_url(), .link() or .frame():\n" + "\n".join(loopback))
    if table is None:
        pytest.fail(f"none of {', '.join(TABLE_EXERCISES)} has a buggy fixture that passes some visible checks")
