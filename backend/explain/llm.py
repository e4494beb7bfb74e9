"""The one place the `openai` client is used: any OpenAI-compatible endpoint (vLLM, llama.cpp, Ollama, ...).

Retries on 408/409/429/5xx and dropped connections are the client's own (exponential backoff that honours
Retry-After). What they cannot fix stops the run with one sentence (`EndpointError`): the endpoint is down,
refuses the key, lacks the model, keeps failing, or does not answer like an OpenAI-compatible server. A
request the endpoint rejects for this feature alone (400, e.g. a prompt too long) or an empty answer raises
`AnswerError`, recorded as that feature's failure."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

import openai

from backend.errors import UserError
from backend.explain.prompts import AnswerError


class EndpointError(UserError):
    """The endpoint cannot serve this run; the message is one sentence."""


@dataclass(frozen=True)
class EndpointConfig:
    url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    max_retries: int = 4
    timeout_s: float = 120.0
    temperature: float = 0.0
    max_tokens: int = 600


class RateLimiter:
    """At most `per_minute` request starts per minute across threads, evenly spaced (0 = no limit)."""

    def __init__(self, per_minute: float):
        self._interval = 60.0 / per_minute if per_minute > 0 else 0.0
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self._interval
        if slot > now:
            time.sleep(slot - now)


class ChatClient:
    def __init__(self, cfg: EndpointConfig, limiter: RateLimiter):
        if not cfg.url.startswith(("http://", "https://")):
            raise UserError(f"--explainer-url must be an http(s) URL like http://127.0.0.1:8000/v1, not '{cfg.url}'.")
        if not cfg.model.strip():
            raise UserError("Name the model the endpoint serves with --explainer-model.")
        self.cfg = cfg
        self._limiter = limiter
        # local servers ignore the key, but the client insists on one
        key = os.environ.get(cfg.api_key_env, "") or "not-needed"
        self._client = openai.OpenAI(base_url=cfg.url, api_key=key, max_retries=cfg.max_retries,
                                     timeout=cfg.timeout_s)

    def check(self) -> None:
        """Fail fast (before any held-out encoding) when the endpoint is down; a missing /models is fine."""
        try:
            self._client.with_options(max_retries=min(self.cfg.max_retries, 1)).models.list()
        except openai.APIStatusError as exc:
            if exc.status_code in (401, 403):
                raise self._error(exc) from exc
        except (openai.APIConnectionError, openai.APIResponseValidationError) as exc:
            raise self._error(exc) from exc

    def complete(self, system: str, user: str) -> str:
        self._limiter.wait()
        try:
            response = self._client.chat.completions.create(
                model=self.cfg.model,
                messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
                temperature=self.cfg.temperature,
                max_tokens=self.cfg.max_tokens,
            )
        except openai.BadRequestError as exc:
            raise AnswerError(f"the endpoint rejected the request (400: {_message(exc)})") from exc
        except openai.OpenAIError as exc:
            raise self._error(exc) from exc
        choices = getattr(response, "choices", None)
        if not isinstance(choices, list) or not choices or getattr(choices[0], "message", None) is None:
            raise EndpointError(f"The explainer at {self.cfg.url} did not answer like an OpenAI-compatible server "
                                "(no choices in its reply).")
        content = choices[0].message.content
        if not content or not content.strip():
            raise AnswerError("the answer was empty")
        return content

    def _error(self, exc: BaseException) -> EndpointError:
        where, tries = f"The explainer at {self.cfg.url}", self.cfg.max_retries
        if isinstance(exc, openai.APITimeoutError):
            return EndpointError(f"{where} did not answer within {self.cfg.timeout_s:g} s ({tries} retries).")
        if isinstance(exc, openai.APIConnectionError):
            return EndpointError(f"{where} cannot be reached ({_cause(exc)}); is the server running?")
        if isinstance(exc, openai.RateLimitError):
            return EndpointError(f"{where} kept answering 429 (too many requests) after {tries} retries; "
                                 "lower --rate-limit or --concurrency.")
        if isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError)):
            return EndpointError(f"{where} refused the API key from ${self.cfg.api_key_env} ({exc.status_code}).")
        if isinstance(exc, openai.NotFoundError):
            return EndpointError(f"{where} has no model '{self.cfg.model}' or no chat completions route (404).")
        if isinstance(exc, openai.APIStatusError):
            return EndpointError(f"{where} answered {exc.status_code} after {tries} retries: {_message(exc)}.")
        if isinstance(exc, openai.APIResponseValidationError):
            return EndpointError(f"{where} did not answer like an OpenAI-compatible server ({_message(exc)}).")
        return EndpointError(f"{where} failed: {type(exc).__name__}: {_message(exc)}.")


def _message(exc: BaseException) -> str:
    body = getattr(exc, "body", None)  # the server's own error message, when it sent JSON
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        text = body["message"]
    else:
        text = str(getattr(exc, "message", "") or exc)
    text = " ".join(text.split())
    return text[:160] + ("…" if len(text) > 160 else "")


def _cause(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    return _message(cause) if cause is not None else _message(exc)
