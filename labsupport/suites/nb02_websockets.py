"""Checks for notebook 02, WebSockets: a heartbeat with a pong deadline, and chat rooms.

Every check talks to the app over real WebSocket connections (websockets' sync client, its
asyncio client for many at once) and, for the room lists, over HTTP.
"""
from __future__ import annotations

import base64
import json
import os
import socket
import struct
import threading
import time

from websockets.exceptions import ConnectionClosed, InvalidStatus

from ..checks import CheckFailed, Context, Suite, expect
from ..services import seconds

# The notebook's setup cell gives these to the app; the checks know them from the exercise text.
HEARTBEAT = seconds(30)
PONG_TIMEOUT = seconds(90)
MAX_MESSAGE = 4096
TOKENS = {name: f"token-{name}" for name in ("ada", "bob", "cy", "dee", *(f"user{n:02d}" for n in range(60)))}
WAIT = 5.0  # seconds a check waits for a frame that should come at once (more on a loaded machine)


# -- talking to the app ---------------------------------------------------------------------------


def _decode(frame) -> object:
    if isinstance(frame, bytes):
        return {"binary frame": True}
    try:
        return json.loads(frame)
    except ValueError:
        return {"not JSON": frame[:60]}


def _kind(message: object) -> object:
    return message.get("type") if isinstance(message, dict) else None


def _close_code(closed: ConnectionClosed) -> int:
    return closed.rcvd.code if closed.rcvd is not None else 1006


def _closed_by(closed: ConnectionClosed) -> str:
    code = _close_code(closed)
    return "closed the connection without a close frame (code 1006: did the handler crash?)" if code == 1006 \
        else f"closed the connection with code {code}"


def _shown(message: object) -> str:
    """A message for a failure text: its type, or what it was instead of a JSON object."""
    if isinstance(message, dict) and "type" in message:
        return f"a {message['type']!r} frame"[:60]
    return "a frame without a 'type'" if isinstance(message, dict) else "a frame that is not a JSON object"


# -- exercise 1: the heartbeat ----------------------------------------------------------------------

heartbeat = Suite("02-heartbeat")

PINGS = 4                     # pings an answering client waits for
LONGEST = 16 * HEARTBEAT      # an experiment ends when its clients have seen what they wait for, or then


def _is_ping(message: object) -> bool:
    return _kind(message) == "ping"


class LiveClient:
    """One client of /ws/live, in a thread: it answers the first `answers` pings (every ping when
    None) and records the pings it saw, what GET /connections said at the first, and how its
    connection ended. It is done when closed, or (if it answers) after PINGS pings."""

    def __init__(self, ctx: Context, answers: int | None, junk: bool = False):
        self.ctx, self.answers, self.junk = ctx, answers, junk
        self.pings: list[float] = []
        self.closed: tuple[int, float] | None = None
        self.counted = self.error = None
        self.done, self.stop = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        start = time.monotonic()
        try:
            with self.ctx.websocket("/ws/live") as ws:
                if self.junk:  # not a pong: the server must shrug it off
                    ws.send("this is not JSON")
                    ws.send(b"\x00\x01binary")
                    ws.send(json.dumps({"type": "pong?"}))
                while not self.stop.is_set() and time.monotonic() - start < LONGEST:
                    try:
                        message = _decode(ws.recv(timeout=0.05))
                    except TimeoutError:
                        continue
                    if not _is_ping(message):
                        continue
                    self.pings.append(time.monotonic() - start)
                    if self.answers is None or len(self.pings) <= self.answers:
                        ws.send(json.dumps({"type": "pong"}))
                    if len(self.pings) == 1:
                        self.counted = self.ctx.client.get("/connections").json().get("open")
                    if self.answers is None and len(self.pings) >= PINGS:
                        self.done.set()
        except ConnectionClosed as closed:
            self.closed = (_close_code(closed), time.monotonic() - start)
        except InvalidStatus as refused:
            self.error = f"the WebSocket handshake was refused with HTTP {refused.response.status_code}"
        except (OSError, TimeoutError) as error:
            self.error = f"could not connect to /ws/live ({type(error).__name__})"
        finally:
            self.done.set()


