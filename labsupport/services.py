"""The lab's external systems: embedded by default, real ones by environment variable.

| service  | embedded default                              | switch to a real one          |
|----------|-----------------------------------------------|-------------------------------|
| Redis    | one fakeredis server (with Lua) per lab, TCP  | LAB_REDIS_URL=redis://...     |
| database | SQLite through aiosqlite in a temporary file  | LAB_DATABASE_URL=postgresql://... |
| SMTP     | an in-process inbox (aiosmtpd) you can read   | LAB_SMTP_URL=smtp://host:port |
| time     | lab seconds: production delays x LAB_TIME_SCALE (default 0.01) |               |

Apps take every address from here at startup, so the same code runs in a notebook, in the
grader's sandbox (which passes the grader's own services through these variables) and against
real servers.
"""
from __future__ import annotations

import asyncio
import email
import email.policy
import os
import socket
import tempfile
import threading
import time
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import urlsplit

from .errors import LabError

# -- time --------------------------------------------------------------------------------------


def time_scale() -> float:
    raw = os.environ.get("LAB_TIME_SCALE", "0.01")
    try:
        scale = float(raw)
    except ValueError:
        raise LabError(f"LAB_TIME_SCALE must be a number such as 0.01, not {raw!r}") from None
    if not 0 < scale <= 1:
        raise LabError(f"LAB_TIME_SCALE must be in (0, 1], not {scale}")
    return scale


def seconds(production_seconds: float) -> float:
    """The lab duration of a delay that production gives in seconds: seconds(60) is 0.6 by default."""
    return production_seconds * time_scale()


def wait_until(condition, timeout: float = 5.0) -> bool:
    """Poll `condition()` until it is true (returns True) or `timeout` real seconds pass (False):
    for things that happen in another thread or process and announce themselves by no event."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


# -- Redis -------------------------------------------------------------------------------------

def _teach_fakeredis_info() -> None:
    """fakeredis (2.40) has no INFO command, which arq's worker calls at start-up; add a minimal one."""
    from fakeredis._commands import command
    from fakeredis.commands_mixins.server_mixin import ServerCommandsMixin

    if hasattr(ServerCommandsMixin, "info"):
        return

    @command((), (bytes,))
    def info(self, *sections: bytes) -> bytes:
        return b"# Server\r\nredis_version:7.4.0\r\n# Clients\r\nconnected_clients:1\r\n# Memory\r\nused_memory_human:1M\r\n"

    ServerCommandsMixin.info = info


class FakeRedisServer:
    """A fakeredis server (with Lua) on a loopback port: a real redis:// URL for any client."""

    def __init__(self, sock: socket.socket | None = None):
        """`sock`: a listening socket to serve on (the grader binds one for a sandboxed app)."""
        from fakeredis import TcpFakeServer

        _teach_fakeredis_info()
        if sock is None:
            self._server = TcpFakeServer(("127.0.0.1", 0), server_type="redis")
        else:
            self._server = TcpFakeServer(sock.getsockname()[:2], bind_and_activate=False, server_type="redis")
            self._server.socket.close()
            self._server.socket, self._server.server_address = sock, sock.getsockname()
        self._server.daemon_threads = True
        accept = self._server.get_request

        def accept_without_nagle():
            # several replies to one pipeline are separate writes: without TCP_NODELAY each
            # waits for the client's delayed ACK, 40 ms apiece
            connection, address = accept()
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return connection, address

        self._server.get_request = accept_without_nagle
        self._thread = threading.Thread(target=self._server.serve_forever, name="lab-fakeredis", daemon=True)
        self._thread.start()
        host, port = self._server.server_address[:2]
        self.url = f"redis://{host}:{port}/0"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


_redis_lock = threading.Lock()
_fake_redis: FakeRedisServer | None = None


def redis_url() -> str:
    """LAB_REDIS_URL, or the URL of this lab's embedded fakeredis server (started on first use).

    The embedded server speaks the Redis protocol on a loopback port, so redis-py, arq and
    celery connect to it exactly as they would to a real Redis."""
    global _fake_redis
    if os.environ.get("LAB_REDIS_URL"):
        return os.environ["LAB_REDIS_URL"]
    with _redis_lock:
        if _fake_redis is None:
            _fake_redis = FakeRedisServer()
        return _fake_redis.url


# -- database ----------------------------------------------------------------------------------

_db_dir: tempfile.TemporaryDirectory | None = None


def database_url() -> str:
    """LAB_DATABASE_URL (a PostgreSQL URL, used through asyncpg), or a SQLite file in a temp folder."""
    global _db_dir
    url = os.environ.get("LAB_DATABASE_URL")
    if url:
        for prefix in ("postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+asyncpg://" + url[len(prefix):]
        return url
    if _db_dir is None:
        _db_dir = tempfile.TemporaryDirectory(prefix="lab-db-")
    return f"sqlite+aiosqlite:///{Path(_db_dir.name) / 'lab.db'}"


def create_engine(url: str | None = None, **kwargs):
    """An async SQLAlchemy engine on database_url().

    On SQLite it installs SQLAlchemy's documented transaction recipe, without which SAVEPOINTs
    (session.begin_nested()) silently do nothing under aiosqlite."""
    from sqlalchemy import event
    from sqlalchemy.ext.asyncio import create_async_engine

    url = url or database_url()
    engine = create_async_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine.sync_engine, "connect")
        def _no_implicit_begin(dbapi_connection, _record):
            dbapi_connection.isolation_level = None  # let SQLAlchemy, not the driver, emit BEGIN

        @event.listens_for(engine.sync_engine, "begin")
        def _begin(conn):
            conn.exec_driver_sql("BEGIN")

    return engine


