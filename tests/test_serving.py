import asyncio
import contextlib
import os
import socket
import threading
import time

import httpx
import pytest
from fastapi import FastAPI, WebSocket
from fastapi.responses import StreamingResponse
from sse_starlette.sse import EventSourceResponse

import labsupport as lab


def make_app() -> FastAPI:
    app = FastAPI()

    @app.get("/hello")
    async def hello():
        return {"hello": "world"}

    @app.get("/boom")
    async def boom():
        raise RuntimeError("kaboom")

    @app.get("/forever")
    async def forever():
        async def ticks():
            while True:
                yield b"tick\n"
                await asyncio.sleep(0.01)
        return StreamingResponse(ticks())

    @app.get("/events")
    async def events():
        async def gen():
            n = 0
            while True:
                n += 1
                yield {"data": str(n)}
                await asyncio.sleep(0.01)
        return EventSourceResponse(gen())

    @app.websocket("/ws")
    async def ws(websocket: WebSocket):
        await websocket.accept()
        while True:
            text = await websocket.receive_text()
            await websocket.send_text(text.upper())

    return app


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_serves_over_a_real_port():
    with lab.serve(make_app(), name="t-basic") as server:
        assert server.url.startswith("http://127.0.0.1:")
        assert server.client.get("/hello").json() == {"hello": "world"}
        with socket.create_connection(("127.0.0.1", server.port), timeout=2):
            pass
    assert not server.running


def test_rerunning_replaces_the_old_server_and_frees_its_port():
    first = lab.serve(make_app(), name="t-replace")
    port = first.port
    second = lab.serve(make_app(), name="t-replace")
    assert not first.running and second.running
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/hello", timeout=2)
    second.stop()


def test_twenty_restarts_leak_no_threads_or_descriptors():
    lab.serve(make_app(), name="t-leak").stop()  # warm up imports and lazy singletons
    threads, fds = threading.active_count(), open_fds()
    for _ in range(20):
        server = lab.serve(make_app(), name="t-leak")
        assert server.client.get("/hello").status_code == 200
        with server.websocket("/ws") as ws:
            ws.send("x")
            assert ws.recv(timeout=2) == "X"
    server.stop()
    deadline = time.monotonic() + 5
    while threading.active_count() > threads and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= threads
    assert open_fds() <= fds


def test_stop_ends_open_streams_promptly():
    server = lab.serve(make_app(), name="t-streams")
    ended = {}

    def read_stream():
        try:
            with httpx.stream("GET", server.url + "/forever", timeout=5) as response:
                for _ in response.iter_lines():
                    pass
        except httpx.HTTPError:
            pass
        ended["stream"] = True

    def read_sse():
        try:
            with server.sse("/events") as events:
                for _ in events:
                    pass
        except httpx.HTTPError:
            pass
        ended["sse"] = True

    def read_ws():
        try:
            with server.websocket("/ws") as ws:
                ws.recv(timeout=5)
        except Exception:
            pass
        ended["ws"] = True

    readers = [threading.Thread(target=f) for f in (read_stream, read_sse, read_ws)]
    for reader in readers:
        reader.start()
    time.sleep(0.2)
    started = time.monotonic()
    server.stop()
    for reader in readers:
        reader.join(5)
    assert ended == {"stream": True, "sse": True, "ws": True}
    assert time.monotonic() - started < 3


def test_stopping_one_server_leaves_another_servers_streams_alone():
    keeps, stops = lab.serve(make_app(), name="t-keeps"), lab.serve(make_app(), name="t-stops")
    received = []
    try:
        with keeps.sse("/events") as events:
            stream = events.iter_sse() if hasattr(events, "iter_sse") else events
            received.append(next(stream).data)
            started = time.monotonic()
            stops.stop()
            while time.monotonic() - started < 1.0:  # sse-starlette looks at its flags every 0.5 s
                received.append(next(stream).data)
        assert len(received) > 10, "the other server's stream ended when this one stopped"
    finally:
        keeps.stop()


def test_tracebacks_stay_on_the_handle(capfd):
    with lab.serve(make_app(), name="t-errors") as server:
        assert server.client.get("/boom").status_code == 500
    out, err = capfd.readouterr()
    assert "kaboom" not in out + err
    assert any("kaboom" in entry for entry in server.errors)


def test_a_request_cut_at_shutdown_is_not_an_app_error():
    """uvicorn cancels what outlasts the graceful timeout and logs the CancelledError: that is the
    server's doing, so it is not among what the app raised (a RuntimeError is)."""
    app = make_app()
    in_handler = threading.Event()

    @app.get("/slow")
    async def slow():
        in_handler.set()
        await asyncio.sleep(30)

    def call_slow():
        with contextlib.suppress(httpx.HTTPError):  # the server cuts it: no answer is expected
            httpx.get(server.url + "/slow", timeout=10)

    server = lab.serve(app, name="t-cut", graceful_timeout=0.2)
    assert server.client.get("/boom").status_code == 500
    waiting = threading.Thread(target=call_slow, daemon=True)
    waiting.start()
    assert in_handler.wait(10), "the slow request never reached its handler"
    server.stop()
    waiting.join(timeout=10)
    assert any("graceful shutdown exceeded" in entry for entry in server.errors), server.errors
    assert [type(error).__name__ for error in server.exceptions] == ["RuntimeError"]


@pytest.mark.parametrize("not_an_app", [lambda: None, FastAPI, 42, "app", None])
def test_a_non_app_gets_a_clear_message(not_an_app):
    with pytest.raises(lab.LabError, match="needs an ASGI app"):
        lab.serve(not_an_app, name="t-bad")


def test_a_failing_startup_is_reported():
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app):
        raise RuntimeError("no database today")
        yield

    with pytest.raises(lab.LabError, match="did not start"):
        lab.serve(FastAPI(lifespan=lifespan), name="t-startup")
