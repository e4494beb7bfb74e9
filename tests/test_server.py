"""The real HTTP service (uvicorn on a loopback port in a thread) against the in-process engine:
same results, concurrency, one-sentence refusals, auth, and the client's error mapping."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from backend.errors import NotFoundError, UserError
from backend.inference import Inference, get_inference
from backend.inference.engine import LocalInference
from backend.inference.errors import InferenceBusyError, InferenceTimeoutError
from backend.inference.remote import RemoteInference
from backend.inference.schemas import (
    InferenceLimits,
    SteerFeature,
    SteerRequest,
    TokenizeRequest,
    TraceRequest,
)
from backend.server import BackgroundServer, ServeConfig, check_bind_security, create_app, serve
from backend.sources import SourceSpec, load_source
from tests.support.tiny_source import free_port, wait_until_answering

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "a-test-token-of-32-characters-xx"
PROMPTS = ["def add(a, b):\n    return a + b", "import os\nprint(os.path)", "x = [1, 2, 3]", "café 你好"]


@pytest.fixture(scope="module")
def server(engine):
    with BackgroundServer(create_app(engine)) as running:
        yield running


@pytest.fixture(scope="module")
def remote(server):
    client = RemoteInference(server.url)
    yield client
    client.close()


def mixed_requests() -> list[TraceRequest | SteerRequest | TokenizeRequest]:
    requests: list[TraceRequest | SteerRequest | TokenizeRequest] = []
    for i, prompt in enumerate(PROMPTS):
        requests.append(TraceRequest(prompt=prompt, top_k=3 + i, feature_ids=[i, 20 + i]))
        requests.append(TraceRequest(prompt=prompt, position=-2, ignore_bos=False, trace_top_feature=i % 2 == 0))
        requests.append(SteerRequest(prompt=prompt, features=[SteerFeature(feature_id=3 + i, strength=6.0 - 4 * i)],
                                     mode=("add", "clamp", "ablate", "add")[i], max_new_tokens=6, seed=i,
                                     temperature=0.8))
        requests.append(TokenizeRequest(prompt=prompt))
    return requests


def call(inference, request):
    if isinstance(request, TraceRequest):
        return inference.trace(request)
    if isinstance(request, SteerRequest):
        return inference.steer(request)
    return inference.tokenize(request)


def test_http_results_equal_in_process_results(engine, remote):
    assert remote.health() == engine.health()
    for request in mixed_requests():
        assert call(remote, request) == call(engine, request)


def test_sixteen_concurrent_mixed_requests_each_equal_their_serial_result(engine, remote):
    requests = mixed_requests()
    assert len(requests) == 16
    serial = [call(engine, r) for r in requests]
    with ThreadPoolExecutor(max_workers=16) as pool:
        concurrent = list(pool.map(lambda r: call(remote, r), requests))
    assert concurrent == serial


BAD_REQUESTS = [
    ("/trace", {}, 422, "'prompt' is required"),
    ("/trace", {"prompt": ""}, 422, "prompt is empty"),
    ("/trace", {"prompt": "x", "top_k": 1000}, 422, "less than or equal to 64"),
    ("/trace", {"prompt": "x", "feature_ids": [64]}, 404, "features 0 to 63"),
    ("/trace", {"prompt": "x", "feature_ids": [-1]}, 422, "greater than or equal to 0"),
    ("/trace", {"prompt": "word " * 40}, 400, "at most 32 fit"),
    ("/trace", {"prompt": 12}, 422, "valid string"),
    ("/trace", {"prompt": "x", "verbose": True}, 422, "'verbose' is not a field"),
    ("/trace", [1, 2], 422, "request body is invalid"),
    ("/tokenize", {"prompt": "x" * 20_001}, 422, "at most 20000 characters"),
    ("/steer", {"prompt": "x", "features": [{"feature_id": 1}]}, 400, "no index is loaded"),
    ("/steer", {"prompt": "x", "features": [{"feature_id": 1, "strength": 5000}]}, 422, "less than or equal to 1000"),
    ("/steer", {"prompt": "x", "features": [{"feature_id": 1, "strength": "lots"}]}, 422, "valid number"),
    ("/steer", {"prompt": "x", "features": []}, 422, "at least one feature or vector"),
    ("/steer", {"prompt": "x", "features": [{"feature_id": 1, "strength": 1}], "mode": "boost"}, 422,
     "'add', 'clamp' or 'ablate'"),
    ("/steer", {"prompt": "x", "features": [{"feature_id": 1, "strength": 1}], "max_new_tokens": 600}, 422,
     "less than or equal to 512"),
    ("/steer", {"prompt": "x", "features": [{"feature_id": 1, "strength": 1}], "max_new_tokens": 129}, 400,
     "at most 128 tokens"),
    ("/steer", {"prompt": "x", "features": [{"feature_id": 1, "strength": 1}, {"feature_id": 1, "strength": 2}]},
     422, "listed twice"),
    ("/steer", {"prompt": "x", "features": [{"feature_id": 999, "strength": 1}]}, 404, "does not exist"),
]


@pytest.mark.parametrize("path, body, status, fragment", BAD_REQUESTS)
def test_bad_requests_get_a_4xx_with_one_sentence(server, path, body, status, fragment):
    response = httpx.post(server.url + path, json=body)
    assert response.status_code == status
    detail = response.json()["detail"]
    assert isinstance(detail, str) and fragment in detail and detail.endswith(".")
    assert "\n" not in detail and "Traceback" not in detail


@pytest.mark.parametrize("content, fragment", [
    ('{"prompt": "x", "features": [{"feature_id": 1, "strength": NaN}]}', "finite number"),
    ('{"prompt": "x", "features": [{"feature_id": 1, "strength": Infinity}]}', "finite number"),
    ('{"prompt": "x",', "not valid JSON"),
])
def test_non_finite_strengths_and_broken_json_are_refused(server, content, fragment):
    response = httpx.post(server.url + "/steer", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 422 and fragment in response.json()["detail"]


def test_unknown_routes_and_methods_are_sentences_and_the_service_stays_up(server):
    assert "no endpoint /nope" in httpx.get(server.url + "/nope").json()["detail"]
    assert httpx.get(server.url + "/trace").status_code == 405
    assert httpx.post(server.url + "/trace", content=b"x" * 1_000_001).status_code == 413
    assert httpx.get(server.url + "/health").json()["status"] == "ok"


def test_the_client_raises_the_servers_sentence(remote):
    with pytest.raises(NotFoundError, match="features 0 to 63"):
        remote.trace(TraceRequest(prompt="x", feature_ids=[64]))
    with pytest.raises(UserError, match="no index is loaded"):
        remote.steer(SteerRequest(prompt="x", features=[SteerFeature(feature_id=1)]))
    with pytest.raises(UserError, match="Could not reach"):
        RemoteInference("http://127.0.0.1:9").health()


def test_openapi_documents_the_endpoints_and_one_sentence_errors(server):
    spec = httpx.get(server.url + "/openapi.json").json()
    assert {"/health", "/tokenize", "/trace", "/steer"} <= set(spec["paths"])
    steer = spec["paths"]["/steer"]["post"]
    assert steer["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")
    assert spec["components"]["schemas"]["SteerRequest"]["properties"]["mode"]["enum"] == ["add", "clamp", "ablate"]


def test_token_is_required_when_configured(engine):
    with BackgroundServer(create_app(engine, token=TOKEN)) as secured:
        assert httpx.get(secured.url + "/health").status_code == 401
        wrong = httpx.get(secured.url + "/health", headers={"Authorization": "Bearer not-the-token"})
        assert wrong.status_code == 401 and "bearer token" in wrong.json()["detail"]
        assert httpx.post(secured.url + "/trace", json={"prompt": "x"}).status_code == 401
        right = httpx.get(secured.url + "/health", headers={"Authorization": f"Bearer {TOKEN}"})
        assert right.status_code == 200
        with pytest.raises(UserError, match="bearer token"):
            RemoteInference(secured.url, token="wrong").trace(TraceRequest(prompt="x"))
        assert RemoteInference(secured.url, token=TOKEN).trace(TraceRequest(prompt="x")) == engine.trace(
            TraceRequest(prompt="x"))


def test_get_inference_returns_the_client_when_backend_url_is_set(engine, tiny_dirs, monkeypatch):
    with BackgroundServer(create_app(engine, token=TOKEN)) as secured:
        monkeypatch.setenv("BACKEND_URL", secured.url)
        monkeypatch.setenv("BACKEND_TOKEN", TOKEN)
        inference = get_inference(tiny_dirs.spec)
        assert isinstance(inference, RemoteInference) and isinstance(inference, Inference)
        request = TraceRequest(prompt="import os")
        assert inference.trace(request) == engine.trace(request)
    monkeypatch.delenv("BACKEND_URL")
    local = get_inference(tiny_dirs.spec)
    assert isinstance(local, LocalInference) and isinstance(local, Inference)


def test_busy_and_timeout_answers(tiny_dirs):
    source = load_source(tiny_dirs.spec)
    waiting = LocalInference(source, limits=InferenceLimits(timeout_s=0.2))
    hurried = LocalInference(source, limits=InferenceLimits(timeout_s=1e-6))
    with BackgroundServer(create_app(waiting)) as busy_server, BackgroundServer(create_app(hurried)) as slow_server:
        held = threading.Event()
        release = threading.Event()

        def hold_the_model() -> None:
            with source.lock:
                held.set()
                release.wait(10)

        holder = threading.Thread(target=hold_the_model)
        holder.start()
        held.wait(10)
        try:
            with pytest.raises(InferenceBusyError, match="busy"):
                RemoteInference(busy_server.url).trace(TraceRequest(prompt="x"))
        finally:
            release.set()
            holder.join()
        steer = SteerRequest(prompt="x", features=[SteerFeature(feature_id=1, strength=1.0)], max_new_tokens=8)
        response = httpx.post(slow_server.url + "/steer", json=steer.model_dump())
        assert response.status_code == 504 and "time limit" in response.json()["detail"]
        with pytest.raises(InferenceTimeoutError):
            RemoteInference(slow_server.url).steer(steer)
        assert RemoteInference(busy_server.url).trace(TraceRequest(prompt="x")).tokens  # still serving


def test_refuses_to_listen_beyond_loopback_without_a_real_token(monkeypatch):
    check_bind_security("127.0.0.1", None)
    check_bind_security("localhost", None)
    check_bind_security("::1", None)
    with pytest.raises(UserError, match="Refusing to listen on 0.0.0.0 without a token"):
        check_bind_security("0.0.0.0", None)
    with pytest.raises(UserError, match="at least 16"):
        check_bind_security("192.168.1.4", "short")
    check_bind_security("0.0.0.0", TOKEN)
    monkeypatch.delenv("BACKEND_TOKEN", raising=False)
    with pytest.raises(UserError, match="without a token"):  # before loading anything
        serve(ServeConfig(source=SourceSpec.parse("demo"), host="0.0.0.0", port=8600))


def test_cli_serve_runs_the_service(tiny_dirs):
    """`python -m backend serve` end to end: start, answer /health and /trace, stop."""
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    env.pop("BACKEND_TOKEN", None)
    process = subprocess.Popen([sys.executable, "-m", "backend", "serve", "--source", tiny_dirs.spec,
                                "--port", str(port)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(url + "/health", process, timeout=180)  # a cold start imports torch, loads the model
        health = httpx.get(url + "/health").json()
        assert health["source"] == tiny_dirs.spec and health["d_sae"] == 64
        trace = httpx.post(url + "/trace", json={"prompt": "def add(a, b):"}).json()
        assert json.dumps(trace) and trace["tokens"][0]["special"]
    finally:
        process.terminate()
        process.wait(timeout=30)
