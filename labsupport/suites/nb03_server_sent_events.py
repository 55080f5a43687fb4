"""Checks for notebook 03, server-sent events: an LLM relay, and notifications that survive a reconnect.

The checks read each stream as a browser's EventSource would (the HTML standard's parsing rules:
`data` lines joined, `event`, `id`, `retry`, comments), in a thread of their own, so that a check
can wait for the next event with a deadline, see the keep-alive comments, and hang up at will.
"""
from __future__ import annotations

import json
import queue
import socket
import threading
import time
from dataclasses import dataclass, field

import httpx

from ..checks import CheckFailed, Context, Suite, expect
from ..services import seconds

WAIT = 5.0  # seconds a check waits for an event that should come at once (more on a loaded machine)


@dataclass
class Event:
    """One dispatched event, as EventSource gives it to a page."""
    event: str = "message"
    data: str = ""
    id: str | None = None        # the id field of this event, if it had one
    retry: int | None = None
    comments: list[str] = field(default_factory=list)  # comment lines seen since the previous event

    def json(self) -> object:
        try:
            return json.loads(self.data)
        except ValueError:
            return None


class EventStream:
    """An HTTP request whose answer is read as server-sent events, in a thread.

    `status`, `headers` and (for an answer that is not a stream) `body` once it started;
    `next(what)` the next event, `comment(what)` the next comment line, `close()` hangs up."""

    def __init__(self, ctx: Context, path: str, method: str = "GET", headers: dict | None = None,
                 json_body: object = None, connect_timeout: float = 5.0):
        self._client = _stream_client(ctx, connect_timeout)
        self._items: queue.Queue = queue.Queue()
        self._started = threading.Event()
        self._socket: socket.socket | None = None
        self.status: int | None = None
        self.headers: httpx.Headers = httpx.Headers()
        self.body = b""
        self.ended = False       # the server ended the answer
        self.broken = None       # how the answer broke, if it did
        self.retry: int | None = None
        self._thread = threading.Thread(target=self._read, args=(method, path, headers, json_body), daemon=True)
        self._thread.start()
        if not self._started.wait(connect_timeout + 1):
            self.close()
            raise CheckFailed(f"{method} {path} gave no answer within {connect_timeout:g} s")
        if self.broken and self.status is None:
            raise CheckFailed(f"{method} {path}: {self.broken}")

    def _read(self, method, path, headers, json_body) -> None:
        try:
            with self._client.stream(method, path, headers=headers, json=json_body) as response:
                self.status, self.headers = response.status_code, response.headers
                stream = response.extensions.get("network_stream")
                self._socket = stream.get_extra_info("socket") if stream is not None else None
                if response.status_code != 200 or not response.headers.get("content-type", "").startswith(
                        "text/event-stream"):
                    self.body = response.read()
                    self._started.set()
                    return
                self._started.set()
                self._parse(response.iter_lines())
            self.ended = True
        except httpx.RemoteProtocolError:
            self.broken = "the app closed the connection in the middle of the stream"
        except (httpx.ReadError, httpx.StreamClosed, OSError, ValueError):
            self.broken = "the connection was closed"  # by close(), or reset by the app
        except httpx.HTTPError as error:
            self.broken = f"{type(error).__name__}"
        finally:
            self._started.set()
            self._items.put(None)

    def _parse(self, lines) -> None:
        event = Event()
        data: list[str] = []
        for line in lines:
            if line == "":
                if data:
                    event.data = "\n".join(data)
                    self._items.put(event)
                    event, data = Event(), []
                elif event.id is not None or event.retry is not None or event.event != "message":
                    event = Event(comments=event.comments)  # no data: nothing dispatched (the id counts)
                continue
            name, colon, value = line.partition(":")
            if not name:  # a comment
                self._items.put(value.lstrip(" ") if colon else "")
                continue
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                data.append(value)
            elif name == "event":
                event.event = value or "message"
            elif name == "id" and "\0" not in value:
                event.id = value
            elif name == "retry" and value.isdigit():
                event.retry = self.retry = int(value)

    def _next_item(self, what: str, timeout: float, shown: float | None = None):
        try:
            item = self._items.get(timeout=timeout)
        except queue.Empty:
            raise CheckFailed(f"{what}: nothing arrived within {shown or timeout:g} s") from None
        if item is None:
            self._items.put(None)  # stays at the end for the next caller
            raise CheckFailed(f"{what}: the stream ended" if self.ended and not self.broken else
                              f"{what}: {self.broken or 'the stream ended'}")
        return item

    def next(self, what: str, timeout: float = WAIT) -> Event:
        """The next event (comments are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            item = self._next_item(what, max(0.01, deadline - time.monotonic()), timeout)
            if isinstance(item, Event):
                return item

    def comment(self, what: str, timeout: float) -> str:
        """The next comment line; fails if an event comes first."""
        item = self._next_item(what, timeout)
        expect(isinstance(item, str), f"{what}: an event came instead of a comment")
        return item

    def rest(self, timeout: float) -> list:
        """Everything that arrives until the stream ends (or `timeout` passes): events and comments."""
        found, deadline = [], time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                item = self._items.get(timeout=left)
            except queue.Empty:
                break
            if item is None:
                self._items.put(None)
                break
            found.append(item)
        return found

    def close(self) -> None:
        """Hang up, as a closed browser tab does."""
        if self._socket is not None:
            try:
                self._socket.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(2)

    def __enter__(self) -> "EventStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _stream_client(ctx: Context, connect_timeout: float) -> httpx.Client:
    """One client for a check's streams (a new connection for each), closed when the check ends."""
    client = ctx.__dict__.get("_sse_client")
    if client is None:
        client = ctx.__dict__["_sse_client"] = ctx.http_client(timeout=httpx.Timeout(connect_timeout, read=None))
    return client


