"""The lab's external systems: embedded by default, real ones by environment variable.

| service  | embedded default                               | the app reads          | real one        |
|----------|------------------------------------------------|------------------------|-----------------|
| mail     | an SMTP inbox checks can read (mail.py)        | lab.smtp_address()     | LAB_SMTP_URL    |
| redis    | a fakeredis server with Lua, over TCP          | lab.redis_url()        | LAB_REDIS_URL   |
| database | SQLite through aiosqlite in a temporary file   | lab.database_url(), lab.create_engine() | LAB_DATABASE_URL |
| faults   | fault points in front of redis and database    | lab.faults.enable()    |                 |
| openai   | an OpenAI-compatible streaming server          | lab.openai_base_url()  |                 |
| s3       | moto's S3 server                               | lab.s3_endpoint()      | LAB_S3_ENDPOINT |
| webhooks | a receiver that records what it is sent        | lab.webhooks_url()     |                 |
| time     | production delays x LAB_TIME_SCALE (0.01)      | lab.seconds(60)        |                 |

A ServiceSet is one lifecycle for all of them: it starts the services an exercise names in
course.toml, hands their addresses to the app as LAB_* settings (the same mapping whether the app
runs in this process or in the grader's sandbox), gives checks typed access, resets them between
checks and closes them. A notebook's kernel has one set of its own, started service by service
on first use.

Apps take every address from here at startup, so the same code runs in a notebook, in a check
run and against real servers.
"""
from __future__ import annotations

import atexit
import contextlib
import contextvars
import os
import re
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import LabError
from .mail import Delivery, Mailbox
from .redis import FakeRedisServer

__all__ = ["Delivery", "FakeRedisServer", "Mailbox", "ServiceSet", "create_engine", "database_url", "mailbox",
           "openai_base_url", "redis_url", "run_id", "s3_bucket", "s3_endpoint", "seconds", "setting", "smtp_address",
           "time_scale", "wait_until", "webhooks_url"]

# -- settings: the process's environment, or a check run's own mapping -------------------------

_overlay: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar("lab_settings", default=None)
_run_set: contextvars.ContextVar["ServiceSet | None"] = contextvars.ContextVar("lab_services", default=None)


def setting(name: str) -> str | None:
    """A LAB_* setting: a check run's own (an app served in this process for lab.check), else the
    environment's. A run's mapping replaces the environment entirely, as the sandbox's does."""
    overlay = _overlay.get()
    return overlay.get(name) if overlay is not None else os.environ.get(name)


@contextlib.contextmanager
def run_settings(services: "ServiceSet") -> Iterator[None]:
    """Inside the block (and in threads and tasks started from it with its context) the lab's
    functions answer with `services`' addresses."""
    tokens = _overlay.set(services.environment()), _run_set.set(services)
    try:
        yield
    finally:
        _run_set.reset(tokens[1])
        _overlay.reset(tokens[0])


def current_run() -> "ServiceSet | None":
    return _run_set.get()


# -- time --------------------------------------------------------------------------------------


def time_scale() -> float:
    raw = setting("LAB_TIME_SCALE") or "0.01"
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


_process_run_id = uuid.uuid4().hex[:8]


def run_id() -> str:
    """A short id of this lab run: name queues and keys with it, so that runs sharing a real Redis
    never see each other's data, and an app restarted within a run finds its own again."""
    return setting("LAB_RUN_ID") or _process_run_id


# -- one lifecycle for every service -----------------------------------------------------------


