"""Hidden checks for notebook 02: the grader and the tests run them, the notebook does not."""
from __future__ import annotations

import asyncio
import json
import time

import websockets.asyncio.client
from websockets.exceptions import ConnectionClosed

from labsupport.checks import CheckFailed, Context, expect
from labsupport.suites.nb02_websockets import (
    TOKENS, WAIT, RawClient, _connect, _decode, _expect_message, _join, _kind, _members, _next, _say, _session,
    chat, heartbeat,
)

# -- the heartbeat ----------------------------------------------------------------------------------


@heartbeat.experiment
def ten_clients(ctx: Context) -> dict:
    """Ten clients at once: four answer every ping, three answer too but send junk first, three never answer."""
    clients = _session(ctx, [(None, False)] * 4 + [(None, True)] * 3 + [(0, False)] * 3)
    return {"answering": clients[:4], "junk": clients[4:7], "silent": clients[7:]}


@heartbeat.check(points=1, hidden=True)
def closes_only_the_silent_ones(ctx: Context) -> None:
    "with ten clients at once, exactly the silent ones are closed"
    clients = ten_clients(ctx)
    wrongly = sum(1 for c in clients["answering"] if c.closed is not None)
    kept = sum(1 for c in clients["silent"] if c.closed is None)
    expect(not wrongly, f"{wrongly} of 4 clients that answered every ping were closed")
    expect(not kept, f"{kept} of 3 silent clients were still connected at the end")
    expect(all(c.closed[0] == 1011 for c in clients["silent"]),
           "a silent client was closed with a code other than 1011")


@heartbeat.check(points=1, hidden=True)
def shrugs_off_junk(ctx: Context) -> None:
    "text that is not JSON, a binary frame or an unknown type does not end the connection"
    clients = ten_clients(ctx)["junk"]
    ended = [c.closed for c in clients if c.closed is not None]
    expect(not ended, f"after a client sent junk before its pongs, the app closed its connection (code "
                      f"{ended[0][0] if ended else ''})")
    expect(all(len(c.pings) >= 2 for c in clients), "after a client sent junk, the pings stopped")


# -- chat rooms -------------------------------------------------------------------------------------


@chat.check(points=2, hidden=True)
def survives_an_abrupt_disconnect(ctx: Context) -> None:
    "a connection reset without a close frame leaves every room; the user's other tab and the others chat on"
    with _connect(ctx, "ada") as ada, _connect(ctx, "bob") as tab:
        _join(ada, "deck", "ada")
        _join(ada, "galley", "ada")
        _join(tab, "deck", "bob's other tab")
        bob = RawClient(ctx, "/ws/chat", ["bearer", TOKENS["bob"]])
        for room in ("deck", "galley"):
            bob.send_text(json.dumps({"type": "join", "room": room}))
            expect(_kind(json.loads(bob.recv_text())) == "joined", f"bob's join of {room} was not answered")
        bob.vanish()  # like a phone that lost its network: no close frame
        ctx.wait_until(lambda: _members(ctx, "galley") == ["ada"],
                       "bob leaving galley after his connection was reset", timeout=WAIT)
        expect(sorted(_members(ctx, "deck")) == ["ada", "bob"], "after one of bob's two connections was reset, "
                                                                 "GET /rooms/deck no longer listed him")
        for n in range(3):
            _say(ada, "deck", f"after the reset {n}")
        for n in range(3):
            _expect_message(ada, "ada", "deck", "ada", f"after the reset {n}", "(a member's connection was reset)")
            _expect_message(tab, "bob's other tab", "deck", "ada", f"after the reset {n}",
                            "(his other connection was reset)")


@chat.check(points=1, hidden=True)
def membership_is_per_connection(ctx: Context) -> None:
    "a user's connection that did not join a room gets none of its messages"
    with _connect(ctx, "bob") as bob, _connect(ctx, "ada") as joined, _connect(ctx, "ada") as other:
        _join(bob, "attic", "bob")
        _join(joined, "attic", "ada's first tab")
        _join(other, "porch", "ada's second tab")
        _say(bob, "attic", "attic talk")
        _expect_message(joined, "ada's first tab", "attic", "bob", "attic talk", "(the tab in attic)")
        _say(other, "porch", "porch talk")
        _expect_message(other, "ada's second tab", "porch", "ada", "porch talk", "(it joined porch, not attic)")


USERS_AT_ONCE, ROOMS_AT_ONCE = 50, 5