def _described(event: Event) -> str:
    return f"an event named {event.event!r}"[:60]


# -- exercise 1: the LLM relay ----------------------------------------------------------------------

relay = Suite("03-llm-relay")

CHAT = {"messages": [{"role": "user", "content": "Say hello"}]}
INTERNAL = "the model is overloaded"  # what the lab's OpenAI server says when it fails


def _relay(ctx: Context, body: object = None) -> EventStream:
    stream = EventStream(ctx, "/chat/stream", "POST", json_body=CHAT if body is None else body)
    expect(stream.status == 200, f"POST /chat/stream answered {stream.status}, expected 200")
    expect(stream.headers.get("content-type", "").startswith("text/event-stream"),
           "POST /chat/stream answered without Content-Type: text/event-stream")
    return stream


def _tokens(stream: EventStream, count: int, why: str) -> str:
    text = ""
    for n in range(count):
        event = stream.next(f"{why}: waiting for token {n + 1} of {count}")
        payload = event.json()
        expect(event.event == "message" and isinstance(payload, dict) and isinstance(payload.get("content"), str),
               f"{why}: token {n + 1} came as {_described(event)} whose data is not {{\"content\": ...}}")
        text += payload["content"]
    return text


@relay.check(points=2, hint=["Yield f\"data: {json.dumps({'content': token})}\\n\\n\" for each token with content, "
                            "then \"data: [DONE]\\n\\n\".",
                             "Call upstream.chat.completions.create with model=MODEL, the messages as dicts (model_dump) and stream=True; for each chunk yield choices[0].delta.content when it is not empty, then [DONE]."])
def streams_every_token_then_done(ctx: Context) -> None:
    "each token of the answer is an event {'content': ...}, in order, then data: [DONE]"
    tokens = ["Hel", "lo", ",", " wor", "ld", "!"]
    ctx.openai.script(tokens)
    with _relay(ctx) as stream:
        text = _tokens(stream, len(tokens), "a six-token answer")
        expect(text == "".join(tokens), "the tokens, joined, did not make the model's answer")
        done = stream.next("after the last token, waiting for data: [DONE]")
        expect(done.data == "[DONE]", f"after the last token came {_described(done)}, expected data: [DONE]")
        extra = [item for item in stream.rest(1.0) if isinstance(item, Event)]
        expect(not extra and stream.ended and not stream.broken,
               "after [DONE] the stream should end" if extra or not stream.ended else
               f"after [DONE]: {stream.broken}")


@relay.check(points=1, hint=["Pass headers=SSE_HEADERS to the StreamingResponse.",
                             "StreamingResponse takes headers= besides media_type='text/event-stream': pass the setup's SSE_HEADERS dict, which carries Cache-Control: no-cache and X-Accel-Buffering: no."])