class ServiceSet:
    """The services of one lab run (a check run, or a kernel). Names: see course.SERVICES.

    `lazy`: start each service on first use (a kernel's set) instead of all at once."""

    def __init__(self, names: Iterable[str] = (), lazy: bool = False, real: bool = True):
        """`real`: use LAB_REDIS_URL / LAB_DATABASE_URL / LAB_SMTP_URL / LAB_S3_ENDPOINT from the
        environment where set (the grader passes False: its apps get only services of its own)."""
        self.names = tuple(dict.fromkeys(names))
        self.id = uuid.uuid4().hex[:8]
        self.real = real
        self._lazy = lazy
        self._started: dict[str, object] = {}
        self._lock = threading.RLock()
        self._directory: tempfile.TemporaryDirectory | None = None
        self._closers: list = []
        self.through_faults = False  # a kernel's apps reach redis and database through fault points
        if not lazy:
            for name in self.names:
                self._get(name)

    def __repr__(self) -> str:
        return f"<ServiceSet {' '.join(self._started) or 'empty'}>"

    def _get(self, name: str):
        with self._lock:
            if name not in self._started:
                if not self._lazy and name not in self.names:
                    raise LabError(f"this exercise's services are {', '.join(self.names) or 'none'}; "
                                   f"add {name!r} to its services in course.toml")
                self._started[name] = getattr(self, f"_start_{name}")()
            return self._started[name]

    def has(self, name: str) -> bool:
        return name in self._started or (self._lazy and name in ("mail", "redis", "database"))

    @property
    def directory(self) -> Path:
        """A private folder of this set (the SQLite file lives there)."""
        if self._directory is None:
            self._directory = tempfile.TemporaryDirectory(prefix="lab-run-")
        return Path(self._directory.name)

    # the typed access checks and notebooks use
    @property
    def mail(self) -> Mailbox:
        return self._get("mail")

    @property
    def redis(self) -> "RedisService":
        return self._get("redis")

    @property
    def database(self) -> "DatabaseService":
        return self._get("database")

    @property
    def faults(self):
        return self._get("faults")

    @property
    def openai(self):
        return self._get("openai")

    @property
    def s3(self):
        return self._get("s3")

    @property
    def webhooks(self):
        return self._get("webhooks")

    # -- starting each service (subclasses change how: see grading.GraderServices) ----------------
    def _start_mail(self):
        if self.real and os.environ.get("LAB_SMTP_URL"):
            return _RealMail(os.environ["LAB_SMTP_URL"])
        box = Mailbox()
        self._closers.append(box.close)
        return box

    def _start_redis(self) -> "RedisService":
        if self.real and os.environ.get("LAB_REDIS_URL"):
            return RedisService(os.environ["LAB_REDIS_URL"])
        server = FakeRedisServer()
        self._closers.append(server.close)
        return RedisService(server.url)

    def _start_database(self) -> "DatabaseService":
        real = os.environ.get("LAB_DATABASE_URL") if self.real else None
        if real:
            service = DatabaseService(_async_url(real), schema=f"lab_{self.id}")
            self._closers.append(service.drop_schema)
            return service
        return DatabaseService(f"sqlite+aiosqlite:///{self.directory / 'lab.db'}")

    def _start_faults(self):
        from ..faults import Faults, FaultProxy, SQLiteLock

        redis = database = None
        if "redis" in self.names or self._lazy:
            redis = FaultProxy(self.redis.url)
            self._closers.append(redis.close)
        if "database" in self.names or self._lazy:
            db = self.database
            database = SQLiteLock(db.sqlite_path) if db.sqlite_path else FaultProxy(_plain_url(db.url))
            self._closers.append(database.close)
        return Faults(redis, database)

    def _start_openai(self):
        from .openai import FakeOpenAI

        server = FakeOpenAI()
        self._closers.append(server.close)
        return server

    def _start_s3(self):
        from .s3 import S3

        service = S3(os.environ.get("LAB_S3_ENDPOINT") if self.real else None)
        self._closers.append(service.close)
        return service

    def _start_webhooks(self):
        from .webhooks import WebhookReceiver

        receiver = WebhookReceiver()
        self._closers.append(receiver.close)
        return receiver

    # -- what the app is told ------------------------------------------------------------------
    def environment(self) -> dict[str, str]:
        """The LAB_* settings an app of this run gets (in this process, or in a sandbox)."""
        env = {"LAB_TIME_SCALE": setting("LAB_TIME_SCALE") or "0.01", "LAB_RUN_ID": self.id}
        faults = self._started.get("faults")
        for name in self.names:
            service = self._get(name)
            if name == "mail":
                env["LAB_SMTP_URL"] = service.url
            elif name == "redis":
                env["LAB_REDIS_URL"] = faults.redis.url if faults and faults.redis else service.url
            elif name == "database":
                url = service.url
                if faults and faults.database is not None and not service.sqlite_path:
                    url = _async_url(faults.database.url)
                env["LAB_DATABASE_URL"] = url
                if service.schema:
                    env["LAB_DATABASE_SCHEMA"] = service.schema
            elif name == "faults":
                env["LAB_FAULTS"] = "managed"
            elif name == "openai":
                env["LAB_OPENAI_URL"] = service.base_url
            elif name == "s3":
                env["LAB_S3_ENDPOINT"] = service.endpoint
                env["LAB_S3_BUCKET"] = service.bucket
            elif name == "webhooks":
                env["LAB_WEBHOOKS_URL"] = service.url
        return env

    def reset(self) -> None:
        """Between checks: faults cleared, the inbox and recorded requests emptied."""
        for name, service in list(self._started.items()):
            if hasattr(service, "reset"):
                service.reset()
            elif hasattr(service, "restore"):
                service.restore()

    def close(self) -> None:
        for close in reversed(self._closers):
            try:
                close()
            except Exception:
                pass
        self._closers.clear()
        self._started.clear()
        if self._directory is not None:
            self._directory.cleanup()
            self._directory = None

    def __enter__(self) -> "ServiceSet":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class RedisService:
    """The run's Redis: its URL, and a client for checks (`service.client()`)."""

    def __init__(self, url: str):
        self.url = url

    def client(self):
        """A synchronous redis-py client on this Redis (close it, or use it with `with`)."""
        import redis

        # socket_timeout: a busy machine can hold the embedded server back for seconds
        return redis.Redis.from_url(self.url, decode_responses=True, socket_timeout=30)


