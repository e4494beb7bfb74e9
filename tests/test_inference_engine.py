"""The in-process engine against brute force on the tiny real source: tokens, trace rankings,
direct effects, index-backed defaults, and refusals."""

from __future__ import annotations

import pytest
import torch

from backend.errors import NotFoundError, UserError
from backend.inference import get_inference
from backend.inference.display import TokenRenderer
from backend.inference.engine import LocalInference
from backend.inference.schemas import (
    InferenceLimits,
    SteerFeature,
    SteerRequest,
    TokenizeRequest,
    TraceRequest,
)

PROMPT = "def add(a, b):\n    return a + b\n"


@pytest.fixture(scope="module")
def small_index(tiny_dirs, tiny_dataset, tmp_path_factory):
    """A real index of the tiny source, built without UMAP so this file stays fast on its own."""
    from backend.index.build import IndexConfig, build_index
    from backend.sources import SourceSpec

    config = IndexConfig(tokens=2_000, batch_size=8, umap=False, progress=False, dataset=str(tiny_dataset))
    return build_index(SourceSpec.parse(tiny_dirs.spec), config, tmp_path_factory.mktemp("index") / "small.duckdb")


def brute_force_acts(source, prompt: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(tokens [T], feature acts [T, d_sae], logits [T, vocab], final norm scale [T]) from run_with_cache."""
    with torch.no_grad():
        tokens = source.model.to_tokens(prompt)
        logits, cache = source.model.run_with_cache(tokens)
        acts = source.sae.encode(cache[source.hook_name][0])
        return tokens[0], acts, logits[0], cache["ln_final.hook_scale"][0, :, 0]


def test_tokenize_shows_multibyte_characters_whole(engine, source):
    prompt = "café 你好 🙂 x"
    response = engine.tokenize(TokenizeRequest(prompt=prompt))
    assert [t.id for t in response.tokens] == source.model.to_tokens(prompt)[0].tolist()
    assert response.count == len(response.tokens)
    assert response.tokens[0].special and response.tokens[0].text == "<|endoftext|>"
    assert "".join(t.text for t in response.tokens if not t.special) == prompt
    assert not any("\ufffd" in t.text for t in response.tokens)
    partial = [t for t in response.tokens if t.partial]
    assert partial and all(t.text == "" for t in partial)  # the emoji and CJK are split over several tokens
    alone = TokenRenderer(source.tokenizer, source.special_token_ids()).render_one(partial[0].id)
    assert alone.partial and alone.text.startswith("<0x")  # a lone predicted byte reads as its value


def test_trace_per_token_and_prompt_rankings_equal_brute_force(engine, source):
    response = engine.trace(TraceRequest(prompt=PROMPT, top_k=4, top_n=6, feature_ids=[0, 5, 63]))
    tokens, acts, _, _ = brute_force_acts(source, PROMPT)
    assert [t.id for t in response.tokens] == tokens.tolist()

    for position, row in enumerate(response.token_features):
        expected = sorted(((float(v), f) for f, v in enumerate(acts[position].tolist()) if v > 0), reverse=True)[:4]
        assert [f.feature_id for f in row.features] == [f for _, f in expected]
        assert [f.value for f in row.features] == pytest.approx([v for v, _ in expected], abs=1e-5)

    ranked = [p for p in range(len(tokens)) if p != 0]  # ignore_bos drops the BOS at position 0
    maxima = {f: max(acts[p, f].item() for p in ranked) for f in range(source.d_sae)}
    sums = {f: sum(acts[p, f].item() for p in ranked) for f in range(source.d_sae)}
    by_max = sorted((f for f in maxima if maxima[f] > 0), key=lambda f: -maxima[f])[:6]
    by_sum = sorted((f for f in maxima if maxima[f] > 0), key=lambda f: -sums[f])[:6]
    assert [p.feature_id for p in response.top_by_max] == by_max
    assert [p.feature_id for p in response.top_by_sum] == by_sum
    for entry in response.top_by_max:
        assert entry.max_value == pytest.approx(maxima[entry.feature_id], abs=1e-5)
        assert entry.sum_value == pytest.approx(sums[entry.feature_id], abs=1e-4)
        assert acts[entry.max_position, entry.feature_id].item() == pytest.approx(entry.max_value, abs=1e-5)
        assert entry.max_position != 0
        assert entry.active_tokens == sum(acts[p, entry.feature_id].item() > 0 for p in ranked)

    assert [t.feature_id for t in response.feature_traces] == [0, 5, 63]
    for trace in response.feature_traces:
        assert trace.values == pytest.approx(acts[:, trace.feature_id].tolist(), abs=1e-5)


def test_trace_top_feature_adds_the_top_features_values_in_the_same_call(engine, source):
    _, acts, _, _ = brute_force_acts(source, PROMPT)
    alone = engine.trace(TraceRequest(prompt=PROMPT, trace_top_feature=True))
    top = alone.top_by_max[0].feature_id
    assert [t.feature_id for t in alone.feature_traces] == [top]
    assert alone.feature_traces[0].values == pytest.approx(acts[:, top].tolist(), abs=1e-5)
    # after the requested ids, and never twice
    other = next(f for f in range(source.d_sae) if f != top)
    both = engine.trace(TraceRequest(prompt=PROMPT, feature_ids=[other], trace_top_feature=True))
    assert [t.feature_id for t in both.feature_traces] == [other, top]
    again = engine.trace(TraceRequest(prompt=PROMPT, feature_ids=[top], trace_top_feature=True))
    assert [t.feature_id for t in again.feature_traces] == [top]


def test_a_prompt_of_special_tokens_only_has_no_ranked_features(engine):
    response = engine.trace(TraceRequest(prompt="<|endoftext|>"))
    assert [t.special for t in response.tokens] == [True, True]
    assert response.top_by_max == [] and response.top_by_sum == []
    assert response.token_features[0].features  # per-token lists still show every position
    steered = engine.steer(SteerRequest(prompt="<|endoftext|>", features=[SteerFeature(feature_id=4, strength=3.0)],
                                        max_new_tokens=3, stop_at_eos=False))
    assert len(steered.steered.tokens) == 3


def test_trace_with_bos_ranks_position_zero(engine, source):
    with_bos = engine.trace(TraceRequest(prompt=PROMPT, top_n=200, ignore_bos=False))
    _, acts, _, _ = brute_force_acts(source, PROMPT)
    assert [p.feature_id for p in with_bos.top_by_max] == sorted(
        (f for f in range(source.d_sae) if acts[:, f].max() > 0), key=lambda f: -acts[:, f].max().item())
    assert any(p.max_position == 0 for p in with_bos.top_by_max)


@pytest.mark.parametrize("position", [None, 3, -2])
def test_direct_effects_equal_a_patched_forward_pass(engine, source, position):
    """Adding a_f·W_dec[f] to the final residual with the final norm's scale frozen moves the
    predicted token's logit by exactly the reported direct effect."""
    response = engine.trace(TraceRequest(prompt=PROMPT, position=position, top_n=200))
    tokens, acts, logits, _ = brute_force_acts(source, PROMPT)
    pos = len(tokens) - 1 if position is None else position % len(tokens)
    prediction = response.prediction
    assert prediction.position == pos
    assert prediction.token.id == int(logits[pos].argmax())
    assert prediction.probability == pytest.approx(torch.softmax(logits[pos], -1).max().item(), abs=1e-5)
    magnitudes = [abs(e.effect) for e in prediction.direct_effects]
    assert magnitudes == sorted(magnitudes, reverse=True)
    assert {e.feature_id for e in prediction.direct_effects} == set(torch.nonzero(acts[pos] > 0).flatten().tolist())

    model = source.model
    last_resid = f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"
    with torch.no_grad():
        _, clean = model.run_with_cache(tokens[None], names_filter=["ln_final.hook_scale"])
        clean_scale = clean["ln_final.hook_scale"]
        freeze_scale = ("ln_final.hook_scale", lambda scale, hook: clean_scale)
        base = model.run_with_hooks(tokens[None], fwd_hooks=[freeze_scale])[0, pos, prediction.token.id]
        for effect in prediction.direct_effects[:5]:
            vector = acts[pos, effect.feature_id] * source.sae.W_dec[effect.feature_id]

            def add_vector(resid, hook, vector=vector):
                resid[:, pos] += vector
                return resid

            patched = model.run_with_hooks(tokens[None], fwd_hooks=[(last_resid, add_vector), freeze_scale])
            assert effect.activation == pytest.approx(acts[pos, effect.feature_id].item(), abs=1e-5)
            assert effect.effect == pytest.approx((patched[0, pos, prediction.token.id] - base).item(), abs=1e-4)


def test_refusals_are_user_errors_with_one_sentence(engine, source):
    cases = [
        (lambda: engine.trace(TraceRequest(prompt=PROMPT, feature_ids=[source.d_sae])), NotFoundError,
         f"features 0 to {source.d_sae - 1}"),
        (lambda: engine.trace(TraceRequest(prompt="x " * 200)), UserError, "at most 32 fit"),
        (lambda: engine.trace(TraceRequest(prompt="ab", position=7)), UserError, "outside the prompt"),
        (lambda: engine.steer(SteerRequest(prompt="ab", features=[SteerFeature(feature_id=1)])), UserError,
         "no index is loaded"),
        (lambda: engine.steer(SteerRequest(prompt="ab", features=[SteerFeature(feature_id=1, strength=1.0)],
                                           max_new_tokens=200)), UserError, "at most 128"),
        (lambda: engine.steer(SteerRequest(prompt="ab " * 12, features=[SteerFeature(feature_id=1, strength=1.0)],
                                           max_new_tokens=20)), UserError, "beside 20 new tokens"),
    ]
    for call, error_type, fragment in cases:
        with pytest.raises(error_type) as caught:
            call()
        message = str(caught.value)
        assert fragment in message and message.endswith(".") and "\n" not in message


def test_strength_cap_applies_after_the_multiplier(source):
    engine = LocalInference(source, limits=InferenceLimits(max_abs_strength=10))
    request = SteerRequest(prompt="ab", features=[SteerFeature(feature_id=1, strength=4.0)], strength_multiplier=3,
                           max_new_tokens=2)
    with pytest.raises(UserError, match="beyond the ±10"):
        engine.steer(request)


def test_health_describes_the_source(engine, source):
    health = engine.health()
    assert (health.d_sae, health.hook, health.context_size, health.device) == (64, source.hook_name, 32, "cpu")
    assert health.feature_stats is False and health.limits == InferenceLimits()
    assert health.versions.torch == torch.__version__


def test_index_gives_default_strengths_and_density_filter(tiny_dirs, small_index, monkeypatch):
    monkeypatch.delenv("BACKEND_URL", raising=False)
    engine = get_inference(tiny_dirs.spec, index_path=str(small_index))
    assert engine is get_inference(tiny_dirs.spec, index_path=str(small_index))  # one per process per source
    assert engine.health().feature_stats is True
    stats = engine.stats

    unfiltered = engine.trace(TraceRequest(prompt=PROMPT, top_n=200))
    densities = stats.density([p.feature_id for p in unfiltered.top_by_max])
    threshold = sorted(densities.values())[len(densities) // 2]
    filtered = engine.trace(TraceRequest(prompt=PROMPT, top_n=200, density_threshold=threshold))
    dense = {f for f, d in densities.items() if d > threshold}
    assert filtered.density_filter_applied and filtered.hidden_by_density == len(dense) > 0
    assert {p.feature_id for p in filtered.top_by_max} == set(densities) - dense
    assert all(p.density == pytest.approx(densities[p.feature_id]) for p in filtered.top_by_max)

    feature = unfiltered.top_by_max[0].feature_id
    steered = engine.steer(SteerRequest(prompt="def", features=[SteerFeature(feature_id=feature)],
                                        strength_multiplier=2, max_new_tokens=3, include_default=False))
    summary = steered.summary[0]
    assert summary.strength_from_index
    calibrated = stats.calibrated_strength([feature])
    expected = calibrated[feature] if calibrated else stats.max_activation([feature])[feature]
    assert summary.strength_basis == ("calibrated" if calibrated else "max_activation")
    assert summary.strength == pytest.approx(2 * expected)
    clamped = engine.steer(SteerRequest(prompt="def", features=[SteerFeature(feature_id=feature)], mode="clamp",
                                        max_new_tokens=1, include_default=False)).summary[0]
    assert clamped.strength_basis == "max_activation"  # clamping sets the activation: its natural scale
    assert clamped.strength == pytest.approx(stats.max_activation([feature])[feature])

    no_index = get_inference(tiny_dirs.spec, index_path=str(small_index) + ".missing")
    assert no_index.health().feature_stats is False  # the UI falls back to explicit strengths
