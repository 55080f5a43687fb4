"""Fault injection: make Redis or the database fail, hang or answer slowly, then restore them.

    faults = lab.faults.enable()    # before the apps start: they now reach Redis and the database
                                    # through fault points (LAB_REDIS_URL / LAB_DATABASE_URL)
    with faults.redis.hang():       # Redis stops answering until the block ends
        ...
    faults.database.slow(0.2)       # every database reply takes 0.2 s more, until restore()
    faults.restore()                # everything back to normal

A FaultProxy is a TCP proxy in front of any service, embedded or real:

| fault        | what a client sees                                                      |
|--------------|-------------------------------------------------------------------------|
| pass         | the service, as if connected directly                                   |
| slow(s)      | every reply from the service arrives `s` seconds late                   |
| hang()       | connections open, but nothing comes back until restore() (then it does) |
| refuse()     | connecting is refused, and open connections are cut                     |

SQLite has no network, so its fault point is a lock instead: hang() holds an exclusive lock from
another connection, and every statement that reads or writes the file waits (for the driver's
busy timeout, 5 s by default, then "database is locked"). `SELECT 1` reads no file, so it passes.
"""
from __future__ import annotations

import asyncio
import socket
import sqlite3
import struct
import threading
from urllib.parse import urlsplit, urlunsplit

from . import services
from .errors import LabError

PASS, SLOW, HANG, REFUSE = "pass", "slow", "hang", "refuse"


class _Loop:
    """One event loop in a daemon thread that runs every proxy of the process."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="lab-faults", daemon=True)
        self._thread.start()

    def call(self, coroutine_or_fn, timeout: float = 5.0):
        """Run a coroutine (or a plain function) on the loop and return its result."""
        if asyncio.iscoroutine(coroutine_or_fn):
            return asyncio.run_coroutine_threadsafe(coroutine_or_fn, self.loop).result(timeout)

        async def wrapper():
            return coroutine_or_fn()

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(timeout)


_loop: _Loop | None = None
_loop_lock = threading.Lock()


def _the_loop() -> _Loop:
    global _loop
    with _loop_lock:
        if _loop is None:
            _loop = _Loop()
        return _loop


class FaultPoint:
    """What every fault point offers. Each fault lasts until restore(), or until the end of a
    with-block: `with point.hang(): ...`."""

    kind = "service"

    def slow(self, seconds: float) -> "FaultPoint":
        raise NotImplementedError

    def hang(self) -> "FaultPoint":
        raise NotImplementedError

    def refuse(self) -> "FaultPoint":
        raise NotImplementedError

    def restore(self) -> "FaultPoint":
        raise NotImplementedError

    def __enter__(self) -> "FaultPoint":
        return self

    def __exit__(self, *exc) -> None:
        self.restore()


class FaultProxy(FaultPoint):
    """A TCP proxy on a loopback port in front of `upstream` (a URL such as redis://host:port/0)."""

    kind = "proxy"

    def __init__(self, upstream: str):
        parts = urlsplit(upstream)
        if not parts.hostname or not parts.port:
            raise LabError(f"a fault proxy needs a URL with a host and a port, not {upstream!r}")
        self.upstream = upstream
        self._target = (parts.hostname, parts.port)
        self.mode = PASS
        self.delay = 0.0
        self.connections = 0  # accepted since start: proves that an app goes through this proxy
        self._lab = _the_loop()
        self._flowing: asyncio.Event | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._hold: socket.socket | None = None  # keeps the port while refusing (see _set)
        self._server: asyncio.Server | None = self._lab.call(self._start())
        port = self._port = self._server.sockets[0].getsockname()[1]
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@127.0.0.1:{port}" if userinfo else f"127.0.0.1:{port}"
        self.address = f"127.0.0.1:{port}"
        self.url = urlunsplit(parts._replace(netloc=netloc))

    def __repr__(self) -> str:
        return f"<FaultProxy {self.mode}>"

    async def _start(self) -> asyncio.Server:
        self._flowing = asyncio.Event()
        self._flowing.set()
        return await asyncio.start_server(self._accept, "127.0.0.1", 0, reuse_port=True)

    async def _listen_again(self) -> None:
        try:
            self._server = await asyncio.start_server(self._accept, "127.0.0.1", self._port, reuse_port=True)
        except OSError as error:  # another socket took the port while it was closed: very unlikely
            raise LabError(f"the fault proxy could not listen again after refuse(): {error}") from None

    # -- faults ------------------------------------------------------------------------------
    def slow(self, seconds: float) -> "FaultProxy":
        """Every reply from the service arrives `seconds` later."""
        self._set(SLOW, seconds)
        return self

    def hang(self) -> "FaultProxy":
        """Nothing goes through (connections still open) until restore()."""
        self._set(HANG)
        return self

    def refuse(self) -> "FaultProxy":
        """Stop listening (connecting is refused) and cut the open connections, as a crashed
        service would."""
        self._set(REFUSE)
        return self

    def restore(self) -> "FaultProxy":
        """Back to passing everything through; what a hang held back is delivered."""
        self._set(PASS)
        return self

    def _set(self, mode: str, delay: float = 0.0) -> None:
        async def apply():
            if self._server is None:
                raise LabError("this fault proxy is closed")
            self.mode, self.delay = mode, delay
            if mode == HANG:
                self._flowing.clear()
            else:
                self._flowing.set()
            if mode == REFUSE:
                if self._server.is_serving():
                    # a bound socket that does not listen keeps the port ours (connecting is refused):
                    # once closed, an outgoing connection could take it as its ephemeral port
                    self._hold = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    self._hold.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                    self._hold.bind(("127.0.0.1", self._port))
                    self._server.close()
                for writer in list(self._open):
                    _reset(writer)
            elif not self._server.is_serving():
                await self._listen_again()
                self._hold.close()
                self._hold = None

        self._lab.call(apply())

    def close(self) -> None:
        """Stop listening and cut every connection."""
        def shut():
            if self._server is not None:
                self._server.close()
                self._server = None
            if self._hold is not None:
                self._hold.close()
                self._hold = None
            for writer in list(self._open):
                _reset(writer)
            self._flowing.set()

        self._lab.call(shut)

    # -- the proxy itself ---------------------------------------------------------------------
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.mode == REFUSE:
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            _reset(writer)  # the service itself is down: the client sees it refuse
            return
        for w in (writer, up_writer):
            sock = w.get_extra_info("socket")
            if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._open.update((writer, up_writer))
        try:
            await asyncio.gather(
                self._pump(reader, up_writer, replies=False),
                self._pump(up_reader, writer, replies=True),
            )
        finally:
            for w in (writer, up_writer):
                self._open.discard(w)
                w.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, replies: bool) -> None:
        try:
            while data := await reader.read(65536):
                await self._flowing.wait()  # a hang holds data here until restore()
                if replies and self.mode == SLOW and self.delay > 0:
                    await asyncio.sleep(self.delay)
                if self.mode == REFUSE:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            _reset(writer)  # one side ended: end the other, or a client would wait forever


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (not an orderly FIN), as a dying service's kernel would."""
    sock = writer.get_extra_info("socket")
    try:
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    writer.transport.abort()