# -- SMTP --------------------------------------------------------------------------------------


class Mailbox:
    """An SMTP server on a loopback port that keeps what it receives, with faults on demand.

        mailbox.fail_next(2)        # the next two deliveries get "451 try again later"
        mailbox.delay = seconds(5)  # every delivery takes 5 lab seconds
        with mailbox.held(): ...    # deliveries wait until the block ends
    """

    data_size_limit = 32 * 1024 * 1024  # the largest message it accepts (aiosmtpd's default)

    def __init__(self):
        self.messages: list[EmailMessage] = []
        self.attempts = 0  # every DATA command, accepted or refused
        self.delay = 0.0
        self._failures_left = 0
        self._successes_before_failures = 0
        self._cond = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._released: asyncio.Event | None = None
        # IPPROTO_TCP, not 0: only then does asyncio set TCP_NODELAY on accepted connections,
        # and without it every multi-line SMTP reply stalls 40 ms on Nagle's algorithm
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.host, self.port = sock.getsockname()[:2]
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(sock, ready), name="lab-smtp", daemon=True)
        self._thread.start()
        ready.wait(5)

    def close(self) -> None:
        """Stop the server and free its port."""
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _run(self, sock: socket.socket, ready: threading.Event) -> None:
        from aiosmtpd.smtp import SMTP

        asyncio.set_event_loop(self._loop)
        self._released = asyncio.Event()
        self._released.set()
        handler = _MailHandler(self)
        server = self._loop.run_until_complete(
            self._loop.create_server(lambda: SMTP(handler, hostname="lab-mail", data_size_limit=self.data_size_limit),
                                     sock=sock)
        )
        ready.set()
        self._loop.run_forever()
        server.close()
        pending = asyncio.all_tasks(self._loop)
        for task in pending:  # clients still connected (an app killed mid-delivery): end them quietly
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.run_until_complete(server.wait_closed())
        self._loop.close()

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    # -- faults ---------------------------------------------------------------------------
    def fail_next(self, count: int, after: int = 0) -> None:
        """Accept `after` more deliveries, then refuse `count` with a temporary error (451)."""
        with self._cond:
            self._successes_before_failures = after
            self._failures_left = count

    def held(self):
        """Hold every delivery until the with-block ends (then they complete)."""
        mailbox = self

        class _Hold:
            def __enter__(self):
                mailbox._on_loop(mailbox._released.clear)

            def __exit__(self, *exc):
                mailbox._on_loop(mailbox._released.set)

        return _Hold()

    def _on_loop(self, fn) -> None:
        done = threading.Event()

        def call():
            fn()
            done.set()

        self._loop.call_soon_threadsafe(call)
        done.wait(5)

    def reset(self) -> None:
        """Forget the messages and attempts, and clear the faults."""
        with self._cond:
            self.messages.clear()
            self.attempts = 0
            self._failures_left = 0
            self._successes_before_failures = 0
            self.delay = 0.0
        self._on_loop(self._released.set)

    # -- reading --------------------------------------------------------------------------
    def to(self, address: str) -> list[EmailMessage]:
        """The messages delivered to `address`."""
        with self._cond:
            return [m for m in self.messages if address in m["X-Lab-Rcpt-To"].split(",")]

    def wait_for(self, count: int = 1, timeout: float = 5.0) -> bool:
        """Wait until at least `count` messages have arrived; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self.messages) >= count, timeout)

    def _received(self, message: EmailMessage) -> None:
        with self._cond:
            self.messages.append(message)
            self._cond.notify_all()


class _MailHandler:
    def __init__(self, mailbox: Mailbox):
        self.mailbox = mailbox

    async def handle_DATA(self, server, session, envelope):
        box = self.mailbox
        with box._cond:
            box.attempts += 1
            if box._successes_before_failures > 0:
                box._successes_before_failures -= 1
                fail = False
            else:
                fail = box._failures_left > 0
                box._failures_left -= fail
        await box._released.wait()
        if box.delay:
            await asyncio.sleep(box.delay)
        if fail:
            return "451 4.3.0 Mail server busy, try again later"
        message = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        message["X-Lab-Rcpt-To"] = ",".join(envelope.rcpt_tos)
        box._received(message)
        return "250 Message accepted for delivery"


_mailbox: Mailbox | None = None


def mailbox() -> Mailbox:
    """This lab's embedded SMTP inbox (started on first use)."""
    global _mailbox
    if _mailbox is None:
        _mailbox = Mailbox()
    return _mailbox


def using_real_smtp() -> bool:
    return bool(os.environ.get("LAB_SMTP_URL"))


def smtp_address() -> tuple[str, int]:
    """(host, port) of the mail server apps send to: LAB_SMTP_URL, or the embedded inbox."""
    url = os.environ.get("LAB_SMTP_URL")
    if url:
        parts = urlsplit(url)
        if parts.scheme != "smtp" or not parts.hostname:
            raise LabError(f"LAB_SMTP_URL must look like smtp://host:port, not {url!r}")
        return parts.hostname, parts.port or 25
    box = mailbox()
    return box.host, box.port
