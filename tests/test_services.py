import asyncio
import os
import smtplib
import threading

import pytest
import redis

import labsupport as lab
from labsupport import services
from labsupport.services import FakeRedisServer, Mailbox, ServiceSet


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


def test_recipients_come_from_the_envelope_never_from_headers():
    box = Mailbox()
    try:
        forged = "To: ceo@example.com\nX-Lab-Rcpt-To: ceo@example.com\nSubject: hi\n\nbody"
        with smtplib.SMTP(box.host, box.port, timeout=5) as client:
            client.sendmail("lab@example.com", ["ada@example.com"], forged)
        assert box.wait_for(1, timeout=5)
        assert box.to("ceo@example.com") == [] and len(box.to("ada@example.com")) == 1
    finally:
        box.close()


def test_mailbox_refuses_permanently_and_can_be_down():
    box = Mailbox()
    try:
        box.fail_next(1, permanent=True)
        with pytest.raises(smtplib.SMTPDataError) as refused:
            send(box, "ada@example.com")
        assert refused.value.smtp_code == 550
        box.refuse()
        with pytest.raises(ConnectionRefusedError):
            send(box, "ada@example.com")
        box.restore()
        send(box, "ada@example.com")
        assert len(box.messages) == 1
    finally:
        box.close()


def test_a_delivery_begun_before_a_reset_is_not_kept():
    box = Mailbox()
    try:
        with box.held():
            sender = threading.Thread(target=send, args=(box, "ada@example.com"))
            sender.start()
            assert lab.wait_until(lambda: box.attempts == 1)
            box.reset()  # a new check begins while the old delivery is still held
        sender.join(5)
        assert box.messages == [] and not sender.is_alive()
        send(box, "bob@example.com")
        assert [m.recipients for m in box.messages] == [("bob@example.com",)]
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


def test_embedded_redis_is_one_server_per_kernel(monkeypatch, fresh_kernel_services):
    monkeypatch.delenv("LAB_REDIS_URL", raising=False)
    assert lab.redis_url() == lab.redis_url()


def test_a_check_runs_services_are_its_own_and_the_apps_settings_come_from_them():
    kernel_redis = lab.redis_url()
    with ServiceSet(["mail", "redis", "database"], real=False) as run:
        env = run.environment()
        assert env["LAB_REDIS_URL"] == run.redis.url != kernel_redis
        assert env["LAB_SMTP_URL"] == run.mail.url and env["LAB_RUN_ID"] == run.id
        with services.run_settings(run):
            assert lab.redis_url() == run.redis.url
            assert lab.smtp_address() == (run.mail.host, run.mail.port)
            assert lab.run_id() == run.id
            with pytest.raises(lab.LabError, match="add 'openai' to its services"):
                lab.openai_base_url()
        assert lab.redis_url() == kernel_redis


def test_the_lab_openai_server_streams_scripted_tokens_and_sees_cancellations():
    import openai

    with ServiceSet(["openai"]) as run:
        client = openai.OpenAI(base_url=run.openai.base_url, api_key="lab")
        run.openai.script(["Hel", "lo"])
        stream = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], stream=True)
        assert "".join(chunk.choices[0].delta.content or "" for chunk in stream) == "Hello"
        run.openai.script(["a"] * 50, delay=0.01)
        stream = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], stream=True)
        next(iter(stream))
        stream.close()  # the client leaves mid-stream
        assert run.openai.wait_for_end(2) and run.openai.cancelled == 1 and run.openai.finished == 1


def test_the_lab_webhook_receiver_records_and_fails_on_demand():
    import httpx

    with ServiceSet(["webhooks"]) as run:
        run.webhooks.fail_next(1)
        assert httpx.post(run.webhooks.url + "/orders", json={"n": 1}).status_code == 500
        assert httpx.post(run.webhooks.url + "/orders", json={"n": 2}).status_code == 200
        assert [(r.path, r.status, r.json()) for r in run.webhooks.received] == [
            ("/orders", 500, {"n": 1}), ("/orders", 200, {"n": 2})]


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
def test_real_database_url_is_used_through_asyncpg(fresh_kernel_services):
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


@needs_real_database
def test_each_run_gets_a_postgresql_schema_of_its_own():
    with ServiceSet(["database"]) as run:
        with services.run_settings(run):
            asyncio.run(real_database_roundtrip())
            schema = asyncio.run(current_schema())
        assert schema == run.database.schema
    assert not asyncio.run(schema_exists(schema))  # dropped when the run closed


async def current_schema() -> str:
    from sqlalchemy import text

    engine = lab.create_engine()
    try:
        async with engine.connect() as conn:
            return (await conn.execute(text("SELECT current_schema()"))).scalar()
    finally:
        await engine.dispose()


async def schema_exists(schema: str) -> bool:
    import asyncpg

    conn = await asyncpg.connect(os.environ["LAB_DATABASE_URL"])
    try:
        return bool(await conn.fetchval("SELECT 1 FROM information_schema.schemata WHERE schema_name = $1", schema))
    finally:
        await conn.close()


@needs_real_redis
def test_real_redis_url_is_used_as_given(fresh_kernel_services):
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