class SQLiteLock(FaultPoint):
    """The fault point of a SQLite file: another connection that holds an exclusive lock on it."""

    kind = "sqlite"

    def __init__(self, path: str):
        self.path = path
        self.mode = PASS
        self._conn: sqlite3.Connection | None = None
        self._timer: threading.Timer | None = None
        self._generation = 0  # a timer from an earlier slow() must not end a later fault
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<SQLiteLock {self.mode}>"

    def hang(self) -> "SQLiteLock":
        """Hold an exclusive lock: statements on the file wait (up to their busy timeout)."""
        with self._lock:
            self._cancel_timer()
            self._take()
            self.mode = HANG
        return self

    def _expire(self, generation: int) -> None:
        with self._lock:
            if generation == self._generation:
                self._release()

    def slow(self, seconds: float) -> "SQLiteLock":
        """Hold the lock for `seconds` from now: statements issued meanwhile wait about that long.
        (SQLite's busy handler retries on a backoff of up to 100 ms, so waits end a little late.)"""
        with self._lock:
            self._cancel_timer()
            self._take()
            self.mode = SLOW
            self._timer = threading.Timer(seconds, self._expire, args=(self._generation,))
            self._timer.daemon = True
            self._timer.start()
        return self

    def refuse(self) -> "SQLiteLock":
        raise LabError("a SQLite file cannot refuse connections; use hang() (a held lock) instead, "
                       "or set LAB_DATABASE_URL to a PostgreSQL server for refuse()")

    def restore(self) -> "SQLiteLock":
        with self._lock:
            self._cancel_timer()
            self._release()
        return self

    def _release(self) -> None:
        if self._conn is not None:
            self._conn.rollback()
            self._conn.close()
            self._conn = None
        self.mode = PASS

    def close(self) -> None:
        self.restore()

    def _take(self) -> None:
        if self._conn is None:
            conn = sqlite3.connect(self.path, timeout=5, isolation_level=None, check_same_thread=False)
            conn.execute("BEGIN EXCLUSIVE")
            self._conn = conn

    def _cancel_timer(self) -> None:
        self._generation += 1
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None


class Faults:
    """The fault points in front of a run's Redis and database (see enable())."""

    def __init__(self, redis: FaultProxy | None, database: FaultPoint | None):
        self.redis = redis
        self.database = database

    def restore(self) -> None:
        """Every fault point back to normal."""
        for point in (self.redis, self.database):
            if point is not None:
                point.restore()

    reset = restore

    def __repr__(self) -> str:
        return (f"<Faults redis={getattr(self.redis, 'mode', None)} "
                f"database={getattr(self.database, 'mode', None)}>")


class _OwnedByTheGrader:
    """What enable() returns inside the grader's sandbox: the fault points are the grader's."""

    def __getattr__(self, name):
        raise LabError("the fault points of a graded app belong to the checks, not to the app")


def enable() -> Faults:
    """Put fault points in front of the lab's Redis and database, for apps started from now on.

    Apps that take their addresses from lab.redis_url() and lab.database_url() at startup then
    reach the services through the fault points. Calling it again returns the same fault points.
    In a check run the run's own fault points are already in place: enable() returns them."""
    if services._in_run():
        run = services.current_run()
        return run.faults if run is not None else _OwnedByTheGrader()
    lab = services.lab_services()
    points = lab.faults
    lab.through_faults = True
    return points


def current() -> Faults:
    """The fault points enable() made (LabError when fault injection is off)."""
    run = services.current_run()
    if run is not None:
        return run.faults
    lab = services.lab_services()
    if not lab.through_faults:
        raise LabError("fault injection is off: call lab.faults.enable() before the app starts, "
                       "and create the app's Redis client and database engine at startup from "
                       "lab.redis_url() and lab.database_url()")
    return lab.faults


def redis() -> FaultProxy:
    """The fault point in front of the lab's Redis (after enable())."""
    return current().redis


def database() -> FaultPoint:
    """The fault point of the lab's database (after enable())."""
    return current().database


def restore() -> None:
    """Every fault point back to normal (nothing to do when fault injection is off)."""
    lab = services.lab_services()
    if services.current_run() is not None or lab.through_faults:
        current().restore()
