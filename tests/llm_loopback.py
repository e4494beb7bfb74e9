"""A small OpenAI-compatible server on loopback that answers deterministically, for the explainer tests.

It is a real HTTP server (`/v1/models`, `/v1/chat/completions`), started by a test in a thread. Its
"model" follows fixed rules, so every score it leads to can be recomputed by brute force:
- explain: the most common marked span in the examples (ties: the smallest string) becomes
  `[EXPLANATION]: the text "<span>"`;
- detection: 1 for each example whose text contains the span of the explanation;
- fuzzing: 1 for each example whose marked spans all equal that span.
`Behaviour` makes it misbehave on purpose: status codes for the first requests, garbage bodies, answers
without the asked format, a delay per request. Every request and answer is recorded."""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from backend.explain.prompts import DETECTION_SYSTEM, EXPLAIN_SYSTEM, FUZZING_SYSTEM

MODEL = "loopback-judge"
_SPAN = re.compile(r"<<(.*?)>>")
_EXAMPLE = re.compile(r"^Example \d+: (.*)$", re.M)


@dataclass
class Behaviour:
    fail_first: list[int] = field(default_factory=list)  # status codes for the first chat requests, in order
    fail_always: int | None = None  # this status for every chat request
    garbage: bool = False  # 200 with a body that is not a chat completion
    no_explanation_line: bool = False  # the explainer answers without "[EXPLANATION]:"
    short_judgment: bool = False  # the judges answer a list one element too short
    delay_s: float = 0.0
    stop_after: int | None = None  # answer 503 to every chat request after this many good ones


@dataclass
class Recorded:
    task: str  # explain | detection | fuzzing | other
    user: str
    answer: str
    status: int
    authorization: str
    started: float
    body: dict


def answer_for(task: str, user: str, behaviour: Behaviour) -> str:
    if task == "explain":
        if behaviour.no_explanation_line:
            return "These examples have something in common, I think."
        spans = Counter(s for s in _SPAN.findall(user))
        top = min(spans.items(), key=lambda kv: (-kv[1], kv[0]))[0] if spans else "nothing"
        return f"Looking at the marked tokens.\n[EXPLANATION]: the text \"{top}\""
    explanation = re.search(r'^Feature explanation: the text "(.*)"$', user, re.M)
    span = explanation.group(1) if explanation else "\0"
    examples = _EXAMPLE.findall(user)
    if task == "detection":
        said = [int(span in _SPAN.sub(r"\1", ex)) for ex in examples]
    else:
        said = [int(bool(_SPAN.findall(ex)) and all(s == span for s in _SPAN.findall(ex))) for ex in examples]
    if behaviour.short_judgment:
        said = said[:-1]
    return json.dumps(said)


def task_of(system: str) -> str:
    return {EXPLAIN_SYSTEM: "explain", DETECTION_SYSTEM: "detection", FUZZING_SYSTEM: "fuzzing"}.get(system, "other")


class LoopbackLLM:
    def __init__(self, behaviour: Behaviour | None = None):
        self.behaviour = behaviour or Behaviour()
        self.records: list[Recorded] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._chat_count = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> LoopbackLLM:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def answered(self, task: str) -> list[Recorded]:
        return [r for r in self.records if r.task == task and r.status == 200]

    def _handler(self):
        llm = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def _send(self, status: int, body: bytes, content_type: str = "application/json", headers=()) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for k, v in headers:
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path.rstrip("/") == "/v1/models":
                    data = {"object": "list", "data": [{"id": MODEL, "object": "model", "created": 0,
                                                        "owned_by": "tests"}]}
                    self._send(200, json.dumps(data).encode())
                else:
                    self._send(404, b'{"error": {"message": "no such route"}}')

            def do_POST(self) -> None:
                started = time.monotonic()
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send(404, b'{"error": {"message": "no such route"}}')
                    return
                with llm._lock:
                    llm.in_flight += 1
                    llm.max_in_flight = max(llm.max_in_flight, llm.in_flight)
                    n = llm._chat_count
                    llm._chat_count += 1
                try:
                    self._chat(body, n, started)
                finally:
                    with llm._lock:
                        llm.in_flight -= 1

            def _chat(self, body: dict, n: int, started: float) -> None:
                b = llm.behaviour
                messages = body.get("messages", [])
                system = next((m["content"] for m in messages if m["role"] == "system"), "")
                user = next((m["content"] for m in messages if m["role"] == "user"), "")
                task = task_of(system)
                if b.delay_s:
                    time.sleep(b.delay_s)
                status = b.fail_first[n] if n < len(b.fail_first) else b.fail_always
                good = n - len(b.fail_first)
                if status is None and b.stop_after is not None and good >= b.stop_after:
                    status = 503
                answer = "" if status else answer_for(task, user, b)
                llm.records.append(Recorded(task, user, answer, status or 200,
                                            self.headers.get("Authorization", ""), started, body))
                if status:
                    error = {"error": {"message": f"loopback says {status}", "type": "test", "code": status}}
                    self._send(status, json.dumps(error).encode(), headers=[("retry-after-ms", "5")])
                elif b.garbage:
                    self._send(200, b"<html><body>Welcome to nginx!</body></html>", "text/html")
                else:
                    completion = {
                        "id": f"chatcmpl-{n}", "object": "chat.completion", "created": 0, "model": body.get("model"),
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": answer}}],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                    }
                    self._send(200, json.dumps(completion).encode())

        return Handler