def sends_streaming_headers(ctx: Context) -> None:
    "the answer says text/event-stream, no caching and no proxy buffering"
    ctx.openai.script(["ok"])
    with _relay(ctx) as stream:
        headers = stream.headers
    cache = headers.get("cache-control", "")
    expect("no-cache" in cache or "no-store" in cache, "the answer needs Cache-Control: no-cache (or no-store)")
    expect(headers.get("x-accel-buffering", "").lower() == "no",
           "the answer needs X-Accel-Buffering: no, or nginx holds the tokens back until its buffer fills")


@relay.check(points=1, hint=["Yield each token as it comes from the model: don't collect the answer first.",
                             "Yield inside the async for loop over the model's stream, one event per chunk; collecting a list or string and yielding after the loop, or calling create without stream=True, sends it all at the end."])
def streams_as_the_tokens_come(ctx: Context) -> None:
    "tokens reach the client while the model is still answering"
    delay, count = seconds(10), 6
    ctx.openai.script([f"t{n} " for n in range(count)], delay=delay)
    with _relay(ctx) as stream:
        stream.next("waiting for the first token")
        first = time.monotonic()
        _tokens(stream, count - 1, "waiting for the other tokens")
        spread = time.monotonic() - first
    expect(spread >= 0.5 * (count - 1) * delay,
           f"the tokens came {(count - 1) * delay:.1f} s apart from the model but reached the client within "
           f"{spread:.2f} s of each other: the answer was held back and sent at the end")


def _fails_cleanly(ctx: Context, failure: str, what: str) -> None:
    ctx.openai.script(["Hel", "lo", " there"], fail_after=2, failure=failure)
    with _relay(ctx) as stream:
        _tokens(stream, 2, f"a stream that {what} after two tokens")
        event = stream.next(f"after the model {what}, waiting for an error event")
        expect(event.event == "error", f"after the model {what}, the client got {_described(event)}"
               + (" (data: [DONE])" if event.data == "[DONE]" else "") + ", expected an event named 'error'")
        payload = event.json()
        expect(isinstance(payload, dict) and "error" in payload,
               "the error event's data should be a JSON object with an 'error' field")
        expect(INTERNAL not in event.data, "the error event repeats the model's own message: keep it in your log")
        after = stream.rest(1.0)
        expect(not [item for item in after if isinstance(item, Event)], "events came after the error event "
               "(a [DONE] after an error tells the client all went well)")
        expect(stream.ended and not stream.broken, f"after the error event: {stream.broken}" if stream.broken
               else "the stream did not end after the error event")


@relay.check(points=2, hint=["Catch openai.APIError around the upstream stream, yield an `event: error` with a "
                            "fixed message, and end the stream.",
                             "Wrap the create call and the async for loop in try/except APIError; in the except, log it, yield 'event: error' with data {\"error\": \"upstream_error\"}, then return so no [DONE] follows."])
def model_error_becomes_an_error_event(ctx: Context) -> None:
    "an error from the model mid-stream becomes an error event, and the stream ends cleanly"
    _fails_cleanly(ctx, "error", "reports an error")


@relay.check(points=1, hint=["A dropped upstream connection raises openai.APIConnectionError, a subclass of "
                            "APIError: the same except clause covers it.",
                             "Catch APIError itself, not APIStatusError or another subclass: a cut connection arrives as APIConnectionError, and the try must enclose the async for loop, not only the create call."])
def dropped_model_becomes_an_error_event(ctx: Context) -> None:
    "a model connection that drops mid-stream becomes an error event, and the stream ends cleanly"
    _fails_cleanly(ctx, "disconnect", "drops the connection")


@relay.check(points=2, hint=["Consume the model's stream inside the generator (no task of its own), within "
                            "`async with stream`: a disconnect cancels the generator, and the upstream with it.",
                             "Iterate the upstream stream right in the generator, inside async with stream (it closes the response when the generator is cancelled); no asyncio.create_task or queue that keeps reading after a hang-up."])
def disconnect_cancels_the_model(ctx: Context) -> None:
    "when the client hangs up, the request to the model is cancelled at once"
    ctx.openai.script([f"w{n} " for n in range(80)], delay=seconds(5))  # 4 s in all: longer than WAIT
    with _relay(ctx) as stream:
        _tokens(stream, 2, "a long answer")
    deadline = time.monotonic() + WAIT
    while not ctx.openai.cancelled and time.monotonic() < deadline:
        time.sleep(0.01)
    expect(ctx.openai.cancelled == 1, "the client hung up after two tokens, but the model's stream went on: you "
                                      "pay for tokens nobody reads")