def _session(ctx: Context, behaviours: list[tuple[int | None, bool]]) -> list[LiveClient]:
    """Run clients side by side until each is done (or LONGEST passes); then the rest leave."""
    clients = [LiveClient(ctx, answers, junk) for answers, junk in behaviours]
    for client in clients:
        client.thread.start()
    deadline = time.monotonic() + LONGEST + 1
    for client in clients:
        client.done.wait(max(0.0, deadline - time.monotonic()))
    for client in clients:
        client.stop.set()
    for client in clients:
        client.thread.join(2)
    for client in clients:
        expect(client.error is None, str(client.error))
    return clients


@heartbeat.experiment
def three_clients(ctx: Context) -> dict:
    """One client that answers every ping, one that never answers, one that stops after two."""
    answering, silent, stopping = _session(ctx, [(None, False), (0, False), (2, False)])
    return {"answering": answering, "silent": silent, "stopping": stopping}


@heartbeat.check(points=1, hint=["Send {'type': 'ping'} every HEARTBEAT seconds from a task of its own, for as "
                                "long as the connection is open.",
                                 "Start a task with asyncio.create_task whose loop awaits asyncio.sleep(HEARTBEAT), then ws.send_json({'type': 'ping'}), while the handler itself keeps awaiting ws.receive()."])
def pings_every_heartbeat(ctx: Context) -> None:
    "a connected client gets a ping about every HEARTBEAT seconds"
    pings = three_clients(ctx)["answering"].pings
    expect(len(pings) >= PINGS, f"in {LONGEST:.1f} s a client that answered got {len(pings)} ping(s); one every "
                                f"{HEARTBEAT:.2f} s makes {LONGEST / HEARTBEAT:.0f}")
    gap = (pings[-1] - pings[0]) / (len(pings) - 1)
    expect(gap >= HEARTBEAT / 2, f"the pings came every {gap * 1000:.0f} ms, more often than every HEARTBEAT "
                                 f"({HEARTBEAT * 1000:.0f} ms)")


@heartbeat.check(points=1, hint=["A pong is the answer the deadline waits for: when one arrives in time, the "
                                "connection stays open.",
                                 "In the receive loop, json.loads the frame's 'text' and set an asyncio.Event when it equals {'type': 'pong'}; the pinger's wait_for on that Event then returns in time and must not close."])
def answering_client_stays(ctx: Context) -> None:
    "a client that answers every ping stays connected"
    closed = three_clients(ctx)["answering"].closed
    expect(closed is None, f"a client that answered every ping was closed (code {closed[0]})" if closed else "")


@heartbeat.check(points=2, hint=["After each ping, wait at most PONG_TIMEOUT for the pong (asyncio.wait_for on "
                                "an Event the receive loop sets); then close with code 1011.",
                                 "Catch the TimeoutError from asyncio.wait_for(event.wait(), PONG_TIMEOUT) and await ws.close(code=1011) (status.WS_1011_INTERNAL_ERROR); an uncaught error ends the connection as 1006 instead."])
def silent_client_is_closed(ctx: Context) -> None:
    "a client that never answers is closed with code 1011"
    closed = three_clients(ctx)["silent"].closed
    expect(closed is not None, f"a client that never answered a ping was still connected after {LONGEST:.1f} s")
    expect(closed[0] == 1011, f"a client that never answered was closed with code {closed[0]}, expected 1011"
                              + (" (no close frame: did the handler crash?)" if closed[0] == 1006 else ""))


@heartbeat.check(points=1, hint=["Every ping needs its own pong: reset the 'answered' flag before each ping, "
                                "not once per connection.",
                                 "Call clear() on the Event just before sending each ping: an Event set by the first pong and never cleared makes every later wait_for return at once."])
def client_that_stops_answering_is_closed(ctx: Context) -> None:
    "a client that answers two pings, then stops, is closed with code 1011"
    closed = three_clients(ctx)["stopping"].closed
    expect(closed is not None, f"a client that answered two pings and then stopped was still connected after "
                               f"{LONGEST:.1f} s")
    expect(closed[0] == 1011, f"a client that stopped answering was closed with code {closed[0]}, expected 1011")


@heartbeat.check(points=1, hint=["The `finally` around your code runs however the connection ends: keep it.",
                                 "The handler must return when the client leaves: break the loop on a 'websocket.disconnect' message (or catch WebSocketDisconnect), cancel the ping task, and keep the given finally that discards ws."])
def counts_open_connections(ctx: Context) -> None:
    "GET /connections counts the clients while they are connected, and says 0 once they have gone"
    counted = three_clients(ctx)["answering"].counted
    expect(counted is not None, "the client got no ping, so GET /connections was not asked while it was connected")
    expect(1 <= counted <= 3, f"with three clients connected, GET /connections said {counted!r}")
    counts = []

    def zero() -> bool:
        counts.append(ctx.client.get("/connections").json().get("open"))
        return counts[-1] == 0

    ctx.wait_until(zero, "GET /connections saying 0 after every client left", timeout=WAIT)


