"""Serve an ASGI app on a loopback port in a background thread, and talk to it over the wire.

    server = serve(app)              # re-running the cell replaces the previous server
    server.client.get("/items")      # httpx.Client on the server's base URL
    with server.websocket("/ws") as ws: ...
    with server.sse("/events") as events: ...
    server.stop()

Server warnings and tracebacks are kept on the handle (server.logs, server.errors), not printed.

What the browser opens goes through the Jupyter server: the kernel's loopback ports are out of a
browser's reach on a remote JupyterLab (a JupyterHub, Binder, Codespaces), while the Jupyter server,
with jupyter-server-proxy, forwards `{base_url}proxy/127.0.0.1:PORT/...` (HTTP, WebSocket, and SSE
when the request accepts `text/event-stream`) to the kernel's server, locally and remotely alike:

    server.browser_url("/docs")      where a browser reaches /docs (the loopback URL outside Jupyter)
    server.link("/docs")             a link to it, for a cell's output
    server.frame("/live")            the page at /live in an iframe

A request that arrives through the proxy carries its prefix (X-Forwarded-Prefix); the app sees it as
its root_path, as behind any reverse proxy, so FastAPI's /docs loads /openapi.json through the proxy
too. A page the app serves should address the app with URLs relative to itself (`fetch("items")`,
`new URL("ws/chat", location.href)` with the scheme turned into ws: or wss:), which work at either
address. The proxy answers a WebSocket handshake with the first subprotocol the browser offers.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import html
import inspect
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import httpx_sse
import uvicorn
import websockets.sync.client

from . import program
from .errors import LabError

START_TIMEOUT = 10.0

_running: dict[str, "Server"] = {}
_running_lock = threading.Lock()


def looks_like_asgi(app: object) -> bool:
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

    def __init__(self, app, name: str, graceful_timeout: float, sock: socket.socket | None = None,
                 context: contextvars.Context | None = None):
        """`sock`: a listening socket to serve on (a duplicate is used, so the caller's stays open
        and can serve a restarted app at the same address); `context`: the contextvars the server
        thread runs in (a check run's settings)."""
        self.app = app
        self.name = name
        self.logs: list[str] = []
        self.errors: list[str] = []
        self.exceptions: list[BaseException] = []  # what the app raised while serving
        self.error_messages: list[str] = []          # the text of every error record
        self._formatter = logging.Formatter("%(levelname)s %(name)s: %(message)s")
        self._context = context
        self._loop = None
        self._sock = sock.dup() if sock is not None else listening_socket()
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            _BehindJupyterProxy(app, self.port),
            log_config=None,
            access_log=False,
            lifespan="auto",
            timeout_graceful_shutdown=graceful_timeout,
            ws="websockets-sansio",
        )
        self._uvicorn = _Uvicorn(config, self)
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
        if self._context is not None:
            self._context.run(self._serve)
        else:
            self._serve()

    def _serve(self) -> None:
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
        """Stop the server: its open streams and WebSockets end, the thread and the port are freed.

        In-flight requests get `graceful_timeout` seconds (see serve()) to complete. Other servers
        in the process, and their streams, are not touched."""
        for client in self._clients:
            client.close()
        self._clients.clear()
        self._uvicorn.should_exit = True
        if self._thread is not None and self._thread.is_alive():
            self._end_sse_streams()
            self._thread.join(timeout)
            if self._thread.is_alive():
                self._uvicorn.force_exit = True
                self._thread.join(timeout)
        self._sock.close()
        with _running_lock:
            if _running.get(self.name) is self:
                del _running[self.name]

    def _end_sse_streams(self) -> None:
        """sse-starlette ends its streams on a process-wide flag, or on events it keeps per thread:
        set this server's thread's events, so that other servers' streams go on."""
        import sse_starlette.sse as sse

        def on_server_thread() -> None:
            for event in list(sse._get_shutdown_state().events):
                event.set()

        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(on_server_thread)
            except RuntimeError:  # the loop closed meanwhile
                pass

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _keep(self, record: logging.LogRecord) -> None:
        text = self._formatter.format(record)
        self.logs.append(text)
        if record.exc_info or record.levelno >= logging.ERROR:
            self.errors.append(text)
            self.error_messages.append(record.getMessage())
        if program.raised_by_the_app(record) and len(self.exceptions) < 100:
            self.exceptions.append(record.exc_info[1])

    # -- what a browser opens --------------------------------------------------------------
    def browser_url(self, path: str = "/") -> str:
        """Where a browser reaches `path` of this server: through the Jupyter server that runs this
        kernel (a path on its own origin), else at the loopback address."""
        if not path.startswith("/"):
            path = "/" + path
        base = jupyter_base_url()
        return self.url + path if base is None else f"{base}proxy/127.0.0.1:{self.port}{path}"

    def link(self, path: str = "/docs", text: str | None = None):
        """A link to `path` for a cell's output (it opens in a new browser tab)."""
        from IPython.display import HTML

        url = html.escape(self.browser_url(path))
        label = html.escape(text or f"{self.name}: {path}")
        return HTML(f'<a href="{url}" target="_blank" rel="noopener">{label}</a>')

    def frame(self, path: str = "/", height: int = 360):
        """The page at `path` in an iframe, for a cell's output (see the module's notes on pages)."""
        from IPython.display import IFrame

        return IFrame(self.browser_url(path), width="100%", height=int(height),
                      extras=[f'title="{html.escape(self.name)}"', 'style="border:1px solid #ccc"'])

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


