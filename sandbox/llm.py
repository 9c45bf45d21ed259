"""A local stand-in for an OpenAI-compatible chat-completions endpoint: a real HTTP server on
loopback that answers `POST /v1/chat/completions` in the service's wire format, for the LLM
triage's end-to-end tests and for trying the `llm` classifier without a provider.

The wire format follows OpenAI's public API reference for chat completions: the response is
`{"id", "object": "chat.completion", "created", "model", "choices": [{"index", "message": {"role":
"assistant", "content", "refusal"}, "logprobs", "finish_reason"}], "usage"}`, a refusal has
`content: null` and the refusal text in `message.refusal`, and errors are `{"error": {"message",
"type", "param", "code"}}` with the HTTP status (401 for a wrong key).

Its "model" is a lookup: `answers` maps a form text to the `{"label", "reason"}` to return, and
any other text is answered with `default`. `fault` makes every request fail one way, as a real
provider sometimes does: `slow` (answers after `delay_seconds`), `http_500`, `http_429`,
`not_json` (prose instead of JSON), `refusal`, `bad_label` (a fourth label), `extra_key`,
`truncated` (finish_reason "length"), `fenced` (the JSON inside a Markdown code fence).
Every request is kept in `requests` (the decoded body) for tests to inspect.

Usage: python -m sandbox.llm [--port 8089] [--key KEY]
"""

from __future__ import annotations

import argparse
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

__all__ = ["Fault", "LLMStub"]

Fault = Literal["slow", "http_500", "http_429", "not_json", "refusal", "bad_label", "extra_key", "truncated", "fenced"]

_PATH = "/v1/chat/completions"


@dataclass
class LLMStub:
    """The stub's behaviour, changed freely between requests (one lock guards the call log)."""

    api_key: str | None = None
    answers: dict[str, dict[str, str]] = field(default_factory=dict)
    default: dict[str, str] = field(default_factory=lambda: {"label": "sales", "reason": "asks for a demo"})
    fault: Fault | None = None
    delay_seconds: float = 2.0
    requests: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """What the product's `base_url` setting is for this stub (its requests go to `/chat/completions` under it)."""
        if self._server is None:
            raise RuntimeError("the stub is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def start(self, port: int = 0) -> LLMStub:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read `requests`
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                status, body = stub.answer(self.path, self.headers.get("Authorization"), raw)
                if stub.fault == "slow":
                    time.sleep(stub.delay_seconds)
                payload = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting
                    pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="llm-stub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> LLMStub:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def answer(self, path: str, authorization: str | None, raw: bytes) -> tuple[int, dict[str, Any] | bytes]:
        """The status and body for one request (the HTTP side only writes them out)."""
        if path != _PATH:
            return 404, _error(f"Unknown request URL: POST {path}.", "invalid_request_error", "unknown_url")
        if self.api_key is not None and authorization != f"Bearer {self.api_key}":
            return 401, _error("Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
        try:
            request = json.loads(raw)
            messages = request["messages"]
            model = str(request["model"])
        except (ValueError, KeyError, TypeError):
            return 400, _error("We could not parse the JSON body of your request.", "invalid_request_error", None)
        with self._lock:
            self.requests.append(request)
        if self.fault == "http_500":
            return 500, _error("The server had an error while processing your request.", "server_error", None)
        if self.fault == "http_429":
            return 429, _error("Rate limit reached for requests.", "requests", "rate_limit_exceeded")
        content, refusal, finish = self._message(dict(self.answers.get(_form_text(messages), self.default)))
        return 200, {
            "id": f"chatcmpl-stub{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": refusal},
                    "logprobs": None,
                    "finish_reason": finish,
                }
            ],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        }

    def _message(self, answer: dict[str, Any]) -> tuple[str | None, str | None, str]:
        """(content, refusal, finish_reason) of the answer to give, as the fault set makes it."""
        content: str | None = json.dumps(answer)
        refusal = None
        finish = "stop"
        if self.fault == "not_json":
            content = f"The label is {answer['label']}."
        elif self.fault == "refusal":
            content, refusal = None, "I'm sorry, I can't help with that."
        elif self.fault == "bad_label":
            content = json.dumps({"label": "urgent", "reason": answer["reason"]})
        elif self.fault == "extra_key":
            content = json.dumps({**answer, "priority": "high"})
        elif self.fault == "truncated":
            content, finish = (content or "")[:12], "length"
        elif self.fault == "fenced":
            content = f"```json\n{content}\n```"
        return content, refusal, finish


def _error(message: str, kind: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _form_text(messages: object) -> str:
    """The form text inside the last user message's `<submission>{json}</submission>`, or ""."""
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user" and isinstance(message.get("content"), str):
            content: str = message["content"]
            start, end = content.find("<submission>"), content.rfind("</submission>")
            if start < 0 or end < start:
                return ""
            try:
                document = json.loads(content[start + len("<submission>") : end])
            except ValueError:
                return ""
            text = document.get("form_text") if isinstance(document, dict) else None
            return text if isinstance(text, str) else ""
    return ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--key", default=None, help="require this bearer key (default: none)")
    args = parser.parse_args()
    stub = LLMStub(api_key=args.key).start(args.port)
    print(f"LLM stub answering at {stub.base_url}/chat/completions (Ctrl-C stops)")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        stub.stop()


if __name__ == "__main__":
    main()
