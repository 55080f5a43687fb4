"""A real browser against the notebooks' live views: Chromium (Debian's /usr/bin/chromium), driven
by Playwright for Python.

- notebook 03's live page, on the reference notification app: the browser's own EventSource, cut
  off as by a network failure, reconnects with Last-Event-ID and gets exactly the notifications it
  missed, in order, once each;
- notebook 02's live page, on the reference chat app: two panes connect with the bearer subprotocol,
  join a room and see each other's messages;
- what the notebooks say browsers do: a WebSocket whose server picks no subprotocol, or refuses the
  handshake, only gets close code 1006; an EventSource answered 204 stops for good.

CI installs the browser with `apt-get install -y chromium`; without it these tests are skipped.
"""
import time
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Response, WebSocket, WebSocketException
from fastapi.responses import HTMLResponse

from labsupport import course, fixtures, notebook, program, serving

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
WAIT_MS = 10_000

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    yield page
    context.close()


def notebook_namespace(number: str, exercise_id: str, cell_ids: list[str]) -> dict:
    """The notebook's setup cells, its exercise's reference solution and the named cells, run in a
    fresh namespace, in the notebook's order."""
    exercise = course.exercise(exercise_id)
    cells = program.shipped_cells_of(course.notebook(number).solution_path)
    namespace = {"__name__": "__browser_test__"}
    for cell in cells:
        if notebook.role(cell) == "setup":
            source = cell["source"]
        elif cell.get("id") == f"{exercise_id}-solution":
            source = fixtures.without_markers(fixtures.reference_cell(exercise))
        elif cell.get("id") in cell_ids:
            source = cell["source"]
        else:
            continue
        exec(compile(source, f"<cell {cell.get('id')}>", "exec", dont_inherit=True), namespace)
    return namespace


def served(app, name: str) -> serving.Server:
    server = serving.Server(app, name=f"browser-{name}", graceful_timeout=0.5)
    server._start()
    return server


# -- notebook 03: EventSource resumes with Last-Event-ID ------------------------------------------


@pytest.fixture
def notifications():
    namespace = notebook_namespace("03", "03-notifications", ["live-notifications-page", "live-cuttable", "live-view-code"])
    view = namespace["notifications_view"](namespace["notify_app"])
    server = served(view, "notifications")
    yield server, view.state.cuttable
    server.stop()


def test_eventsource_reconnects_with_last_event_id_and_gets_exactly_what_it_missed(page, notifications):
    server, cuttable = notifications

    def publish(*texts: str) -> None:
        for text in texts:
            assert server.client.post("/live/publish", json={"text": text}).status_code == 200

    def state_is(text: str) -> None:
        page.wait_for_function(f"document.getElementById('state').textContent === {text!r}")

    def received(count: int) -> list:
        page.wait_for_function(f"window.received.length >= {count}")
        return page.evaluate("window.received")

    page.goto(f"{server.url}/live")
    state_is("open")
    publish("one", "two")
    assert [event["text"] for event in received(2)] == ["one", "two"]

    server.client.post("/live/drop")  # cut the stream, hold the reconnect
    state_is("reconnecting...")
    deadline = time.monotonic() + WAIT_MS / 1000
    while len(cuttable.requests) < 2 and time.monotonic() < deadline:  # the browser's reconnect, held
        time.sleep(0.01)
    publish("three", "four", "five")  # while the browser is disconnected
    server.client.post("/live/release")
    state_is("open")
    publish("six")

    received(6)
    time.sleep(0.3)  # a duplicate would arrive right behind
    events = page.evaluate("window.received")
    assert [event.get("text") for event in events] == ["one", "two", "three", "four", "five", "six"]
    ids = [int(event["id"]) for event in events]
    assert ids == sorted(set(ids)), ids
    assert cuttable.requests[0] is None
    assert cuttable.requests[1:] == [str(ids[1])], "the reconnect should carry the id of the last event seen"


# -- notebook 02: the chat page ---------------------------------------------------------------------


def test_chat_page_connects_with_the_bearer_subprotocol_and_chats(page):
    namespace = notebook_namespace("02", "02-chat-rooms", ["live-chat-page", "live-view-code"])
    server = served(namespace["live_view"](namespace["chat_app"], namespace["CHAT_PAGE"]), "chat")
    try:
        page.goto(f"{server.url}/live")
        page.wait_for_function("[...document.querySelectorAll('.state')].every(s => s.textContent === 'connected')")
        page.wait_for_function("document.getElementById('members').textContent === 'ada, bob'")
        ada_input = page.locator(".pane[data-user=ada] input")
        ada_input.fill("hello from the browser")
        ada_input.press("Enter")
        page.wait_for_function("document.querySelector('.pane[data-user=bob] .log').textContent"
                               ".includes('hello from the browser')")
        assert '"user": "ada"' in page.locator(".pane[data-user=bob] .log").text_content()
    finally:
        server.stop()


# -- what the notebooks say about browsers ----------------------------------------------------------

PROBE = """<!doctype html><script>
window.results = {};
function probe(name, url, protocols) {
  const ws = new WebSocket(url, protocols);
  ws.onopen = () => { window.results[name] = "open"; };
  ws.onclose = (event) => { window.results[name] = window.results[name] === "open" ? "open, then closed" :
                                                                                     `closed ${event.code}`; };
}
probe("no subprotocol picked", `ws://${location.host}/ws/careless`, ["bearer", "token-ada"]);
probe("refused before accept", `ws://${location.host}/ws/refusing`, ["bearer", "token-ada"]);
probe("subprotocol picked", `ws://${location.host}/ws/careful`, ["bearer", "token-ada"]);
const source = new EventSource("/gone");
source.onerror = () => { window.results.eventsource = source.readyState; };
</script>"""


def test_browsers_see_only_code_1006_and_stop_eventsource_on_204(page):
    app = FastAPI()
    gone_requests = []
    app.get("/")(lambda: HTMLResponse(PROBE))

    @app.get("/gone")
    async def gone():
        gone_requests.append(1)
        return Response(status_code=204)

    @app.websocket("/ws/careless")
    async def careless(ws: WebSocket):
        await ws.accept()  # no subprotocol picked
        await ws.receive()

    @app.websocket("/ws/refusing")
    async def refusing(ws: WebSocket):
        raise WebSocketException(code=1008)

    @app.websocket("/ws/careful")
    async def careful(ws: WebSocket):
        await ws.accept(subprotocol="bearer")
        await ws.receive()

    server = served(app, "probe")
    try:
        page.goto(server.url + "/")
        page.wait_for_function("Object.keys(window.results).length === 4")
        results = page.evaluate("window.results")
        assert results["no subprotocol picked"] == "closed 1006"
        assert results["refused before accept"] == "closed 1006"
        assert results["subprotocol picked"] == "open"
        assert results["eventsource"] == 2  # EventSource.CLOSED: it gave up
        time.sleep(0.5)
        assert len(gone_requests) == 1, "an EventSource answered 204 must not reconnect"
    finally:
        server.stop()