BAD_REQUESTS = [
    ("no messages", {"messages": []}),
    ("a message without content", {"messages": [{"role": "user"}]}),
    ("an unknown role", {"messages": [{"role": "wizard", "content": "hi"}]}),
    ("a 5000-character message", {"messages": [{"role": "user", "content": "x" * 5000}]}),
    ("a body that is not an object", ["hello"]),
]


@relay.check(points=1, hint=["Declare the body as ChatRequest: FastAPI answers 422 before your code runs.",
                             "Annotate the endpoint's parameter as ChatRequest (not dict, Any or Request): its Message model rejects an empty list, a missing content, an unknown role and content over 4000 characters with 422."])
def refuses_bad_requests(ctx: Context) -> None:
    "a malformed chat request is answered 422, and the model is never called"
    ctx.openai.script(["fine"])
    with _relay(ctx) as stream:  # a valid request streams
        _tokens(stream, 1, "a valid request")
        stream.rest(WAIT)
    ctx.openai.reset()
    for what, body in BAD_REQUESTS:
        response = ctx.client.post("/chat/stream", json=body, timeout=WAIT)
        expect(response.status_code == 422, f"a request with {what} was answered {response.status_code}, "
                                            "expected 422")
    expect(not ctx.openai.requests, "a malformed request reached the model")


# -- exercise 2: notifications ----------------------------------------------------------------------

notifications = Suite("03-notifications")

KEEPALIVE = seconds(15)
RETRY_MS = round(seconds(3) * 1000)
REPLAY_WINDOW = 20
PUBLISHER_KEY = "publisher-key-for-the-lab"


def _auth(user: str) -> dict:
    return {"Authorization": f"Bearer token-{user}"}


def _publish(ctx: Context, user: str, text: str) -> str:
    response = ctx.client.post("/notifications", json={"user": user, "text": text},
                               headers={"X-Publisher-Key": PUBLISHER_KEY}, timeout=WAIT)
    expect(response.status_code == 201, f"POST /notifications answered {response.status_code}, expected 201")
    body = response.json()
    expect(isinstance(body, dict) and isinstance(body.get("id"), str) and body["id"].isdigit(),
           "POST /notifications should answer {'id': '<decimal id>'}")
    return body["id"]


def _listen(ctx: Context, user: str, last_id: str | None = None) -> EventStream:
    headers = _auth(user)
    if last_id is not None:
        headers["Last-Event-ID"] = last_id
    stream = EventStream(ctx, "/notifications/stream", headers=headers)
    expect(stream.status == 200, f"GET /notifications/stream as {user}"
           + (f" with Last-Event-ID {last_id}" if last_id else "") + f" answered {stream.status}, expected 200")
    expect(stream.headers.get("content-type", "").startswith("text/event-stream"),
           "GET /notifications/stream answered without Content-Type: text/event-stream")
    return stream


def _notification(stream: EventStream, what: str) -> tuple[str, str]:
    """(id, text) of the next notification event."""
    event = stream.next(what)
    expect(event.event == "notification", f"{what}: got {_described(event)}, expected 'notification'")
    payload = event.json()
    expect(event.id is not None, f"{what}: the notification had no id: field, so a reconnect cannot resume")
    expect(isinstance(payload, dict) and isinstance(payload.get("text"), str),
           f"{what}: the notification's data should be JSON with its 'text'")
    return event.id, payload["text"]


def _expect_texts(stream: EventStream, texts: list[str], ids: list[str], what: str) -> None:
    for n, (text, wanted_id) in enumerate(zip(texts, ids)):
        got_id, got_text = _notification(stream, f"{what}: waiting for notification {n + 1} of {len(texts)}")
        if got_text != text:
            position = f" {texts.index(got_text) + 1}" if got_text in texts else ""
            expect(not got_text.startswith("marker"), f"{what}: a notification published after the reconnect "
                                                      f"came before notification {n + 1} of {len(texts)}")
            expect(False, f"{what}: notification {n + 1} of {len(texts)} was another one"
                          + (f" (number{position}: out of order)" if position else
                             " (one already delivered, or not meant for this stream)"))
        expect(got_id == wanted_id, f"{what}: a notification came with id {got_id}, but POST /notifications "
                                    f"had answered id {wanted_id}")


