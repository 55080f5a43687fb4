"""A webhook receiver: it records every request it is sent, fails or slows down on demand, and
verifies signed deliveries the way Standard Webhooks (standardwebhooks.com) describes them.

    hooks = ctx.webhooks                     # or lab_services().webhooks
    app sends POST {hooks.url}/orders        # any path under the receiver's URL
    hooks.fail_next(2)                       # the next two deliveries get 500
    hooks.delay = lab.seconds(5)             # every answer takes that long
    hooks.wait_for(1); hooks.received[0].headers["webhook-signature"], .body, .json()

Signed deliveries: set `hooks.secret` ("whsec_" + base64 of the key, or any string) and every
delivery must carry the headers webhook-id, webhook-timestamp (Unix seconds, within `tolerance`
seconds of now) and webhook-signature ("v1,<base64 of HMAC-SHA256 over 'id.timestamp.body'>", several
separated by spaces while a secret is being rotated). A delivery that fails verification is
answered 401 and recorded with verified=False. A verified delivery whose webhook-id was already
processed is answered 200 without being processed again (duplicate=True): receivers are
idempotent, because senders retry. `hooks.processed` holds each delivery processed once.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

MAX_BODY = 1024 * 1024  # a larger delivery is refused with 413
MAX_KEPT = 1000
MAX_IDS = 10_000        # webhook ids remembered for deduplication
TOLERANCE = 300         # seconds a signed delivery's timestamp may be off (Standard Webhooks: 5 minutes)


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int  # what the receiver answered
    verified: bool | None = None  # with a secret set: whether the signature held; None without one
    duplicate: bool = False       # a verified delivery whose webhook-id was processed before
    problem: str = ""             # why verification failed

    def json(self):
        return json.loads(self.body)


def secret_key(secret: str) -> bytes:
    """The HMAC key of a secret: Standard Webhooks' "whsec_<base64>", or the string's bytes."""
    if secret.startswith("whsec_"):
        return base64.b64decode(secret[len("whsec_"):])
    return secret.encode()


def signature(secret: str, msg_id: str, timestamp: int | str, body: bytes) -> str:
    """The webhook-signature header value for one delivery: "v1," and the base64 of
    HMAC-SHA256(key, f"{msg_id}.{timestamp}.{body}")."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(secret: str, headers: dict[str, str], body: bytes, tolerance: float = TOLERANCE,
           now: float | None = None) -> str:
    """Why the delivery fails verification, or "" when it is signed with `secret` and fresh."""
    msg_id, stamp, signatures = (headers.get(name) for name in ("webhook-id", "webhook-timestamp",
                                                                "webhook-signature"))
    if not msg_id or not stamp or not signatures:
        return "missing webhook-id, webhook-timestamp or webhook-signature"
    try:
        sent = int(stamp)
    except ValueError:
        return "webhook-timestamp is not a number of seconds"
    if abs((time.time() if now is None else now) - sent) > tolerance:
        return "webhook-timestamp too far from now (a replay?)"
    expected = signature(secret, msg_id, stamp, body).split(",", 1)[1]
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return ""
    return "no valid signature"


class WebhookReceiver:
    def __init__(self):
        from ..serving import Server

        self.received: list[Received] = []
        self.delay = 0.0
        self.secret: str | None = None  # set it to verify signatures (see the module's docstring)
        self.tolerance = TOLERANCE
        self._failures_left = 0
        self._failure_status = 500
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._cond = threading.Condition()
        app = Starlette(routes=[Route("/{path:path}", self._receive, methods=["POST", "PUT"])])
        self._server = Server(app, name="lab-webhooks", graceful_timeout=0.1)
        self._server._start()
        self.url = self._server.url

    def close(self) -> None:
        self._server.stop()

    def fail_next(self, count: int, status: int = 500) -> None:
        """The next `count` deliveries are answered with `status` (and recorded)."""
        with self._cond:
            self._failures_left, self._failure_status = count, status

    def reset(self) -> None:
        """Forget what was received (and the webhook ids seen), stop failing and delaying; the
        secret stays."""
        with self._cond:
            self.received.clear()
            self._seen.clear()
            self._failures_left = 0
            self.delay = 0.0

    @property
    def processed(self) -> list[Received]:
        """Deliveries answered 2xx, verified (when a secret is set), each webhook id once."""
        with self._cond:
            return [r for r in self.received if 200 <= r.status < 300 and r.verified is not False
                    and not r.duplicate]

    def wait_for(self, count: int = 1, timeout: float = 5.0, accepted_only: bool = False) -> bool:
        """Wait until `count` deliveries arrived (only those answered 2xx with `accepted_only`)."""
        def enough():
            found = [r for r in self.received if not accepted_only or 200 <= r.status < 300]
            return len(found) >= count

        with self._cond:
            return self._cond.wait_for(enough, timeout)

    async def _receive(self, request: Request):
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                return JSONResponse({"detail": "too large"}, status_code=413)
        headers = {k.lower(): v for k, v in request.headers.items()}
        secret, verified, problem = self.secret, None, ""
        if secret is not None:
            problem = verify(secret, headers, body, self.tolerance)
            verified = not problem
        with self._cond:
            fail = verified is not False and self._failures_left > 0
            self._failures_left -= fail
            status = 401 if verified is False else self._failure_status if fail else 200
        if self.delay:
            await asyncio.sleep(self.delay)
        with self._cond:
            duplicate = False
            msg_id = headers.get("webhook-id")
            if status == 200 and verified and msg_id:
                duplicate = msg_id in self._seen
                self._seen[msg_id] = None
                while len(self._seen) > MAX_IDS:
                    self._seen.popitem(last=False)
            if len(self.received) < MAX_KEPT:
                self.received.append(Received(request.method, "/" + request.path_params["path"], headers, body,
                                              status, verified, duplicate, problem))
            self._cond.notify_all()
        if status == 401:
            return JSONResponse({"received": False, "detail": problem}, status_code=401)
        return JSONResponse({"received": status == 200, **({"duplicate": True} if duplicate else {})},
                            status_code=status)