class DatabaseService:
    """The run's database: a SQLAlchemy URL, and on PostgreSQL a schema of the run's own."""

    def __init__(self, url: str, schema: str | None = None):
        self.url = url
        self.schema = schema
        self.sqlite_path = _sqlite_path(url)
        if schema:
            self._execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')

    def _execute(self, statement: str) -> None:
        import asyncio
        from concurrent.futures import ThreadPoolExecutor

        import asyncpg

        async def run():
            conn = await asyncpg.connect(_plain_url(self.url), timeout=5)
            try:
                await conn.execute(statement)
            finally:
                await conn.close()

        # a loop of its own in a thread of its own: a notebook cell calls this with its loop running
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, run()).result()

    def drop_schema(self) -> None:
        if self.schema:
            self._execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')


class _RealMail:
    """A real SMTP server (LAB_SMTP_URL): apps send to it; checks cannot read it."""

    def __init__(self, url: str):
        self.url = url

    def __getattr__(self, name):
        raise LabError("these checks read the lab's inbox, which a real mail server (LAB_SMTP_URL) "
                       "does not offer: unset LAB_SMTP_URL to run them")


def _sqlite_path(url: str) -> str | None:
    """The file of a sqlite:/// URL (None for an in-memory database or another backend)."""
    if not url.startswith("sqlite") or ":///" not in url:
        return None
    path = url.split(":///", 1)[1].split("?", 1)[0]
    return None if path in ("", ":memory:") else path


def _async_url(url: str) -> str:
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix):]
    return url


def _plain_url(url: str) -> str:
    return re.sub(r"^postgresql\+\w+://", "postgresql://", url)


# -- the kernel's own services, and what apps call --------------------------------------------

_kernel_set: ServiceSet | None = None
_kernel_lock = threading.Lock()


def lab_services() -> ServiceSet:
    """The services of this run: a check run's set, or the kernel's own (started on first use)."""
    global _kernel_set
    run = _run_set.get()
    if run is not None:
        return run
    with _kernel_lock:
        if _kernel_set is None:
            _kernel_set = ServiceSet(lazy=True)
            atexit.register(_kernel_set.close)
        return _kernel_set


