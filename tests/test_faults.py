import os
import socket
import socketserver
import sqlite3
import threading
import time

import pytest
import redis

from labsupport import faults, services
from labsupport.errors import LabError
from labsupport.services import FakeRedisServer


class _Echo(socketserver.BaseRequestHandler):
    def handle(self):
        try:
            while data := self.request.recv(4096):
                self.request.sendall(data)
        except ConnectionError:  # the proxy resets connections on purpose
            pass


@pytest.fixture
def echo():
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host, port = server.server_address
    yield f"tcp://{host}:{port}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def proxy(echo):
    p = faults.FaultProxy(echo)
    yield p
    p.close()


def connect(p: faults.FaultProxy, timeout: float = 2.0) -> socket.socket:
    host, port = p.address.split(":")
    return socket.create_connection((host, int(port)), timeout=timeout)


def round_trip(sock: socket.socket, payload: bytes = b"ping") -> tuple[bytes, float]:
    start = time.monotonic()
    sock.sendall(payload)
    return sock.recv(4096), time.monotonic() - start


def test_proxy_url_keeps_everything_but_the_address():
    p = faults.FaultProxy("postgresql://postgres:pw@db.example:5432/test?sslmode=disable")
    try:
        assert p.url == f"postgresql://postgres:pw@{p.address}/test?sslmode=disable"
        assert p.address.startswith("127.0.0.1:")
    finally:
        p.close()


def test_a_closed_proxy_says_so(proxy):
    proxy.close()
    with pytest.raises(LabError):
        proxy.hang()


def test_proxy_needs_a_port():
    with pytest.raises(LabError):
        faults.FaultProxy("sqlite:///tmp/x.db")


def test_proxy_passes_bytes_both_ways(proxy):
    with connect(proxy) as sock:
        assert round_trip(sock)[0] == b"ping"
    assert proxy.connections == 1


def test_slow_delays_every_reply_then_restore_ends_it(proxy):
    with connect(proxy) as sock:
        with proxy.slow(0.2):
            for _ in range(2):
                reply, took = round_trip(sock)
                assert reply == b"ping" and took >= 0.2
        reply, took = round_trip(sock)
        assert reply == b"ping" and took < 0.15


def test_hang_holds_replies_until_restore_then_delivers_them(proxy):
    with connect(proxy, timeout=0.3) as sock:
        proxy.hang()
        sock.sendall(b"held")
        with pytest.raises(socket.timeout):
            sock.recv(4096)
        with connect(proxy, timeout=0.3) as other:  # new connections open, but hang too
            other.sendall(b"x")
            with pytest.raises(socket.timeout):
                other.recv(4096)
        proxy.restore()
        sock.settimeout(2)
        assert sock.recv(4096) == b"held"


def assert_refused(p: faults.FaultProxy) -> None:
    """A new connection is reset (possibly while connecting) or ends without a reply."""
    with pytest.raises(OSError):
        with connect(p) as sock:
            sock.sendall(b"x")
            if sock.recv(4096) == b"":
                raise ConnectionResetError


def test_refuse_cuts_open_connections_and_refuses_new_ones(proxy):
    with connect(proxy) as sock:
        round_trip(sock)
        proxy.refuse()
        with pytest.raises(OSError):
            sock.sendall(b"x")
            if sock.recv(4096) == b"":
                raise ConnectionResetError
    with pytest.raises(ConnectionRefusedError):  # nothing listens: the kernel refuses
        connect(proxy)
    proxy.refuse()  # refusing twice is fine
    proxy.restore()
    with connect(proxy) as sock:  # the same address works again
        assert round_trip(sock)[0] == b"ping"
    proxy.restore()


def test_a_dead_service_looks_refused():
    p = faults.FaultProxy("tcp://127.0.0.1:1")  # nothing listens on port 1
    try:
        assert_refused(p)
    finally:
        p.close()


def test_redis_through_the_proxy():
    server = FakeRedisServer()
    p = faults.FaultProxy(server.url)
    client = redis.Redis.from_url(p.url, socket_timeout=0.3)
    try:
        assert client.ping()
        with p.hang():
            with pytest.raises(redis.TimeoutError):
                client.ping()
        assert client.ping()  # redis-py drops the timed-out connection and opens a new one
        with p.refuse():
            with pytest.raises(redis.ConnectionError):
                client.ping()
        assert client.ping()
    finally:
        client.close()
        p.close()
        server.close()


