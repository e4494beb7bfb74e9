"""The inference HTTP service: thin FastAPI routes over an `Inference` engine.

- Validation lives in backend.inference.schemas; every refusal is `{"detail": "<one sentence>"}`
  with a 4xx (503 busy, 504 timeout), never a traceback.
- Listening beyond loopback requires a bearer token (env BACKEND_TOKEN), compared in constant time.
- Each request runs in a worker thread under a time limit; the engine serialises model calls.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Annotated, TypeVar

import anyio
import anyio.to_thread
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from backend.errors import UserError
from backend.inference.errors import BACKEND_TOKEN_ENV, InferenceTimeoutError, status_for
from backend.inference.protocols import Inference
from backend.inference.schemas import (
    ErrorResponse,
    HealthResponse,
    InferenceLimits,
    SteerRequest,
    SteerResponse,
    TokenizeRequest,
    TokenizeResponse,
    TraceRequest,
    TraceResponse,
    describe_validation_error,
)
from backend.sources import SourceSpec

log = logging.getLogger(__name__)

MIN_TOKEN_LENGTH = 16
MAX_BODY_BYTES = 1_000_000
# The engine stops itself at the limit; the HTTP layer answers shortly after even if it cannot.
TIMEOUT_GRACE_S = 2.0

Response = TypeVar("Response", bound=BaseModel)
# Module level: route annotations are strings (future import) and are resolved in module globals.
_BEARER = HTTPBearer(auto_error=False, description=f"The service's {BACKEND_TOKEN_ENV}.")


class ServeConfig(BaseModel):
    source: SourceSpec = Field(default_factory=SourceSpec)
    host: str = "127.0.0.1"
    port: int = Field(8600, ge=0, le=65535)
    device: str | None = None
    index_path: str | None = None
    limits: InferenceLimits = Field(default_factory=InferenceLimits)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name other than localhost may resolve anywhere
        return False


def check_bind_security(host: str, token: str | None) -> None:
    """Refuse to expose the model beyond this machine without a real token."""
    if is_loopback(host):
        return
    if not token:
        raise UserError(f"Refusing to listen on {host} without a token; set {BACKEND_TOKEN_ENV} to a secret of at "
                        f"least {MIN_TOKEN_LENGTH} characters, or listen on 127.0.0.1.")
    if len(token) < MIN_TOKEN_LENGTH:
        raise UserError(f"{BACKEND_TOKEN_ENV} is {len(token)} characters long; use at least {MIN_TOKEN_LENGTH} when "
                        f"listening on {host}.")


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": describe_validation_error(exc.errors())}, status_code=422)

    @app.exception_handler(UserError)
    async def _user_error(_: Request, exc: UserError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=status_for(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"There is no endpoint {request.url.path}; see /openapi.json."
        elif exc.status_code == 405:
            detail = f"{request.url.path} does not accept {request.method}; see /openapi.json."
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _bug(_: Request, exc: Exception) -> JSONResponse:
        log.exception("inference request failed", exc_info=exc)
        return JSONResponse({"detail": "The inference service hit an internal error; its log has the details."},
                            status_code=500)


def _serve_source_bounds(app: FastAPI, inference: Inference) -> None:
    """/openapi.json with the loaded source's bounds (feature ids, widths, new tokens), built once."""
    from fastapi.openapi.utils import get_openapi

    from backend.inference.openapi_bounds import add_source_bounds

    def openapi() -> dict:
        if app.openapi_schema is None:
            generated = get_openapi(title=app.title, version=app.version, description=app.description,
                                    routes=app.routes)
            app.openapi_schema = add_source_bounds(generated, inference.health())
        return app.openapi_schema

    app.openapi = openapi


def create_app(inference: Inference, token: str | None = None, limits: InferenceLimits | None = None) -> FastAPI:
    limits = limits or InferenceLimits()
    app = FastAPI(title="SAE feature explorer inference", version="1",
                  description="Live prompt tracing and feature steering on one model + SAE. Send "
                              "'Authorization: Bearer <token>' when the service was started with a token.")
    _install_error_handlers(app)
    _serve_source_bounds(app, inference)

    def require_token(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]) -> None:
        if token is None:
            return
        given = credentials.credentials if credentials is not None else ""
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise StarletteHTTPException(401, detail="Missing or wrong bearer token; send 'Authorization: Bearer "
                                                     f"<{BACKEND_TOKEN_ENV}>'.", headers={"WWW-Authenticate": "Bearer"})

    @app.middleware("http")
    async def _limit_body(request: Request, call_next):
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
            return JSONResponse({"detail": f"The request body is larger than {MAX_BODY_BYTES} bytes."},
                                status_code=413)
        return await call_next(request)

    async def run_limited(call: Callable[[], Response]) -> Response:
        try:
            with anyio.fail_after(limits.timeout_s + TIMEOUT_GRACE_S):
                return await anyio.to_thread.run_sync(call, abandon_on_cancel=True)
        except TimeoutError as exc:
            raise InferenceTimeoutError(f"The request took longer than the {limits.timeout_s:g} s limit; ask for "
                                        "fewer tokens or try again when the service is less busy.") from exc

    guarded = [Depends(require_token)]
    refusals = {status: {"model": ErrorResponse} for status in (400, 401, 404, 413, 422, 503, 504)}

    @app.get("/health", dependencies=guarded, responses=refusals)
    async def health() -> HealthResponse:
        return await run_limited(inference.health)

    @app.post("/tokenize", dependencies=guarded, responses=refusals)
    async def tokenize(request: TokenizeRequest) -> TokenizeResponse:
        return await run_limited(lambda: inference.tokenize(request))

    @app.post("/trace", dependencies=guarded, responses=refusals)
    async def trace(request: TraceRequest) -> TraceResponse:
        return await run_limited(lambda: inference.trace(request))

    @app.post("/steer", dependencies=guarded, responses=refusals)
    async def steer(request: SteerRequest) -> SteerResponse:
        return await run_limited(lambda: inference.steer(request))

    return app


class BackgroundServer:
    """A real uvicorn server on a free loopback port in a daemon thread (tests, benchmarks, UI checks).

    with BackgroundServer(create_app(engine)) as server: httpx.get(server.url + "/health")
    """

    def __init__(self, app: FastAPI, host: str = "127.0.0.1"):
        import uvicorn

        # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on sockets whose proto says TCP, and
        # without it every response waits ~40 ms for a delayed ACK.
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.bind((host, 0))  # the OS picks a free port; uvicorn serves on this very socket
        self.url = f"http://{host}:{self._socket.getsockname()[1]}"
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True)

    def __enter__(self) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("The background inference server did not start.")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)
        self._socket.close()


def serve(config: ServeConfig) -> None:
    """Load the source once and serve it until interrupted (the `python -m backend serve` command)."""
    import uvicorn

    from backend.inference.engine import LocalInference
    from backend.inference.stats import open_feature_stats
    from backend.sources import load_source

    token = os.environ.get(BACKEND_TOKEN_ENV) or None
    check_bind_security(config.host, token)
    source = load_source(config.source, config.device)
    stats = open_feature_stats(config.index_path, source.d_sae, required=True)
    engine = LocalInference(source, stats, config.limits)
    auth = "bearer token required" if token else "no token (loopback only)"
    print(f"serving {config.source} ({source.hook_name}, d_sae {source.d_sae}) on http://{config.host}:{config.port}"
          f" - {auth}", flush=True)
    uvicorn.run(create_app(engine, token, config.limits), host=config.host, port=config.port, log_level="info")
