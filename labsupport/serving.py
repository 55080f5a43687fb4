"""Serve an ASGI app on a loopback port in a background thread, and talk to it over the wire.

    server = serve(app)              # re-running the cell replaces the previous server
    server.client.get("/items")      # httpx.Client on the server's base URL
    with server.websocket("/ws") as ws: ...
    with server.sse("/events") as events: ...
    server.stop()

Server warnings and tracebacks are kept on the handle (server.logs, server.errors), not printed.
"""
from __future__ import annotations

import contextlib
import contextvars
import inspect
import logging
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import httpx_sse
import uvicorn
import websockets.sync.client

from .errors import LabError

START_TIMEOUT = 10.0

_running: dict[str, "Server"] = {}
_running_lock = threading.Lock()


def _looks_like_asgi(app: object) -> bool:
    if not callable(app) or inspect.isclass(app):
        return False
    call = app if inspect.isfunction(app) or inspect.ismethod(app) else getattr(app, "__call__", None)
    try:
        params = [
            p for p in inspect.signature(call).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        return False
    return len(params) == 3 and inspect.iscoroutinefunction(call)


_current_server: contextvars.ContextVar["Server | None"] = contextvars.ContextVar("lab_server", default=None)


class _RouteToServer(logging.Handler):
    """Keeps every log record written inside a served app (uvicorn, the app, its workers, even from
    their threads, which inherit the context) on that server's handle. Other records go to stderr
    as Python's last-resort handler would print them (warnings and worse)."""

    def emit(self, record: logging.LogRecord) -> None:
        server = _current_server.get()
        if server is not None:
            server._keep(record)
        elif record.levelno >= logging.WARNING and logging.getLogger().handlers == [self]:
            logging.lastResort.handle(record)  # what Python prints when no handler is configured


_root = logging.getLogger()
if not any(isinstance(h, _RouteToServer) for h in _root.handlers):
    _root.addHandler(_RouteToServer())
logging.getLogger("uvicorn").setLevel(logging.INFO)


class Server:
    """A running app. Use serve() to make one."""

    def __init__(self, app, name: str, graceful_timeout: float):
        self.app = app
        self.name = name
        self.logs: list[str] = []
        self.errors: list[str] = []
        self._formatter = logging.Formatter("%(levelname)s %(name)s: %(message)s")
        # IPPROTO_TCP so that asyncio sets TCP_NODELAY on each connection (headers and body are
        # separate writes, which Nagle's algorithm would hold back 40 ms)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="auto",
            timeout_graceful_shutdown=graceful_timeout,
            ws="websockets-sansio",
        )
        self._uvicorn = uvicorn.Server(config)
        self._thread: threading.Thread | None = None
        self._clients: list[httpx.Client] = []
        self.client = self.http_client()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Server {self.name!r} {state}>"

    # -- lifecycle -------------------------------------------------------------------------
    def _start(self) -> None:
        self._thread = threading.Thread(
            target=self._run,
            name=f"lab-server-{self.name}", daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self._uvicorn.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                detail = "\n".join(self.errors or self.logs[-5:]) or "no message from the server"
                raise LabError(f"The app {self.name!r} did not start:\n{detail}")
            time.sleep(0.002)

    def _run(self) -> None:
        _current_server.set(self)  # every task and worker thread of this server inherits it
        try:
            self._uvicorn.run(sockets=[self._sock])
        except SystemExit:  # uvicorn exits this way when the app's startup fails; it logged why
            pass
        except BaseException as error:  # keep it on the handle, out of the notebook's stderr
            self.errors.append(f"{type(error).__name__}: {error}")

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._uvicorn.should_exit

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the server: open streams and WebSockets end, the thread and the port are freed.

        In-flight requests get `graceful_timeout` seconds (see serve()) to complete."""
        import sse_starlette.sse as sse

        for client in self._clients:
            client.close()
        self._clients.clear()
        self._uvicorn.should_exit = True
        if self._thread is not None and self._thread.is_alive():
            previous = sse.AppStatus.should_exit
            sse.AppStatus.should_exit = True  # ends sse-starlette streams, which ignore uvicorn's flag
            try:
                self._thread.join(timeout)
                if self._thread.is_alive():
                    self._uvicorn.force_exit = True
                    self._thread.join(timeout)
            finally:
                sse.AppStatus.should_exit = previous
        self._sock.close()
        with _running_lock:
            if _running.get(self.name) is self:
                del _running[self.name]

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _keep(self, record: logging.LogRecord) -> None:
        text = self._formatter.format(record)
        self.logs.append(text)
        if record.exc_info or record.levelno >= logging.ERROR:
            self.errors.append(text)

    # -- clients ----------------------------------------------------------------------------
    def http_client(self, timeout: float = 10.0, **kwargs) -> httpx.Client:
        """A new httpx.Client on this server, closed when the server stops.

        Each request gets a fresh connection: uvicorn closes a connection whose app raised after
        responding (a failing background task does), and a pooled client would then fail the
        *next* request with "connection reset"."""
        kwargs.setdefault("limits", httpx.Limits(max_keepalive_connections=0))
        client = httpx.Client(base_url=self.url, timeout=timeout, **kwargs)
        self._clients.append(client)
        return client

    def async_client(self, timeout: float = 10.0, **kwargs) -> httpx.AsyncClient:
        """A new httpx.AsyncClient on this server; use it with `async with`."""
        return httpx.AsyncClient(base_url=self.url, timeout=timeout, **kwargs)

    def websocket(self, path: str, timeout: float = 5.0, **kwargs):
        """A synchronous WebSocket connection (websockets.sync.client); use it with `with`."""
        return websockets.sync.client.connect(self.ws_url + path, open_timeout=timeout, **kwargs)

    @contextlib.contextmanager
    def sse(self, path: str, method: str = "GET", timeout: float = 5.0, **kwargs) -> Iterator[Iterator[httpx_sse.ServerSentEvent]]:
        """Server-sent events from `path`, as an iterator of httpx_sse.ServerSentEvent."""
        with httpx.Client(base_url=self.url, timeout=timeout) as client:
            with httpx_sse.connect_sse(client, method, path, **kwargs) as source:
                source.response.raise_for_status()
                yield source.iter_sse()


def serve(app, name: str = "app", graceful_timeout: float = 0.5) -> Server:
    """Start `app` on a free loopback port in a background thread and return its Server handle.

    A server of the same `name` that is still running (from an earlier run of the cell) is
    stopped first. In-flight requests get `graceful_timeout` seconds when the server stops."""
    if not _looks_like_asgi(app):
        raise LabError(
            f"serve() needs an ASGI app, such as a FastAPI() instance; it got the {type(app).__name__} "
            f"{getattr(app, '__name__', '')!r}. Pass the app object itself, not a route function, "
            "a class, or the result of calling something."
        )
    with _running_lock:
        old = _running.pop(name, None)
    if old is not None:
        old.stop()
    server = Server(app, name, graceful_timeout)
    with _running_lock:
        _running[name] = server
    server._start()
    return server
