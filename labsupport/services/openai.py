"""An OpenAI-compatible chat completions server that streams scripted tokens.

    fake = lab_services().openai                 # or ctx.openai in a check
    client = openai.OpenAI(base_url=fake.base_url, api_key="lab")
    fake.script(["Hel", "lo", "!"], delay=lab.seconds(1))   # the next answers stream these tokens
    fake.script(["a", "b", "c"], fail_after=2)               # then the connection drops
    fake.script(["a", "b"], fail_after=1, failure="error")   # then an error event
    fake.requests            # every request body received, in order
    fake.finished, fake.cancelled, fake.dropped    # streams that ended / the client left / the server broke

Without a script, the answer is the last user message's words, echoed back one token each.
A request with `stream_options: {"include_usage": true}` gets, as from OpenAI, a last chunk with no
choices and the token counts in `usage` (every chunk before it has `"usage": null`).
"""
from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route


@dataclass
class Script:
    tokens: list[str]
    delay: float = 0.0
    fail_after: int | None = None
    failure: str = "disconnect"  # or "error": an error event in the stream


class FakeOpenAI:
    def __init__(self):
        from ..serving import Server

        self.requests: list[dict] = []
        self.finished = 0
        self.cancelled = 0
        self.dropped = 0
        self._scripts: list[Script] = []
        self._default: Script | None = None
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        app = Starlette(routes=[Route("/v1/chat/completions", self._completions, methods=["POST"]),
                                Route("/v1/models", self._models, methods=["GET"])])
        self._server = Server(app, name="lab-openai", graceful_timeout=0.1)
        self._server._start()
        self.url = self._server.url
        self.base_url = self._server.url + "/v1"

    def close(self) -> None:
        self._server.stop()

    def script(self, tokens: list[str], delay: float = 0.0, fail_after: int | None = None,
               failure: str = "disconnect", times: int | None = None) -> None:
        """The next answers stream `tokens`, `delay` seconds apart; with `fail_after`, the stream
        breaks after that many tokens (`failure`: "disconnect" or "error"). `times`: for that many
        requests, then back to the default; None: for every request from now on."""
        script = Script(list(tokens), delay, fail_after, failure)
        with self._lock:
            if times is None:
                self._default, self._scripts = script, []
            else:
                self._scripts.extend([script] * times)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._scripts.clear()
            self._default = None
            self.finished = self.cancelled = self.dropped = 0

    def wait_for_end(self, streams: int = 1, timeout: float = 5.0) -> bool:
        """Wait until `streams` streams have ended, finished or cancelled (False on timeout)."""
        deadline = time.monotonic() + timeout
        while self.finished + self.cancelled + self.dropped < streams:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def _next_script(self, body: dict) -> Script:
        with self._lock:
            if self._scripts:
                return self._scripts.pop(0)
            if self._default is not None:
                return self._default
        words = str((body.get("messages") or [{}])[-1].get("content", "")).split()
        return Script([w if i == 0 else " " + w for i, w in enumerate(words)] or ["..."])

    async def _models(self, request: Request):
        return JSONResponse({"object": "list", "data": [{"id": "lab-model", "object": "model", "owned_by": "lab"}]})

    async def _completions(self, request: Request):
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"error": {"message": "the body is not JSON", "type": "invalid_request_error"}}, 400)
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return JSONResponse({"error": {"message": "messages is required", "type": "invalid_request_error"}}, 400)
        with self._lock:
            self.requests.append(body)
        script = self._next_script(body)
        completion_id = f"chatcmpl-lab{next(self._ids)}"
        model = str(body.get("model", "lab-model"))
        if not body.get("stream"):
            text = "".join(script.tokens)
            with self._lock:
                self.finished += 1
            return JSONResponse({
                "id": completion_id, "object": "chat.completion", "created": 0, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            })
        options = body.get("stream_options")
        usage = isinstance(options, dict) and options.get("include_usage") is True
        prompt = sum(len(str(m.get("content", "")).split()) for m in body["messages"] if isinstance(m, dict))
        return StreamingResponse(self._stream(script, completion_id, model, prompt if usage else None),
                                 media_type="text/event-stream")

    async def _stream(self, script: Script, completion_id: str, model: str, prompt_tokens: int | None = None):
        def chunk(delta: dict, finish: str | None = None) -> str:
            data = {"id": completion_id, "object": "chat.completion.chunk", "created": 0, "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            if prompt_tokens is not None:
                data["usage"] = None
            return f"data: {json.dumps(data)}\n\n"

        def usage_chunk() -> str:
            counts = {"prompt_tokens": prompt_tokens, "completion_tokens": len(script.tokens),
                      "total_tokens": prompt_tokens + len(script.tokens)}
            data = {"id": completion_id, "object": "chat.completion.chunk", "created": 0, "model": model,
                    "choices": [], "usage": counts}
            return f"data: {json.dumps(data)}\n\n"

        ended = dropped = False
        try:
            yield chunk({"role": "assistant", "content": ""})
            for index, token in enumerate(script.tokens):
                if script.fail_after is not None and index >= script.fail_after:
                    if script.failure == "error":
                        error = {"error": {"message": "the model is overloaded", "type": "server_error"}}
                        yield f"data: {json.dumps(error)}\n\n"
                        ended = True
                        return
                    dropped = True
                    raise ConnectionAbortedError("the lab's OpenAI server drops the stream")
                if script.delay:
                    await asyncio.sleep(script.delay)
                yield chunk({"content": token})
            yield chunk({}, "stop")
            if prompt_tokens is not None:
                yield usage_chunk()
            yield "data: [DONE]\n\n"
            ended = True
        finally:
            with self._lock:
                if ended:
                    self.finished += 1
                elif dropped:
                    self.dropped += 1
                else:
                    self.cancelled += 1  # the client went away mid-stream