def _nothing_more(ctx: Context, stream: EventStream, user: str, what: str) -> None:
    """No other notification is on its way: a marker published now is the very next event."""
    marker = f"marker for {user}"
    marker_id = _publish(ctx, user, marker)
    _expect_texts(stream, [marker], [marker_id], f"{what}, then a new notification")


@notifications.check(points=1, hint=["current_user gives the 401 for the stream, publisher for POST; an unknown "
                                    "user is a 404; the Notification model gives the 422.",
                                     "Keep Depends(current_user) on the stream and Depends(publisher) on POST, with the body typed Notification; in publish, feeds.get(note.user) is None for an unknown user: raise HTTPException(404)."])
def requires_credentials(ctx: Context) -> None:
    "the stream needs a user's token, publishing needs the publisher key; bad input is a 4xx"
    for headers, what in (({}, "no token"), ({"Authorization": "Bearer token-mallory"}, "an unknown token")):
        with EventStream(ctx, "/notifications/stream", headers=headers) as stream:
            expect(stream.status == 401, f"GET /notifications/stream with {what} answered {stream.status}, "
                                         "expected 401")
    cases = [({}, {"user": "ada", "text": "hi"}, 401, "no publisher key"),
             ({"X-Publisher-Key": "guess"}, {"user": "ada", "text": "hi"}, 401, "a wrong publisher key"),
             ({"X-Publisher-Key": PUBLISHER_KEY}, {"user": "mallory", "text": "hi"}, 404, "an unknown user"),
             ({"X-Publisher-Key": PUBLISHER_KEY}, {"user": "ada", "text": ""}, 422, "an empty text"),
             ({"X-Publisher-Key": PUBLISHER_KEY}, {"user": "ada", "text": "x" * 501}, 422, "a 501-character text")]
    for headers, body, status, what in cases:
        response = ctx.client.post("/notifications", json=body, headers=headers, timeout=WAIT)
        expect(response.status_code == status, f"POST /notifications with {what} answered {response.status_code}, "
                                               f"expected {status}")


@notifications.check(points=1, hint=["Start the stream with ServerSentEvent(retry=RETRY_MS).",
                                     "Make ServerSentEvent(retry=RETRY_MS), without data, the very first thing your events() generator yields, before any replay or wait, and return the generator in an EventSourceResponse."])
def tells_the_browser_when_to_reconnect(ctx: Context) -> None:
    "the stream starts with retry: RETRY_MS, before any notification"
    with _listen(ctx, "bob") as stream:
        time.sleep(0.05)
        marker = _publish(ctx, "bob", "marker: after the retry")
        _expect_texts(stream, ["marker: after the retry"], [marker], "a notification published after connecting")
    expect(stream.retry == RETRY_MS, "the stream never said retry:" if stream.retry is None else
           f"the stream said retry: {stream.retry}, expected {RETRY_MS}")


@notifications.check(points=2, hint=["For each notification, yield ServerSentEvent(data, event='notification', "
                                    "id=str(its id)); wait on the feed's Condition for the next.",
                                     "publish: increment feed.last_id, append (id, text) to feed.kept, notify_all() inside async with feed.changed. Stream: yield kept ids above the last sent, then await changed.wait_for(a newer last_id)."])
def delivers_notifications_with_ids(ctx: Context) -> None:
    "a connected user gets each new notification as it is published, with the id POST answered"
    with _listen(ctx, "ada") as stream:
        time.sleep(0.05)
        texts = ["one", "two", "three"]
        ids = [_publish(ctx, "ada", text) for text in texts]
        expect([int(i) for i in ids] == sorted({int(i) for i in ids}), "POST /notifications answered ids that do "
                                                                        "not increase")
        _expect_texts(stream, texts, ids, "three notifications published for ada")


@notifications.check(points=2, hint=["One feed per user: the stream reads only its own user's feed.",
                                     "Use feeds[user], with user from current_user, in the stream, and feeds[note.user] in publish; one global list or Condition for everybody leaks other users' notifications."])