def _in_run() -> bool:
    """Whether this code runs as part of a check run: in this process under run_settings(), or in
    the grader's sandbox, whose environment is the run's (it holds LAB_RUN_ID)."""
    return _overlay.get() is not None or "LAB_RUN_ID" in os.environ


def _missing(name: str) -> LabError:
    return LabError(f"this exercise has no {name}: add {name!r} to its services in course.toml")


def redis_url() -> str:
    """The Redis apps connect to: the run's, or the kernel's (LAB_REDIS_URL, else a fakeredis),
    through its fault point once lab.faults.enable() was called."""
    if _in_run():
        return setting("LAB_REDIS_URL") or _raise(_missing("redis"))
    services = lab_services()
    return services.faults.redis.url if services.through_faults else services.redis.url


def database_url() -> str:
    """The database apps connect to, as a SQLAlchemy async URL."""
    if _in_run():
        return _async_url(setting("LAB_DATABASE_URL") or _raise(_missing("database")))
    services = lab_services()
    database = services.database
    if services.through_faults and not database.sqlite_path:
        return _async_url(services.faults.database.url)
    return database.url


def _database_schema() -> str | None:
    return setting("LAB_DATABASE_SCHEMA") if _in_run() else lab_services().database.schema


def _raise(error: Exception):
    raise error


def create_engine(url: str | None = None, **kwargs):
    """An async SQLAlchemy engine on database_url().

    On SQLite it installs SQLAlchemy's documented transaction recipe, without which SAVEPOINTs
    (session.begin_nested()) silently do nothing under aiosqlite. On PostgreSQL the lab's
    tables live in a schema of the run's own (its search_path)."""
    from sqlalchemy import event
    from sqlalchemy.ext.asyncio import create_async_engine

    if url is None:
        url = database_url()
        schema = _database_schema()
        if schema and url.startswith("postgresql+asyncpg"):
            kwargs.setdefault("connect_args", {}).setdefault("server_settings", {})["search_path"] = schema
    engine = create_async_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine.sync_engine, "connect")
        def _no_implicit_begin(dbapi_connection, _record):
            dbapi_connection.isolation_level = None  # let SQLAlchemy, not the driver, emit BEGIN

        @event.listens_for(engine.sync_engine, "begin")
        def _begin(conn):
            conn.exec_driver_sql("BEGIN")

    return engine


def mailbox() -> Mailbox:
    """The inbox of this run's mail server (the kernel's own in a notebook)."""
    return lab_services().mail


def smtp_address() -> tuple[str, int]:
    """(host, port) of the mail server apps send to."""
    url = setting("LAB_SMTP_URL") if _in_run() else lab_services().mail.url
    if not url:
        raise _missing("mail")
    parts = urlsplit(url)
    if parts.scheme != "smtp" or not parts.hostname:
        raise LabError(f"LAB_SMTP_URL must look like smtp://host:port, not {url!r}")
    return parts.hostname, parts.port or 25


def _service_url(variable: str, name: str, attribute: str) -> str:
    if _in_run():
        return setting(variable) or _raise(_missing(name))
    return getattr(lab_services()._get(name), attribute)


def openai_base_url() -> str:
    """The base URL of the lab's OpenAI-compatible server (pass it to openai.OpenAI(base_url=...))."""
    return _service_url("LAB_OPENAI_URL", "openai", "base_url")


def s3_endpoint() -> str:
    """The endpoint URL of the lab's S3 (pass it to boto3.client('s3', endpoint_url=...))."""
    return _service_url("LAB_S3_ENDPOINT", "s3", "endpoint")


def s3_bucket() -> str:
    """The bucket of this run in the lab's S3."""
    return _service_url("LAB_S3_BUCKET", "s3", "bucket")


def webhooks_url() -> str:
    """The base URL of the lab's webhook receiver."""
    return _service_url("LAB_WEBHOOKS_URL", "webhooks", "url")
