"""Raw vectors in /steer: a vector equal to a decoder row steers exactly like that feature, the projections
reported are those of the generated tokens' activations, and every bad vector gets one sentence."""

from __future__ import annotations

import httpx
import pytest
import torch
from pydantic import ValidationError

from backend.errors import UserError
from backend.inference.schemas import SteerFeature, SteerRequest, SteerVector, describe_validation_error
from backend.server import BackgroundServer, create_app

PROMPT = "def add(a, b):\n"


def test_a_decoder_row_as_a_raw_vector_steers_like_its_feature(engine, source):
    feature, strength = 7, 3.0
    by_feature = engine.steer(SteerRequest(prompt=PROMPT,
                                           features=[SteerFeature(feature_id=feature, strength=strength)],
                                           max_new_tokens=8, temperature=0, stop_at_eos=False))
    row = source.sae.W_dec[feature].detach().tolist()
    by_vector = engine.steer(SteerRequest(prompt=PROMPT, vectors=[SteerVector(vector=row, strength=strength)],
                                          max_new_tokens=8, temperature=0, stop_at_eos=False))
    assert [t.token.id for t in by_vector.steered.tokens] == [t.token.id for t in by_feature.steered.tokens]
    assert by_vector.steered.tokens[-1].logprob == pytest.approx(by_feature.steered.tokens[-1].logprob, abs=1e-4)
    assert by_vector.summary == []
    assert by_vector.vector_summary[0].norm == pytest.approx(float(torch.tensor(row).norm()))


def test_projections_are_those_of_the_generated_tokens_activations(engine, source):
    vector = torch.randn(source.sae.W_dec.shape[1], generator=torch.Generator().manual_seed(3))
    result = engine.steer(SteerRequest(prompt=PROMPT, vectors=[SteerVector(vector=vector.tolist(), strength=2.0,
                                                                           name="random")],
                                       max_new_tokens=6, temperature=0, stop_at_eos=False))
    summary = result.vector_summary[0]
    unit = vector / vector.norm()
    for generation, reported in ((result.default, summary.projection_default),
                                 (result.steered, summary.projection_steered)):
        ids = [t.id for t in result.prompt_tokens] + [t.token.id for t in generation.tokens]
        # the hook reads the residual before any edit; layers below the hook never see the edit, so a plain
        # forward pass of the generated text gives the same activations
        with torch.no_grad():
            _, cache = source.model.run_with_cache(torch.tensor([ids]), names_filter=source.hook_name)
        acts = cache[source.hook_name][0, len(result.prompt_tokens):]
        assert reported == pytest.approx(float((acts @ unit).mean()), abs=1e-4)
    assert summary.name == "random" and summary.strength == 2.0


def test_bad_vectors_get_one_sentence(engine, source):
    width = source.sae.W_dec.shape[1]
    with pytest.raises(UserError, match=f"Vector 1 has 3 values but the hook .* is {width} wide"):
        engine.steer(SteerRequest(prompt=PROMPT, vectors=[SteerVector(vector=[1.0, 2.0, 3.0])]))
    with pytest.raises(UserError, match="all zeros"):
        engine.steer(SteerRequest(prompt=PROMPT, vectors=[SteerVector(vector=[0.0] * width)]))
    for bad, expected in (({"vector": [1.0], "strength": float("inf")}, "finite number"),
                          ({"vector": [1.0, float("nan")]}, "not finite"),
                          ({"vector": []}, "at least 1 item")):
        with pytest.raises(ValidationError) as info:
            SteerRequest(prompt=PROMPT, vectors=[bad])
        message = describe_validation_error(info.value.errors())
        assert expected in message and message.count(". ") == 0 and message.endswith(".")
    with pytest.raises(ValidationError, match="at least one feature or vector"):
        SteerRequest(prompt=PROMPT)


def test_vectors_over_http(engine, source):
    width = source.sae.W_dec.shape[1]
    with BackgroundServer(create_app(engine)) as server:
        ok = httpx.post(server.url + "/steer", json={"prompt": PROMPT, "vectors": [{"vector": [0.1] * width,
                                                                                     "strength": 4}],
                                                     "max_new_tokens": 4}, timeout=60)
        assert ok.status_code == 200 and len(ok.json()["vector_summary"]) == 1
        wrong = httpx.post(server.url + "/steer", json={"prompt": PROMPT, "vectors": [{"vector": [0.1, 0.2]}]})
        assert wrong.status_code == 400 and "is 32 wide" in wrong.json()["detail"]
        infinite = httpx.post(server.url + "/steer", content='{"prompt": "x", "vectors": [{"vector": [1], '
                                                             '"strength": Infinity}]}',
                              headers={"content-type": "application/json"})
        assert infinite.status_code == 422 and "strength" in infinite.json()["detail"]
