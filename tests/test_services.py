import asyncio
import os
import smtplib
import threading

import pytest
import redis

import labsupport as lab
from labsupport.services import FakeRedisServer, Mailbox


def send(box: Mailbox, to: str, subject: str = "hello") -> None:
    with smtplib.SMTP(box.host, box.port, timeout=5) as client:
        client.sendmail("lab@example.com", [to], f"Subject: {subject}\n\nbody")


def test_mailbox_keeps_messages_by_recipient():
    box = Mailbox()
    try:
        send(box, "ada@example.com", "first")
        send(box, "bob@example.com", "second")
        assert box.wait_for(2, timeout=5)
        assert [m["Subject"] for m in box.to("ada@example.com")] == ["first"]
        assert box.attempts == 2
    finally:
        box.close()


def test_mailbox_refuses_on_demand_then_recovers():
    box = Mailbox()
    try:
        box.fail_next(2)
        for _ in range(2):
            with pytest.raises(smtplib.SMTPDataError) as refused:
                send(box, "ada@example.com")
            assert refused.value.smtp_code == 451
        send(box, "ada@example.com")
        assert box.attempts == 3 and len(box.messages) == 1
        box.fail_next(1, after=1)
        send(box, "ada@example.com")
        with pytest.raises(smtplib.SMTPDataError):
            send(box, "ada@example.com")
        send(box, "ada@example.com")
        assert box.attempts == 6 and len(box.messages) == 3
    finally:
        box.close()


def test_mailbox_holds_deliveries_until_released():
    box = Mailbox()
    try:
        done = threading.Event()
        with box.held():
            sender = threading.Thread(target=lambda: (send(box, "ada@example.com"), done.set()))
            sender.start()
            assert not done.wait(0.3)
            assert box.messages == []
        assert done.wait(5)
        assert len(box.messages) == 1
    finally:
        box.close()


def test_fake_redis_speaks_the_protocol_with_lua():
    server = FakeRedisServer()
    try:
        client = redis.Redis.from_url(server.url)
        assert client.incr("n") == 1
        assert client.eval("return redis.call('INCR', KEYS[1])", 1, "n") == 2
        assert "redis_version" in client.info()
        client.close()
    finally:
        server.close()


def test_embedded_redis_is_one_server_per_lab(monkeypatch):
    monkeypatch.delenv("LAB_REDIS_URL", raising=False)
    assert lab.redis_url() == lab.redis_url()


def test_time_scale(monkeypatch):
    monkeypatch.setenv("LAB_TIME_SCALE", "0.5")
    assert lab.seconds(60) == 30
    monkeypatch.setenv("LAB_TIME_SCALE", "fast")
    with pytest.raises(lab.LabError, match="must be a number"):
        lab.seconds(1)


def test_sqlite_savepoints_work_with_the_recipe(tmp_path):
    asyncio.run(savepoint_roundtrip(tmp_path))


async def savepoint_roundtrip(tmp_path):
    from sqlalchemy import text

    engine = lab.create_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY)"))
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO t VALUES (1)"))
        savepoint = await conn.begin_nested()
        await conn.execute(text("INSERT INTO t VALUES (2)"))
        await savepoint.rollback()
        await conn.execute(text("INSERT INTO t VALUES (3)"))
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT id FROM t ORDER BY id"))).scalars().all()
    await engine.dispose()
    assert rows == [1, 3]


needs_real_database = pytest.mark.skipif(
    not os.environ.get("LAB_DATABASE_URL"), reason="set LAB_DATABASE_URL to test against a real database")
needs_real_redis = pytest.mark.skipif(
    not os.environ.get("LAB_REDIS_URL"), reason="set LAB_REDIS_URL to test against a real Redis")


@needs_real_database
def test_real_database_url_is_used_through_asyncpg():
    assert lab.database_url().startswith("postgresql+asyncpg://")
    asyncio.run(real_database_roundtrip())


async def real_database_roundtrip():
    from sqlalchemy import text

    engine = lab.create_engine()
    table = f"lab_test_{os.getpid()}"
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY)"))
        async with engine.begin() as conn:
            await conn.execute(text(f"INSERT INTO {table} VALUES (1)"))
            savepoint = await conn.begin_nested()
            await conn.execute(text(f"INSERT INTO {table} VALUES (2)"))
            await savepoint.rollback()
        async with engine.connect() as conn:
            assert (await conn.execute(text(f"SELECT id FROM {table}"))).scalars().all() == [1]
    finally:
        async with engine.begin() as conn:
            await conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
        await engine.dispose()


@needs_real_redis
def test_real_redis_url_is_used_as_given():
    assert lab.redis_url() == os.environ["LAB_REDIS_URL"]
    client = redis.Redis.from_url(lab.redis_url())
    key = f"lab-test:{os.getpid()}"
    try:
        assert client.incr(key) == 1
        assert client.eval("return redis.call('INCR', KEYS[1])", 1, key) == 2
    finally:
        client.delete(key)
        client.close()


def test_wait_until_reports_whether_the_condition_came_true():
    flag = threading.Event()
    threading.Timer(0.05, flag.set).start()
    assert lab.wait_until(flag.is_set, timeout=5)
    assert not lab.wait_until(lambda: False, timeout=0.05)
