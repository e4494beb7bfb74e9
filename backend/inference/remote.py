"""`RemoteInference`: the same interface as the in-process engine, over HTTP to backend.server.

Refusals come back as the same exceptions the engine raises (UserError and its kinds, carrying
the server's sentence), so the UI cannot tell which one it talks to."""

from __future__ import annotations

from typing import TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from backend.errors import UserError
from backend.inference.errors import InferenceTimeoutError, error_for
from backend.inference.schemas import (
    HealthResponse,
    SteerRequest,
    SteerResponse,
    TokenizeRequest,
    TokenizeResponse,
    TraceRequest,
    TraceResponse,
)

Response = TypeVar("Response", bound=BaseModel)

class RemoteInference:
    def __init__(self, base_url: str, token: str | None = None, timeout_s: float = 300.0):
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        # httpx.Client is thread-safe and pools connections, so UI sessions can share one.
        self._client = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout_s)

    def health(self) -> HealthResponse:
        return self._call("GET", "/health", None, HealthResponse)

    def tokenize(self, request: TokenizeRequest) -> TokenizeResponse:
        return self._call("POST", "/tokenize", request, TokenizeResponse)

    def trace(self, request: TraceRequest) -> TraceResponse:
        return self._call("POST", "/trace", request, TraceResponse)

    def steer(self, request: SteerRequest) -> SteerResponse:
        return self._call("POST", "/steer", request, SteerResponse)

    def close(self) -> None:
        self._client.close()

    def _call(self, method: str, path: str, request: BaseModel | None, response_type: type[Response]) -> Response:
        body = request.model_dump(mode="json") if request is not None else None
        try:
            response = self._client.request(method, path, json=body)
        except httpx.TimeoutException as exc:
            raise InferenceTimeoutError(f"The inference service at {self.base_url} did not answer in time; try "
                                        "fewer tokens or check that it is not overloaded.") from exc
        except httpx.TransportError as exc:
            raise UserError(f"Could not reach the inference service at {self.base_url} ({type(exc).__name__}); "
                            "check BACKEND_URL and that the service is running.") from exc
        if response.is_success:
            try:
                return response_type.model_validate(response.json())
            except (ValueError, ValidationError) as exc:
                raise UserError(f"The service at {self.base_url} answered {path} with something that is not a "
                                f"{response_type.__name__}; is BACKEND_URL an inference service of this "
                                "version?") from exc
        detail = _detail(response)
        error = error_for(response.status_code)
        if error is not None:
            raise error(detail)
        raise RuntimeError(f"The inference service failed with HTTP {response.status_code}: {detail}")


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    return detail if isinstance(detail, str) and detail else f"HTTP {response.status_code} {response.reason_phrase}."