@chat.check(points=2, hidden=True, timeout=15)
async def fifty_clients_in_five_rooms(ctx: Context) -> None:
    "fifty clients in five rooms each get exactly their own room's messages"
    users = [f"user{n:02d}" for n in range(USERS_AT_ONCE)]
    room_of = {user: f"room-{n % ROOMS_AT_ONCE}" for n, user in enumerate(users)}

    async def client(user: str, all_joined: asyncio.Event, joined: list, received: dict) -> None:
        async with websockets.asyncio.client.connect(
                ctx.ws_url + "/ws/chat", subprotocols=["bearer", TOKENS[user]], open_timeout=ctx.remaining(),
                close_timeout=1) as ws:
            await ws.send(json.dumps({"type": "join", "room": room_of[user]}))
            while _kind(json.loads(await ws.recv())) != "joined":
                pass
            joined.append(user)
            if len(joined) == len(users):
                all_joined.set()
            await all_joined.wait()
            await ws.send(json.dumps({"type": "message", "room": room_of[user], "text": f"from {user}"}))
            expected = USERS_AT_ONCE // ROOMS_AT_ONCE
            got = received[user] = []
            while len(got) < expected:
                message = json.loads(await ws.recv())
                if _kind(message) == "message":
                    got.append((message.get("room"), message.get("text")))
            await asyncio.sleep(0.1)  # a stray message from another room would arrive now
            while True:
                try:
                    message = json.loads(await asyncio.wait_for(ws.recv(), 0.05))
                except TimeoutError:
                    break
                if _kind(message) == "message":
                    got.append((message.get("room"), message.get("text")))

    all_joined, joined, received = asyncio.Event(), [], {}
    clients = asyncio.gather(*(client(u, all_joined, joined, received) for u in users), return_exceptions=True)
    limit = max(0.1, ctx.remaining() - 0.5)
    try:
        results = await asyncio.wait_for(clients, limit)
    except TimeoutError:
        raise CheckFailed(f"within {limit:.0f} s, {len(joined)} of {USERS_AT_ONCE} clients had joined, and not "
                          "every client got its room's messages") from None
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed:
        first = failed[0]
        why = "a frame did not arrive in time" if isinstance(first, TimeoutError) else (
            "a connection was closed" if isinstance(first, ConnectionClosed) else type(first).__name__)
        raise CheckFailed(f"{len(failed)} of {USERS_AT_ONCE} clients failed ({why})")
    for user in users:
        room = room_of[user]
        expected = sorted((room, f"from {u}") for u in users if room_of[u] == room)
        got = received[user]
        expect(all(r == room for r, _ in got), f"a client in {room} got messages of another room")
        expect(sorted(got) == expected, f"a client in {room} got {len(got)} messages, expected each of the "
                                        f"{len(expected)} sent in its room once")


SLOW_TEXT = 1000             # characters in each message (the longest a message may be)
SLOW_VOLUME = 2**20          # what ada sends while dee does not read; about 0.2 MiB fills dee's buffers on Linux
                             # (his receive window and segments are small: RawClient(small_window=True))
SLOW_BATCH = 20              # messages ada sends before bob reads them
SLOW_LIMIT = 20.0            # seconds for all of them: a broadcast that waits SEND_TIMEOUT for dee each time needs
                             # hundreds


@chat.check(points=2, hidden=True, timeout=SLOW_LIMIT + 2 * WAIT)
def a_slow_member_does_not_stall_the_room(ctx: Context) -> None:
    "a member who stops reading does not stall the room: the others keep getting every message, in time"
    room, count = "slow-lane", SLOW_VOLUME // SLOW_TEXT
    dee = RawClient(ctx, "/ws/chat", ["bearer", TOKENS["dee"]], small_window=True)
    try:
        dee.send_text(json.dumps({"type": "join", "room": room}))
        try:
            joined = _decode(dee.recv_text())
        except TimeoutError:
            raise CheckFailed(f"dee joined {room!r}: nothing arrived within {WAIT:g} s") from None
        expect(_kind(joined) == "joined", f"dee joined {room!r} and got {_kind(joined)!r}, expected 'joined'")
        with _connect(ctx, "ada", max_queue=None) as ada, _connect(ctx, "bob", max_queue=None) as bob:
            _join(ada, room, "ada")
            _join(bob, room, "bob")
            start = time.monotonic()  # from now on, dee reads nothing
            for first in range(0, count, SLOW_BATCH):
                batch = range(first, min(count, first + SLOW_BATCH))
                for n in batch:
                    _say(ada, room, f"{n:06d}".ljust(SLOW_TEXT, "."))
                for n in batch:
                    got = _next(bob, f"while dee did not read, bob had {n} of ada's {count} messages and waited for "
                                     "the next (a broadcast must not wait for a member who does not read)")
                    expect(_kind(got) == "message" and got.get("text") == f"{n:06d}".ljust(SLOW_TEXT, "."),
                           f"while dee did not read, bob waited for ada's message {n + 1} of {count} and got "
                           + ("another one" if _kind(got) == "message" else f"a {_kind(got)!r} frame"))
                spent = time.monotonic() - start
                expect(spent < SLOW_LIMIT, f"while dee did not read, bob got only {batch[-1] + 1} of ada's {count} "
                                           f"messages in {spent:.0f} s: does every broadcast wait for dee? Drop a "
                                           "member whose send timed out")
    finally:
        dee.vanish()