# -- exercise 2: chat rooms -------------------------------------------------------------------------

chat = Suite("02-chat-rooms")


def _connect(ctx: Context, user: str, **kwargs):
    try:
        return ctx.websocket("/ws/chat", subprotocols=["bearer", TOKENS[user]], **kwargs)
    except InvalidStatus as refused:
        raise CheckFailed(f"{user} could not connect with a valid token: the handshake was answered HTTP "
                          f"{refused.response.status_code}") from None


def _send(ws, **message) -> None:
    ws.send(json.dumps(message))


def _next(ws, what: str, timeout: float = WAIT) -> dict:
    """The next frame that matters to the chat protocol (frames of other types, a presence notice or
    a ping the app adds, are skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            message = _decode(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
        except TimeoutError:
            raise CheckFailed(f"{what}: nothing arrived within {timeout:g} s") from None
        except ConnectionClosed as closed:
            raise CheckFailed(f"{what}: the app {_closed_by(closed)}") from None
        if not isinstance(message, dict) or _kind(message) in ("joined", "left", "message", "error"):
            return message


def _join(ws, room: str, who: str) -> None:
    _send(ws, type="join", room=room)
    answer = _next(ws, f"{who} joined {room!r} and waited for {{'type': 'joined'}}")
    expect(_kind(answer) == "joined" and answer.get("room") == room,
           f"{who} joined {room!r} and got {_shown(answer)}, expected {{'type': 'joined', 'room': {room!r}}}")


def _say(ws, room: str, text: str) -> None:
    _send(ws, type="message", room=room, text=text)


def _expect_message(ws, who: str, room: str, sender: str, text: str, after: str) -> None:
    got = _next(ws, f"{who} waited for {sender}'s message in {room!r} {after}")
    expect(_kind(got) == "message", f"{who} waited for {sender}'s message {after} and got {_shown(got)}")
    if got.get("text") != text:
        expect(False, f"{who} waited for {sender}'s message in {room!r} {after}, and got another message first "
                      f"(in {got.get('room')!r})" if got.get("room") != room else
               f"{who} waited for {sender}'s message in {room!r} {after}, and got another one first")
    expect(got.get("room") == room and got.get("user") == sender,
           f"{sender}'s message reached {who} as room {got.get('room')!r}, user {got.get('user')!r}; "
           f"expected room {room!r}, user {sender!r}")


def _members(ctx: Context, room: str, as_user: str = "ada") -> list:
    response = ctx.client.get(f"/rooms/{room}", headers={"Authorization": f"Bearer {TOKENS[as_user]}"})
    expect(response.status_code == 200, f"GET /rooms/{room} answered {response.status_code}, expected 200")
    body = response.json()
    members = body.get("members") if isinstance(body, dict) else None
    expect(isinstance(members, list), f"GET /rooms/{room} should answer {{'room': ..., 'members': [...]}}")
    return members


def _refused(ctx: Context, path: str, subprotocols: list[str] | None, what: str) -> None:
    try:
        with ctx.websocket(path, subprotocols=subprotocols):
            pass
    except InvalidStatus as refused:
        status = refused.response.status_code
        expect(400 <= status < 500, f"a connection with {what} was refused with HTTP {status}: a 5xx means "
                                    "the handler failed instead of refusing")
        return
    expect(False, f"a connection with {what} was accepted: refuse it before accepting")


@chat.check(points=1, hint=["Read the token from ws.scope['subprotocols'] and raise WebSocketException(code=1008) "
                           "before ws.accept() when authenticate() gives None.",
                            "Accept only when ws.scope['subprotocols'] is exactly ['bearer', token] and authenticate(token) is not None; ignore the query string, and raise WebSocketException(code=1008) before accept (a 403)."])
def refuses_bad_tokens(ctx: Context) -> None:
    "the handshake is refused without a valid token in the subprotocols, or with one in the URL"
    _refused(ctx, "/ws/chat", None, "no token")
    _refused(ctx, "/ws/chat", ["bearer", "token-nobody"], "an unknown token")
    _refused(ctx, "/ws/chat", [TOKENS["ada"]], "a token but no 'bearer' subprotocol")
    _refused(ctx, f"/ws/chat?token={TOKENS['ada']}", None, "the token in the URL (it would be logged)")


@chat.check(points=1, hint=["ws.accept(subprotocol='bearer'): a browser closes a connection at once when it "
                           "offered subprotocols and the server picked none.",
                            "Call await ws.accept(subprotocol='bearer'): plain ws.accept() leaves Sec-WebSocket-Protocol out of the 101 answer, and picking the token instead would echo the secret."])
def picks_the_bearer_subprotocol(ctx: Context) -> None:
    "a valid token opens the connection, and the server picks the 'bearer' subprotocol"
    with _connect(ctx, "ada") as ws:
        expect(ws.subprotocol == "bearer", "the server accepted without picking the 'bearer' subprotocol"
               if ws.subprotocol is None else "the server picked a subprotocol other than 'bearer'")


@chat.check(points=2, hint=["On a message, send {'type': 'message', 'room', 'user', 'text'} to every connection "
                           "in that room, the sender's included.",
                            "join() adds the WebSocket to rooms[room] (a set) and the handler answers {'type': 'joined', 'room': room}; a message then goes to every WebSocket in that set, the sender's included."])
def broadcasts_to_the_room(ctx: Context) -> None:
    "a message reaches every member of its room, the sender too"
    with _connect(ctx, "ada") as ada, _connect(ctx, "bob") as bob:
        _join(ada, "lobby", "ada")
        _join(bob, "lobby", "bob")
        _say(ada, "lobby", "hello, lobby")
        _expect_message(bob, "bob", "lobby", "ada", "hello, lobby", "(both in the room)")
        _expect_message(ada, "ada", "lobby", "ada", "hello, lobby", "(her own, echoed)")


@chat.check(points=1, hint=["The sender is the user of the connection's token; ignore whatever the message says.",
                            "Fill 'user' in the broadcast from the name authenticate() returned at the handshake; the Say model has no user field, so never read it from the raw JSON."])
def sender_comes_from_the_token(ctx: Context) -> None:
    "a message that claims another sender is still sent in the token's name"
    with _connect(ctx, "ada") as ada:
        _join(ada, "plaza", "ada")
        _send(ada, type="message", room="plaza", text="it was bob", user="bob")
        got = _next(ada, "ada sent a message claiming to be bob")
        expect(_kind(got) in ("message", "error"), f"ada sent a message claiming to be bob and got {_shown(got)}")
        expect(_kind(got) == "error" or got.get("user") == "ada",
               f"ada sent a message with user='bob', and it was broadcast as {got.get('user')!r}'s")


@chat.check(points=2, hint=["Keep a set of connections per room and send to that set only.",
                            "Keep rooms as dict[str, set[WebSocket]] and broadcast to self.rooms.get(room) only, room taken from the validated Say message; don't loop over every connection in self.users."])
def rooms_are_isolated(ctx: Context) -> None:
    "members of one room never get another room's messages"
    with _connect(ctx, "ada") as ada, _connect(ctx, "cy") as cy:
        _join(ada, "north", "ada")
        _join(cy, "south", "cy")
        _say(ada, "north", "north only")
        _expect_message(ada, "ada", "north", "ada", "north only", "(her own)")
        _say(cy, "south", "south only")
        _expect_message(cy, "cy", "south", "cy", "south only", "(in south, not in north)")
        _say(ada, "north", "north again")
        _expect_message(ada, "ada", "north", "ada", "north again", "(in north, not in south)")


@chat.check(points=1, hint=["GET /rooms/{room} answers {'room': room, 'members': sorted user names, each once}; "
                           "current_user gives the 401.",
                            "members(room) maps the room's WebSockets to users through self.users and returns sorted(set(...)), [] for an unknown room; keep Depends(current_user) on the route for the 401."])
def lists_the_members(ctx: Context) -> None:
    "GET /rooms/{room} lists who is in the room, to users with a token only"
    with _connect(ctx, "ada") as ada, _connect(ctx, "bob") as bob:
        _join(ada, "library", "ada")
        _join(bob, "library", "bob")
        members = _members(ctx, "library", "cy")
        expect(sorted(members) == ["ada", "bob"],
               f"with ada and bob in library, GET /rooms/library listed {len(members)} member(s)"
               + ("" if set(members) <= {"ada", "bob"} else ", some of them never joined"))
        expect(_members(ctx, "empty-room") == [], "GET /rooms/empty-room listed members of a room nobody joined")
    anonymous = ctx.client.get("/rooms/library")
    expect(anonymous.status_code == 401, f"GET /rooms/library without a token answered {anonymous.status_code}, "
                                         "expected 401")


@chat.check(points=1, hint=["On {'type': 'leave'}, take the connection out of the room and answer "
                           "{'type': 'left', 'room': room}.",
                            "leave() discards the WebSocket from rooms[room] (delete the set once empty), and the handler replies {'type': 'left', 'room': room}; a later join adds it to the set again."])
def leave_stops_delivery(ctx: Context) -> None:
    "after leaving, a user gets no more of the room's messages and is no longer listed"
    with _connect(ctx, "ada") as ada, _connect(ctx, "bob") as bob:
        _join(ada, "hall", "ada")
        _join(bob, "hall", "bob")
        _send(bob, type="leave", room="hall")
        answer = _next(bob, "bob left hall and waited for {'type': 'left'}")
        expect(_kind(answer) == "left", f"bob left hall and got {_shown(answer)}, expected {{'type': 'left'}}")
        expect(sorted(_members(ctx, "hall")) == ["ada"], "after bob left, GET /rooms/hall still listed him")
        _say(ada, "hall", "bob has gone")
        _expect_message(ada, "ada", "hall", "ada", "bob has gone", "(her own)")
        _join(bob, "hall", "bob")
        _say(ada, "hall", "bob is back")
        _expect_message(bob, "bob", "hall", "ada", "bob is back", "(after leaving and joining again: the message "
                                                                  "sent while he was away came first)")


@chat.check(points=1, hint=["Clean up in a `finally` around the receive loop: it runs however the connection ends.",
                            "Wrap the receive loop in try/finally and call rooms.forget(ws) in the finally, taking ws out of every room and out of self.users; end the loop on a 'websocket.disconnect' frame."])
def cleans_up_after_a_close(ctx: Context) -> None:
    "a user who closes the connection leaves every room"
    with _connect(ctx, "ada") as ada:
        _join(ada, "garden", "ada")
        with _connect(ctx, "bob") as bob:
            _join(bob, "garden", "bob")
            _join(bob, "cellar", "bob")
        ctx.wait_until(lambda: sorted(_members(ctx, "garden")) == ["ada"] and _members(ctx, "cellar") == [],
                       "bob leaving garden and cellar after closing his connection", timeout=WAIT)
        _say(ada, "garden", "still here")
        _expect_message(ada, "ada", "garden", "ada", "still here", "(after bob closed his connection)")


BAD_MESSAGES = [
    ("text that is not JSON", "hello?"),
    ("a JSON array", "[1, 2]"),
    ("an unknown type", json.dumps({"type": "dance", "room": "workshop"})),
    ("a room name with spaces", json.dumps({"type": "join", "room": "Bad Room!"})),
    ("a message without text", json.dumps({"type": "message", "room": "workshop"})),
    ("a message to a room not joined", json.dumps({"type": "message", "room": "elsewhere", "text": "hi"})),
    ("a binary frame", b"\x00\x01"),
]


@chat.check(points=2, hint=["Validate each frame (ClientMessage.validate_json) and answer a ValidationError with "
                           "{'type': 'error', 'detail': ...}; keep the connection open.",
                            "Read with ws.receive(), not receive_json; pass the frame's text (b'' for binary) to ClientMessage.validate_json, answer ValidationError with an error frame, and refuse a Say to a room ws has not joined."])
def answers_bad_messages_with_an_error_frame(ctx: Context) -> None:
    "a malformed or not-allowed message gets an error frame, and the connection stays usable"
    with _connect(ctx, "ada") as ada:
        _join(ada, "workshop", "ada")
        for what, frame in BAD_MESSAGES:
            ada.send(frame)
            got = _next(ada, f"after {what}, ada waited for an error frame")
            expect(_kind(got) == "error", f"after {what}, ada got {_shown(got)}, expected {{'type': 'error'}}")
        _say(ada, "workshop", "still working")
        _expect_message(ada, "ada", "workshop", "ada", "still working", "(after the bad messages)")


@chat.check(points=1, hint=["Check len(text) > MAX_MESSAGE before parsing, and close with code 1009 (or answer "
                           "an error frame).",
                            "Compare len(text) with MAX_MESSAGE before validate_json: the model ignores the extra padding field, so the frame validates. Then await ws.close(code=1009) (status.WS_1009_MESSAGE_TOO_BIG)."])
def refuses_oversized_messages(ctx: Context) -> None:
    "a message over MAX_MESSAGE (4096) characters is refused: a close with code 1009, or an error frame"
    with _connect(ctx, "ada") as ada:
        ada.send(json.dumps({"type": "join", "room": "loft", "padding": "x" * (MAX_MESSAGE + 100)}))
        try:
            got = _decode(ada.recv(timeout=WAIT))
        except TimeoutError:
            raise CheckFailed(f"after a {MAX_MESSAGE + 100}-character message, nothing arrived within {WAIT:g} s")
        except ConnectionClosed as closed:
            expect(_close_code(closed) == 1009, f"after a {MAX_MESSAGE + 100}-character message, the app "
                                                f"{_closed_by(closed)}, expected 1009 (message too big)")
            return
        expect(_kind(got) == "error", f"a {MAX_MESSAGE + 100}-character message was answered with {_shown(got)}, "
                                      "expected a close with code 1009 or an error frame")


@chat.check(points=1, hint=["Track connections, not users: one user may have two tabs open, each its own "
                           "WebSocket in the room.",
                            "Key the room sets and self.users by WebSocket, not by user name, so two tabs are two members; members() dedupes names with a set, and forget(ws) removes only that one connection."])
def one_user_two_connections(ctx: Context) -> None:
    "a user with two connections gets messages on both, and closing one keeps the other"
    with _connect(ctx, "bob") as bob, _connect(ctx, "ada") as tab1:
        _join(bob, "studio", "bob")
        _join(tab1, "studio", "ada's first tab")
        with _connect(ctx, "ada") as tab2:
            _join(tab2, "studio", "ada's second tab")
            _say(bob, "studio", "to both tabs")
            _expect_message(tab1, "ada's first tab", "studio", "bob", "to both tabs", "(two tabs open)")
            _expect_message(tab2, "ada's second tab", "studio", "bob", "to both tabs", "(two tabs open)")
            expect(sorted(_members(ctx, "studio")) == ["ada", "bob"], "with ada in studio on two connections, GET "
                                                             "/rooms/studio should list her once")
        _say(bob, "studio", "one tab left")
        _expect_message(tab1, "ada's first tab", "studio", "bob", "one tab left", "(after her second tab closed)")
        expect(sorted(_members(ctx, "studio")) == ["ada", "bob"], "after ada closed one of two tabs, GET /rooms/studio "
                                                         "no longer listed her")


# -- a raw client, for connections that end without a close frame -------------------------------


SMALL_RCVBUF, SMALL_SEGMENT = 8192, 536  # bytes


class RawClient:
    """A WebSocket client on a plain socket: it can vanish without a close frame (a reset), as a
    phone that loses its network does, or stop reading, as a frozen tab does (with `small_window`,
    its receive buffer and segments are small, so that takes little data)."""

    def __init__(self, ctx: Context, path: str, subprotocols: list[str], small_window: bool = False):
        host, port = ctx.url.split("//", 1)[1].rsplit(":", 1)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if small_window:  # a client that stops reading then fills the app's buffers for it with little data
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_RCVBUF)
            if hasattr(socket, "TCP_MAXSEG"):  # small segments keep the app's kernel send buffer small too
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, SMALL_SEGMENT)
        self.sock.settimeout(WAIT)
        self.sock.connect((host, int(port)))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                           f"Sec-WebSocket-Protocol: {', '.join(subprotocols)}\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            expect(chunk, "the app closed the connection during the handshake")
            head += chunk
        expect(b" 101 " in head.split(b"\r\n", 1)[0], "the WebSocket handshake was refused")
        self.buffer = b""

    def send_text(self, text: str) -> None:
        payload, mask = text.encode(), os.urandom(4)
        header = bytes([0x81])
        header += bytes([0x80 | len(payload)]) if len(payload) < 126 else bytes([0x80 | 126]) + struct.pack("!H", len(payload))
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def recv_text(self) -> str:
        def need(count: int) -> bytes:
            while len(self.buffer) < count:
                chunk = self.sock.recv(65536)
                expect(chunk, "the app closed the connection")
                self.buffer += chunk
            data, self.buffer = self.buffer[:count], self.buffer[count:]
            return data

        first, second = need(2)
        length = second & 0x7F
        if length == 126:
            length = struct.unpack("!H", need(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", need(8))[0]
        return need(length).decode(errors="replace")

    def vanish(self) -> None:
        """Reset the connection: no close frame, no FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()