class _Uvicorn(uvicorn.Server):
    """uvicorn's server, which tells its handle the event loop it runs on (to end its streams)."""

    def __init__(self, config: uvicorn.Config, handle: Server):
        super().__init__(config)
        self._handle = handle

    async def startup(self, sockets=None) -> None:
        import asyncio

        self._handle._loop = asyncio.get_running_loop()
        await super().startup(sockets=sockets)


class _BehindJupyterProxy:
    """The app, told its root_path when a request comes through jupyter-server-proxy for this port.

    The proxy strips its prefix (`{base_url}proxy/127.0.0.1:PORT`) and names it in
    X-Forwarded-Prefix; uvicorn's convention for an app behind a prefix is root_path set and the
    prefix kept at the start of path (Starlette routes on what follows). Only this server's own
    prefix is taken; every other request reaches the app untouched."""

    def __init__(self, app, port: int):
        self.app = app
        self._endings = tuple(f"/proxy/{host}{port}" for host in ("", "127.0.0.1:", "localhost:"))

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket") and not scope.get("root_path"):
            prefix = next((v for k, v in scope.get("headers", ()) if k == b"x-forwarded-prefix"), None)
            if prefix is not None:
                prefix = prefix.decode("latin-1").rstrip("/")
                if prefix.startswith("/") and prefix.endswith(self._endings) and "?" not in prefix:
                    raw = scope.get("raw_path") or scope["path"].encode("utf-8")
                    scope = {**scope, "root_path": prefix, "path": prefix + scope["path"],
                             "raw_path": prefix.encode("latin-1") + raw}
        await self.app(scope, receive, send)


@functools.cache
def jupyter_base_url() -> str | None:
    """The base URL of the Jupyter server this kernel runs under (its pages and jupyter-server-proxy
    live below it), or None outside one (nbclient, a console, the tests). JupyterHub and Binder name
    it in JUPYTERHUB_SERVICE_PREFIX; a plain JupyterLab in the runtime file it writes for its pid,
    which is this kernel's parent process."""
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX")
    if prefix:
        return prefix if prefix.endswith("/") else prefix + "/"
    try:
        from jupyter_core.paths import jupyter_runtime_dir

        parent = os.getppid()
        for info in sorted(os.scandir(jupyter_runtime_dir()), key=lambda entry: entry.name):
            if info.name.startswith("jpserver-") and info.name.endswith(".json"):
                try:
                    with open(info.path, encoding="utf-8") as file:
                        server = json.load(file)
                except (OSError, ValueError):
                    continue
                if isinstance(server, dict) and server.get("pid") == parent:
                    base = str(server.get("base_url") or "/")
                    return base if base.endswith("/") else base + "/"
    except (ImportError, OSError):
        pass
    return None


def listening_socket(port: int = 0, reuse_port: bool = False) -> socket.socket:
    """A socket bound to a loopback port, `port` or a free one (listening starts when a server
    uses it). `reuse_port`: several sockets may be bound to the port (see runner.AppControl).

    IPPROTO_TCP so that asyncio sets TCP_NODELAY on each connection (headers and body are separate
    writes, which Nagle's algorithm would hold back 40 ms)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    return sock


def serve(app, name: str = "app", graceful_timeout: float = 0.5) -> Server:
    """Start `app` on a free loopback port in a background thread and return its Server handle.

    A server of the same `name` that is still running (from an earlier run of the cell) is
    stopped first. In-flight requests get `graceful_timeout` seconds when the server stops."""
    if not looks_like_asgi(app):
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
