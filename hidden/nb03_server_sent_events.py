"""Hidden checks for notebook 03: the grader and the tests run them, the notebook does not."""
from __future__ import annotations

import threading
import time

from labsupport.checks import CheckFailed, Context, expect
from labsupport.suites.nb03_server_sent_events import (
    CHAT, REPLAY_WINDOW, WAIT, EventStream, _expect_texts, _listen, _nothing_more, _notification, _publish,
    _relay, _tokens, notifications, relay,
)

# -- the relay --------------------------------------------------------------------------------------


@relay.check(points=1, hidden=True)
def forwards_the_conversation(ctx: Context) -> None:
    "the model gets the whole conversation, as a streaming request"
    conversation = {"messages": [{"role": "system", "content": "Be brief."},
                                 {"role": "user", "content": "What is SSE?"},
                                 {"role": "assistant", "content": "Server-sent events."},
                                 {"role": "user", "content": "And WebSocket?"}]}
    ctx.openai.script(["A", " socket."])
    with _relay(ctx, conversation) as stream:
        _tokens(stream, 2, "a two-token answer")
    expect(len(ctx.openai.requests) == 1, f"the model got {len(ctx.openai.requests)} requests, expected 1")
    sent = ctx.openai.requests[0]
    expect(sent.get("stream") is True, "the request to the model did not ask for a stream")
    got = [{"role": m.get("role"), "content": m.get("content")} for m in sent.get("messages", [])]
    expect(got == conversation["messages"], "the model did not get the conversation as sent, in order")


@relay.check(points=1, hidden=True)
def streams_side_by_side(ctx: Context) -> None:
    "five clients streaming at once each get their own answer, whole"
    questions = [f"question number {n} for the model" for n in range(5)]
    streams = [_relay(ctx, {"messages": [{"role": "user", "content": q}]}) for q in questions]
    try:
        for question, stream in zip(questions, streams):
            words = question.split()
            text = _tokens(stream, len(words), "five streams at once")
            expect(text == " ".join(words), "a client got tokens of another client's answer")
    finally:
        for stream in streams:
            stream.close()


# -- notifications ----------------------------------------------------------------------------------


@notifications.check(points=1, hidden=True)
def resets_on_an_id_from_the_future(ctx: Context) -> None:
    "a Last-Event-ID larger than any sent (as after a server restart) gets a 'reset', then the window"
    ids = [_publish(ctx, "user01", f"kept {n}") for n in range(3)]
    with _listen(ctx, "user01", str(int(ids[-1]) + 1000)) as stream:
        marker = _publish(ctx, "user01", "marker: after the reconnect")
        first = stream.next("reconnected with an id this server never sent")
        expect(first.event == "reset", f"with an id never sent, the first event was named {first.event!r}, "
                                       "expected 'reset'")
        _expect_texts(stream, [*(f"kept {n}" for n in range(3)), "marker: after the reconnect"], [*ids, marker],
                      "after the reset")


@notifications.check(points=2, hidden=True, timeout=20)
def survives_a_reconnect_storm(ctx: Context) -> None:
    "a dozen reconnects at once, each from its own Last-Event-ID, each get exactly what they missed"
    texts = [f"storm {n}" for n in range(10)]
    ids = [_publish(ctx, "user02", text) for text in texts]
    starts = [n % (len(ids) + 1) for n in range(12)]  # resume after none, one, ... all ten
    streams = [_listen(ctx, "user02", ids[s - 1] if s else str(int(ids[0]) - 1)) for s in starts]
    try:
        marker = _publish(ctx, "user02", "marker: after the storm")
        for start, stream in zip(starts, streams):
            _expect_texts(stream, [*texts[start:], "marker: after the storm"], [*ids[start:], marker],
                          f"resumed after notification {start}")
    finally:
        for stream in streams:
            stream.close()


@notifications.check(points=2, hidden=True, timeout=20)
def keeps_order_while_reconnecting_under_load(ctx: Context) -> None:
    "notifications published while the client keeps reconnecting arrive once each, in order"
    rounds, ahead = 30, REPLAY_WINDOW // 2  # the publisher stays within the window of what was read
    total = rounds * 3
    published: list[tuple[str, str]] = []
    received: list[tuple[str, str]] = []
    stop, problems = threading.Event(), []

    def publisher() -> None:
        try:
            while len(published) < total and not stop.is_set():
                if len(published) - len(received) >= ahead:
                    time.sleep(0.002)
                    continue
                text = f"busy {len(published)}"
                published.append((_publish(ctx, "user03", text), text))
        except Exception as error:  # the check reports it; a thread must not print it
            problems.append(error)

    thread = threading.Thread(target=publisher, daemon=True)
    stream = _listen(ctx, "user03")
    thread.start()
    try:
        for round_ in range(rounds):  # read a few, hang up, resume from the last id seen, as EventSource does
            for _ in range(3):
                received.append(_notification(stream, "waiting for a notification"))
            stream.close()
            stream = _listen(ctx, "user03", received[-1][0])
        thread.join(ctx.remaining())
        expect(not problems, "publishing failed while the client reconnected")
        while len(received) < len(published):
            received.append(_notification(stream, "waiting for a notification"))
    except CheckFailed as failure:
        if "nothing arrived" not in str(failure):
            raise
        raise CheckFailed("notifications published while the client kept reconnecting never arrived") from None
    finally:
        stop.set()
        thread.join(2)
        stream.close()
    expect(received == published, "the notifications received across the reconnects were not each published "
                                  "one exactly once, in order")
