"""The lab's webhook receiver (notebook 10): Standard Webhooks signatures, replays, deduplication."""
from __future__ import annotations

import base64
import json
import time

import httpx

from labsupport.services import ServiceSet
from labsupport.services.webhooks import secret_key, signature, verify

SECRET = "whsec_" + base64.b64encode(b"a key of thirty-two bytes, say..").decode()


def deliver(url: str, payload: dict, msg_id: str = "msg_1", secret: str = SECRET, stamp: int | None = None,
            sig: str | None = None) -> httpx.Response:
    body = json.dumps(payload).encode()
    stamp = int(time.time()) if stamp is None else stamp
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(stamp),
               "webhook-signature": sig or signature(secret, msg_id, stamp, body), "content-type": "application/json"}
    return httpx.post(url + "/hooks", content=body, headers=headers)


def test_signature_matches_the_standard_webhooks_example():
    # the example of the Standard Webhooks specification (github.com/standard-webhooks), section "Signature scheme"
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    assert signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == \
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_keys_with_and_without_the_prefix():
    assert secret_key("whsec_" + base64.b64encode(b"k").decode()) == b"k"
    assert secret_key("plain") == b"plain"


def test_verify_says_what_is_wrong():
    body = b"{}"
    good = {"webhook-id": "m", "webhook-timestamp": "1000", "webhook-signature": signature(SECRET, "m", 1000, body)}
    assert verify(SECRET, good, body, now=1000) == ""
    assert verify(SECRET, {**good, "webhook-signature": "v1,AAAA " + good["webhook-signature"]}, body, now=1000) == ""
    assert "too far" in verify(SECRET, good, body, now=1000 + 301)
    assert verify(SECRET, good, b"{ }", now=1000) == "no valid signature"
    assert verify("whsec_" + base64.b64encode(b"other").decode(), good, body, now=1000) == "no valid signature"
    assert "missing" in verify(SECRET, {"webhook-id": "m"}, body, now=1000)


def test_the_receiver_verifies_rejects_and_deduplicates():
    with ServiceSet(["webhooks"]) as run:
        hooks = run.webhooks
        hooks.secret = SECRET
        assert deliver(hooks.url, {"n": 1}).status_code == 200
        assert deliver(hooks.url, {"n": 1}).json() == {"received": True, "duplicate": True}  # a retry
        assert deliver(hooks.url, {"n": 2}, msg_id="msg_2", sig="v1,Zm9yZ2Vk").status_code == 401
        assert deliver(hooks.url, {"n": 3}, msg_id="msg_3", stamp=int(time.time()) - 3600).status_code == 401
        assert [(r.status, r.verified, r.duplicate) for r in hooks.received] == [
            (200, True, False), (200, True, True), (401, False, False), (401, False, False)]
        assert [r.json() for r in hooks.processed] == [{"n": 1}]
        hooks.reset()
        assert hooks.secret == SECRET and hooks.received == []
        assert deliver(hooks.url, {"n": 1}).json() == {"received": True}  # ids are forgotten on reset


def test_failures_on_demand_are_not_processed_and_the_retry_is():
    with ServiceSet(["webhooks"]) as run:
        run.webhooks.secret = SECRET
        run.webhooks.fail_next(1)
        assert deliver(run.webhooks.url, {"n": 1}).status_code == 500
        assert deliver(run.webhooks.url, {"n": 1}).status_code == 200
        assert [r.status for r in run.webhooks.received] == [500, 200] and len(run.webhooks.processed) == 1


def test_without_a_secret_everything_is_accepted():
    with ServiceSet(["webhooks"]) as run:
        assert httpx.post(run.webhooks.url + "/x", json={"n": 1}).status_code == 200
        assert run.webhooks.received[0].verified is None and len(run.webhooks.processed) == 1