@pytest.fixture
def sqlite_file(tmp_path):
    path = str(tmp_path / "lab.db")
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (x INTEGER)")
        conn.execute("INSERT INTO t VALUES (1)")
    return path


def query_time(path: str, timeout: float) -> tuple[str, float]:
    start = time.monotonic()
    conn = sqlite3.connect(path, timeout=timeout)
    try:
        conn.execute("SELECT count(*) FROM t").fetchone()
        outcome = "ok"
    except sqlite3.OperationalError as error:
        outcome = str(error)
    finally:
        conn.close()
    return outcome, time.monotonic() - start


def test_sqlite_hang_is_a_held_lock(sqlite_file):
    lock = faults.SQLiteLock(sqlite_file)
    with lock.hang():
        outcome, took = query_time(sqlite_file, timeout=0.2)
        assert outcome == "database is locked" and took >= 0.2
        conn = sqlite3.connect(sqlite_file, timeout=0.2)
        assert conn.execute("SELECT 1").fetchone() == (1,)  # reads no file: passes anyway
        conn.close()
    assert query_time(sqlite_file, timeout=0.2)[0] == "ok"


def test_sqlite_slow_lets_queries_through_after_the_delay(sqlite_file):
    lock = faults.SQLiteLock(sqlite_file)
    lock.slow(0.3)
    outcome, took = query_time(sqlite_file, timeout=5)
    assert outcome == "ok" and 0.25 <= took < 1.0
    assert lock.mode == faults.PASS


def test_an_old_slow_timer_does_not_end_a_later_hang(sqlite_file):
    lock = faults.SQLiteLock(sqlite_file)
    lock.slow(0.1)
    lock.hang()
    time.sleep(0.3)
    try:
        assert query_time(sqlite_file, timeout=0.1)[0] == "database is locked"
    finally:
        lock.restore()


def test_sqlite_cannot_refuse(sqlite_file):
    with pytest.raises(LabError):
        faults.SQLiteLock(sqlite_file).refuse()


def test_enable_routes_the_kernels_services_through_fault_points(monkeypatch, fresh_kernel_services):
    monkeypatch.delenv("LAB_REDIS_URL", raising=False)
    monkeypatch.delenv("LAB_DATABASE_URL", raising=False)
    with pytest.raises(LabError):
        faults.redis()
    direct = services.redis_url()
    points = faults.enable()
    assert faults.enable() is points
    assert faults.redis() is points.redis and faults.database() is points.database
    assert services.redis_url() == points.redis.url != direct
    assert isinstance(points.database, faults.SQLiteLock)
    assert points.database.path == services.lab_services().database.sqlite_path


def test_in_a_check_run_enable_returns_the_runs_fault_points(fresh_kernel_services):
    with services.ServiceSet(["redis", "database", "faults"], real=False) as run:
        with services.run_settings(run):
            assert faults.enable() is run.faults
            assert services.redis_url() == run.faults.redis.url
            assert services.database_url() == run.database.url
        assert services.lab_services() is not run  # the kernel's own services are untouched
        assert not services.lab_services().through_faults


def test_in_the_graders_sandbox_the_fault_points_are_not_the_apps(monkeypatch):
    monkeypatch.setenv("LAB_RUN_ID", "sandboxed")  # what a sandboxed app's environment holds
    monkeypatch.setenv("LAB_REDIS_URL", "redis://127.0.0.1:6399/0")
    points = faults.enable()
    assert services.redis_url() == "redis://127.0.0.1:6399/0"
    with pytest.raises(LabError, match="belong to the checks"):
        points.redis.hang()


@pytest.mark.skipif(not os.environ.get("LAB_DATABASE_URL"), reason="set LAB_DATABASE_URL to test with PostgreSQL")
def test_enable_puts_a_proxy_in_front_of_postgresql(fresh_kernel_services):
    points = faults.enable()
    assert isinstance(points.database, faults.FaultProxy)
    assert services.database_url().startswith(f"postgresql+asyncpg://")
    assert points.database.address in services.database_url()
