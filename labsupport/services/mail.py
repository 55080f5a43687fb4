"""An SMTP server on a loopback port that keeps what it receives, with faults on demand.

    mailbox.fail_next(2)                 # the next two deliveries get "451 try again later"
    mailbox.fail_next(1, permanent=True) # the next one gets "550 no such user"
    mailbox.refuse()                     # connections are refused until restore()
    mailbox.delay = seconds(5)           # every delivery takes 5 lab seconds
    with mailbox.held(): ...             # deliveries wait until the block ends

Recipients come from the SMTP envelope (RCPT TO), never from the message's headers, which the
sender writes.
"""
from __future__ import annotations

import asyncio
import email
import email.header
import email.policy
import socket
import threading
from dataclasses import dataclass

MAX_HEADER_TEXT = 1000  # characters of a header kept for checks: a longer one is cut


@dataclass(frozen=True)
class Delivery:
    """One accepted message: its envelope recipients, and the headers checks read."""

    recipients: tuple[str, ...]
    subject: str
    sender: str
    body: str

    def __getitem__(self, name: str) -> str:  # delivery["Subject"], as with an email message
        return {"subject": self.subject, "from": self.sender}.get(name.lower(), "")


def _header(message, name: str) -> str:
    raw = message.get(name)
    if raw is None:
        return ""
    try:
        text = str(email.header.make_header(email.header.decode_header(str(raw)[:MAX_HEADER_TEXT * 4])))
    except Exception:  # malformed encoded words: keep the raw text
        text = str(raw)
    return text[:MAX_HEADER_TEXT]


def _body(message) -> str:
    part = message
    if message.is_multipart():
        part = next((p for p in message.walk() if p.get_content_type() == "text/plain"), None)
        if part is None:
            return ""
    payload = part.get_payload(decode=True) or b""
    return payload[:65536].decode("utf-8", "replace")