def users_see_only_their_own(ctx: Context) -> None:
    "a user's stream carries only that user's notifications"
    with _listen(ctx, "ada") as ada, _listen(ctx, "bob") as bob:
        time.sleep(0.05)
        for_bob = _publish(ctx, "bob", "for bob only")
        for_ada = _publish(ctx, "ada", "for ada only")
        _expect_texts(ada, ["for ada only"], [for_ada], "one notification for bob, then one for ada: ada's stream")
        _expect_texts(bob, ["for bob only"], [for_bob], "bob's stream")


@notifications.check(points=3, hint=["Read Last-Event-ID (a header) and send every kept notification with a "
                                    "larger id, in order, before waiting for new ones.",
                                     "Declare last_event_id: Annotated[str | None, Header()] (FastAPI reads Last-Event-ID), start from int(it), and before waiting yield each (id, text) in feed.kept with a larger id, updating the last sent."])
def replays_what_was_missed(ctx: Context) -> None:
    "a reconnect with Last-Event-ID gets exactly the notifications missed, in order, then the new ones"
    with _listen(ctx, "cy") as stream:
        time.sleep(0.05)
        ids = [_publish(ctx, "cy", text) for text in ("seen 1", "seen 2")]
        _expect_texts(stream, ["seen 1", "seen 2"], ids, "before the reconnect")
    missed = ["missed 1", "missed 2", "missed 3"]
    missed_ids = [_publish(ctx, "cy", text) for text in missed]
    with _listen(ctx, "cy", ids[-1]) as stream:
        marker = _publish(ctx, "cy", "marker: after the reconnect")
        _expect_texts(stream, [*missed, "marker: after the reconnect"], [*missed_ids, marker],
                      f"reconnected with Last-Event-ID: {ids[-1]}")
        _nothing_more(ctx, stream, "cy", "after the replay")


@notifications.check(points=1, hint=["When Last-Event-ID is older than the oldest notification kept, send an event "
                                    "named 'reset' first, then every notification still kept.",
                                     "Reset when the id is below the oldest kept id minus 1 (or above feed.last_id): yield a ServerSentEvent with event='reset' and some data (without data it is never dispatched), then replay all of feed.kept."], timeout=20)
def resets_when_the_id_is_too_old(ctx: Context) -> None:
    "a Last-Event-ID older than the replay window gets a 'reset' event, then the whole window"
    texts = [f"old {n}" for n in range(REPLAY_WINDOW + 5)]
    ids = [_publish(ctx, "dee", text) for text in texts]
    with _listen(ctx, "dee", ids[0]) as stream:
        # nothing is published until the window is read: what it holds does not depend on timing
        first = stream.next(f"reconnected with the id of the first of {len(texts)} notifications")
        expect(first.event == "reset", f"with notifications lost from the replay window, the first event was "
                                       f"{_described(first)}, expected 'reset'")
        _expect_texts(stream, texts[-REPLAY_WINDOW:], ids[-REPLAY_WINDOW:], "after the reset")
        _nothing_more(ctx, stream, "dee", "after the window")


@notifications.check(points=1, hint=["Check Last-Event-ID before you start the stream: raise HTTPException(400).",
                                     "Validate before returning the EventSourceResponse: only a value that is ASCII, isdigit() and at most 18 characters passes, else raise HTTPException(400); an empty or missing header means no resume."])
def refuses_malformed_ids(ctx: Context) -> None:
    "a Last-Event-ID that this stream could not have sent is answered 400"
    for value in ("abc", "-1", "1.5", "1e3", "9" * 40):
        with EventStream(ctx, "/notifications/stream", headers={**_auth("ada"), "Last-Event-ID": value}) as stream:
            shown = value if len(value) < 10 else "a 40-digit number"
            expect(stream.status == 400, f"Last-Event-ID: {shown} was answered {stream.status}"
                   + (" (a stream)" if stream.status == 200 else "") + ", expected 400")


@notifications.check(points=1, hint=["EventSourceResponse(..., ping=KEEPALIVE) sends a comment line while the "
                                    "stream is idle.",
                                     "Return EventSourceResponse(events(), ping=KEEPALIVE), not a StreamingResponse (it sends no pings), and keep the generator waiting on the Condition rather than ending."])
def keeps_an_idle_stream_alive(ctx: Context) -> None:
    "an idle stream gets a comment line at least every KEEPALIVE seconds"
    with _listen(ctx, "bob") as stream:
        for n in range(2):
            stream.comment(f"an idle stream, waiting for keep-alive comment {n + 1}", timeout=3 * KEEPALIVE + 2)