class Mailbox:
    data_size_limit = 32 * 1024 * 1024  # the largest message it accepts (aiosmtpd's default)
    max_messages = 10_000                # messages kept; more are accepted and dropped

    def __init__(self, sock: socket.socket | None = None):
        self.messages: list[Delivery] = []
        self.attempts = 0  # every DATA command, accepted or refused
        self.delay = 0.0
        self._failures_left = 0
        self._permanent = False
        self._successes_before_failures = 0
        self._cond = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._released: asyncio.Event | None = None
        self._server: asyncio.Server | None = None
        self._sessions: set = set()
        self._hold: socket.socket | None = None
        self._generation = 0  # reset() starts a new one: deliveries begun before it are not kept
        if sock is None:
            # IPPROTO_TCP, not 0: only then does asyncio set TCP_NODELAY on accepted connections,
            # and without it every multi-line SMTP reply stalls 40 ms on Nagle's algorithm
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", 0))
        self._sock = sock
        self.host, self.port = sock.getsockname()[:2]
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="lab-smtp", daemon=True)
        self._thread.start()
        ready.wait(5)

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    def close(self) -> None:
        """Stop the server and free its port."""
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _factory(self):
        from aiosmtpd.smtp import SMTP

        session = SMTP(_MailHandler(self), hostname="lab-mail", data_size_limit=self.data_size_limit)
        self._sessions.add(session)
        return session

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._released = asyncio.Event()
        self._released.set()
        self._server = self._loop.run_until_complete(self._loop.create_server(self._factory, sock=self._sock))
        ready.set()
        self._loop.run_forever()
        self._server.close()
        pending = asyncio.all_tasks(self._loop)
        for task in pending:  # clients still connected (an app killed mid-delivery): end them quietly
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.close()

    # -- faults ---------------------------------------------------------------------------
    def fail_next(self, count: int, after: int = 0, permanent: bool = False) -> None:
        """Accept `after` more deliveries, then refuse `count`: with 451 (temporary: try again
        later), or with 550 (permanent: no such mailbox) when `permanent`."""
        with self._cond:
            self._successes_before_failures = after
            self._failures_left = count
            self._permanent = permanent

    def held(self):
        """Hold every delivery until the with-block ends (then they complete)."""
        mailbox = self

        class _Hold:
            def __enter__(self):
                mailbox._on_loop(mailbox._released.clear)

            def __exit__(self, *exc):
                mailbox._on_loop(mailbox._released.set)

        return _Hold()

    def refuse(self) -> None:
        """Stop listening (connecting is refused, as with a mail server that is down) and cut
        the sessions in progress, until restore()."""
        def stop_listening():
            if self._server.is_serving():
                self._server.close()
                # a bound socket that does not listen keeps the port ours while connecting is refused
                self._hold = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                self._hold.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                self._hold.bind((self.host, self.port))

        self._on_loop(stop_listening)
        self.drop_sessions()

    def drop_sessions(self) -> None:
        """Cut every SMTP session in progress, as a crash of the sending process would."""
        def cut():
            for session in list(self._sessions):
                transport = getattr(session, "transport", None)
                if transport is not None:
                    transport.abort()
            self._sessions.clear()

        self._on_loop(cut)

    def restore(self) -> None:
        """Listen again, release held deliveries and clear pending failures."""
        async def listen_again():
            if not self._server.is_serving():
                if self._hold is not None:
                    self._hold.close()
                    self._hold = None
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((self.host, self.port))
                self._server = await self._loop.create_server(self._factory, sock=sock)
            self._released.set()

        future = asyncio.run_coroutine_threadsafe(listen_again(), self._loop)
        future.result(5)
        with self._cond:
            self._failures_left = 0
            self._successes_before_failures = 0
            self.delay = 0.0

    def _on_loop(self, fn) -> None:
        done = threading.Event()

        def call():
            try:
                fn()
            finally:
                done.set()

        self._loop.call_soon_threadsafe(call)
        done.wait(5)

    def reset(self) -> None:
        """Forget the messages and attempts, and clear every fault. Deliveries still in progress
        (held, say) complete for their sender but are not kept: they belong to what came before."""
        with self._cond:
            self._generation += 1
        self.restore()
        with self._cond:
            self.messages.clear()
            self.attempts = 0

    # -- reading --------------------------------------------------------------------------
    def to(self, address: str) -> list[Delivery]:
        """The messages delivered to `address` (by the SMTP envelope)."""
        with self._cond:
            return [m for m in self.messages if address in m.recipients]

    def wait_for(self, count: int = 1, timeout: float = 5.0, address: str | None = None) -> bool:
        """Wait until at least `count` messages (to `address`, if given) have arrived; False on timeout."""
        def enough():
            found = self.messages if address is None else [m for m in self.messages if address in m.recipients]
            return len(found) >= count

        with self._cond:
            return self._cond.wait_for(enough, timeout)

    def _received(self, delivery: Delivery, generation: int) -> None:
        with self._cond:
            if generation == self._generation and len(self.messages) < self.max_messages:
                self.messages.append(delivery)
            self._cond.notify_all()


class _MailHandler:
    def __init__(self, mailbox: Mailbox):
        self.mailbox = mailbox

    async def handle_DATA(self, server, session, envelope):
        box = self.mailbox
        with box._cond:
            generation = box._generation
            box.attempts += 1
            if box._successes_before_failures > 0:
                box._successes_before_failures -= 1
                fail = False
            else:
                fail = box._failures_left > 0
                box._failures_left -= fail
            permanent = box._permanent
        await box._released.wait()
        if box.delay:
            await asyncio.sleep(box.delay)
        if fail:
            return "550 5.1.1 No such mailbox here" if permanent else "451 4.3.0 Mail server busy, try again later"
        # compat32 parses headers lazily and in linear time: a crafted header costs no check its deadline
        message = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.compat32)
        box._received(Delivery(
            recipients=tuple(str(r).lower() for r in envelope.rcpt_tos),
            subject=_header(message, "Subject"), sender=str(envelope.mail_from or ""), body=_body(message),
        ), generation)
        return "250 Message accepted for delivery"
