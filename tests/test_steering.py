"""Steering on the tiny real source: each mode's edit checked numerically at the hook, KV-cached
generation against a brute-force re-forward, recorded activations against a fresh encoding,
determinism, and hooks that never outlive a call."""

from __future__ import annotations

import pytest
import torch

from backend.inference.deadline import Deadline
from backend.inference.engine import LocalInference
from backend.inference.errors import InferenceTimeoutError
from backend.inference.generation import SamplingSettings, choose_next_token, generate
from backend.inference.schemas import InferenceLimits, SteerFeature, SteerMode, SteerPositions, SteerRequest
from backend.inference.steering import SaeHook, SteeringPlan

PROMPT = "for i in range(10):\n    print(i)"


@pytest.fixture(scope="module")
def special_ids(source):
    return torch.tensor(source.special_token_ids())


def hooks_left(model) -> int:
    return sum(len(point.fwd_hooks) for point in model.hook_dict.values())


def edited_at_hook(source, tokens: torch.Tensor, hook: SaeHook) -> tuple[torch.Tensor, torch.Tensor]:
    """(clean, edited) activation at the SAE hook for one forward pass of `tokens` [1, T]."""
    seen: list[torch.Tensor] = []
    observe = (source.hook_name, lambda act, hook: seen.append(act.clone()))
    with torch.no_grad():
        source.model.run_with_hooks(tokens, fwd_hooks=[observe])
        hook.prepare(tokens, 0)
        source.model.run_with_hooks(tokens, fwd_hooks=[(source.hook_name, hook), observe])
    return seen[0][0], seen[1][0]


def active_feature(source, tokens: torch.Tensor) -> int:
    """A feature that fires on several non-BOS tokens of the prompt."""
    with torch.no_grad():
        _, cache = source.model.run_with_cache(tokens)
        acts = source.sae.encode(cache[source.hook_name][0])[1:]
    return int((acts > 0).sum(0).argmax())


def test_add_adds_strength_times_decoder_rows_except_at_bos(source, special_ids):
    tokens = source.model.to_tokens(PROMPT)
    plan = SteeringPlan([3, 10], [2.5, -1.5], "add", "all", tokens.shape[1])
    clean, edited = edited_at_hook(source, tokens, SaeHook(source.sae, [3, 10], plan, special_ids))
    expected = 2.5 * source.sae.W_dec[3] - 1.5 * source.sae.W_dec[10]
    torch.testing.assert_close(edited[1:] - clean[1:], expected.expand_as(clean[1:]), atol=1e-5, rtol=0)
    assert torch.equal(edited[0], clean[0])  # BOS: the SAE never saw it in training


def test_generated_positions_start_at_the_last_prompt_token(source, special_ids):
    tokens = source.model.to_tokens(PROMPT)
    length = tokens.shape[1]
    plan = SteeringPlan([3], [4.0], "add", "generated", length)
    clean, edited = edited_at_hook(source, tokens, SaeHook(source.sae, [3], plan, special_ids))
    assert torch.equal(edited[:length - 1], clean[:length - 1])
    torch.testing.assert_close(edited[-1] - clean[-1], 4.0 * source.sae.W_dec[3], atol=1e-5, rtol=0)


def test_clamp_sets_the_sae_encoding_to_the_strength(source, special_ids):
    tokens = source.model.to_tokens(PROMPT)
    feature = active_feature(source, tokens)
    plan = SteeringPlan([feature], [6.0], "clamp", "all", tokens.shape[1])
    clean, edited = edited_at_hook(source, tokens, SaeHook(source.sae, [feature], plan, special_ids))
    with torch.no_grad():
        before = source.sae.encode(clean)[:, feature]
        after = source.sae.encode(edited)[:, feature]
    expected_edit = (6.0 - before[1:, None]) * source.sae.W_dec[feature]
    torch.testing.assert_close(edited[1:] - clean[1:], expected_edit, atol=1e-5, rtol=0)
    was_active = torch.nonzero(before[1:] > 0).flatten() + 1
    assert len(was_active) >= 2
    torch.testing.assert_close(after[was_active], torch.full_like(after[was_active], 6.0), atol=1e-4, rtol=0)


def test_ablate_sets_the_sae_encoding_to_zero(source, special_ids):
    tokens = source.model.to_tokens(PROMPT)
    feature = active_feature(source, tokens)
    plan = SteeringPlan([feature], [0.0], "ablate", "all", tokens.shape[1])
    clean, edited = edited_at_hook(source, tokens, SaeHook(source.sae, [feature], plan, special_ids))
    with torch.no_grad():
        assert (source.sae.encode(clean)[1:, feature] > 0).any()
        assert torch.all(source.sae.encode(edited)[1:, feature].abs() < 1e-5)


def brute_force_generation(source, prompt: str, feature_ids: list[int], strengths: list[float], mode: str,
                           positions: str, new_tokens: int) -> tuple[list[int], list[float]]:
    """Greedy decoding by re-running the whole sequence each step, editing position by position."""
    model, sae = source.model, source.sae
    tokens = model.to_tokens(prompt)[0].tolist()
    first = 0 if positions == "all" else len(tokens) - 1
    special = set(source.special_token_ids())

    def edit(resid, hook):
        acts = sae.encode(resid[0])
        out = resid.clone()
        for p in range(resid.shape[1]):
            if p < first or tokens[p] in special:
                continue
            for f, s in zip(feature_ids, strengths, strict=True):
                out[0, p] += (s if mode == "add" else s - acts[p, f]) * sae.W_dec[f]
        return out

    chosen, logprobs = [], []
    with torch.no_grad():
        for _ in range(new_tokens):
            hooks = [(source.hook_name, edit)] if feature_ids else []
            logits = model.run_with_hooks(torch.tensor([tokens]), fwd_hooks=hooks)[0, -1]
            token = int(logits.argmax())
            chosen.append(token)
            logprobs.append(torch.log_softmax(logits, -1)[token].item())
            tokens.append(token)
    return chosen, logprobs


@pytest.mark.parametrize("mode, positions, strength, prompt", [
    ("add", "all", 8.0, PROMPT),
    ("clamp", "generated", 7.0, PROMPT),
    ("ablate", "all", None, PROMPT),
    # ends with the pad id: TransformerLens would mask it as padding unless we pass our own mask
    ("add", "generated", 5.0, "x = 1<|endoftext|>"),
])
def test_cached_generation_equals_brute_force(engine, source, mode: SteerMode, positions: SteerPositions,
                                              strength: float | None, prompt: str):
    feature = active_feature(source, source.model.to_tokens(PROMPT))
    request = SteerRequest(prompt=prompt, features=[SteerFeature(feature_id=feature, strength=strength)], mode=mode,
                           positions=positions, max_new_tokens=8, temperature=0, freq_penalty=0, stop_at_eos=False)
    response = engine.steer(request)
    for run, ids in ((response.default, []), (response.steered, [feature])):
        expected_tokens, expected_logprobs = brute_force_generation(
            source, prompt, ids, [strength or 0.0], mode, positions, 8)
        assert [t.token.id for t in run.tokens] == expected_tokens
        assert [t.logprob for t in run.tokens] == pytest.approx(expected_logprobs, abs=1e-4)
        assert all(t.alternatives[0].logprob >= t.logprob - 1e-6 for t in run.tokens)
    assert response.steered.tokens != response.default.tokens  # the edit changed the text


def test_recorded_activations_before_and_after_the_edit(engine, source):
    features = [SteerFeature(feature_id=5, strength=9.0), SteerFeature(feature_id=12, strength=-3.0)]
    response = engine.steer(SteerRequest(prompt=PROMPT, features=features, max_new_tokens=10, seed=3))
    prompt_ids = [t.id for t in response.prompt_tokens]
    for index, run in enumerate((response.default, response.steered)):
        ids = prompt_ids + [t.token.id for t in run.tokens]
        with torch.no_grad():
            _, cache = source.model.run_with_cache(torch.tensor([ids]))
            fresh = source.sae.encode(cache[source.hook_name][0])[len(prompt_ids):, [5, 12]]
        recorded = torch.tensor([t.feature_activations for t in run.tokens])
        torch.testing.assert_close(recorded, fresh, atol=1e-4, rtol=0)
        # after the edit: the encoding of resid + 9·W_dec[5] - 3·W_dec[12] (the steered run adds at every
        # non-special position), the plain encoding in the default run
        steered_at = ~torch.isin(torch.tensor(ids), torch.tensor(source.special_token_ids())) & (index == 1)
        edit = steered_at[:, None] * (9.0 * source.sae.W_dec[5] - 3.0 * source.sae.W_dec[12])
        with torch.no_grad():
            edited = source.sae.encode(cache[source.hook_name][0] + edit)[len(prompt_ids):, [5, 12]]
        recorded_after = torch.tensor([t.feature_activations_after_edit for t in run.tokens])
        torch.testing.assert_close(recorded_after, edited, atol=1e-4, rtol=0)
        if index == 1:
            summary = response.summary[0]
            assert summary.mean_steered_after_edit == pytest.approx(recorded_after[:, 0].mean().item(), abs=1e-5)
            assert summary.mean_steered_after_edit > summary.mean_steered  # +9 along feature 5's own direction
        for column, summary in enumerate(response.summary):
            mean = summary.mean_default if index == 0 else summary.mean_steered
            fraction = summary.active_fraction_default if index == 0 else summary.active_fraction_steered
            assert mean == pytest.approx(recorded[:, column].mean().item(), abs=1e-5)
            assert fraction == pytest.approx((recorded[:, column] > 0).float().mean().item())
    assert [s.strength for s in response.summary] == [9.0, -3.0]


def test_same_seed_same_output_and_each_run_restarts_the_seed(engine):
    def request(seed: int, strength: float) -> SteerRequest:
        return SteerRequest(prompt=PROMPT, features=[SteerFeature(feature_id=7, strength=strength)], seed=seed,
                            temperature=1.0, top_p=0.9, max_new_tokens=10, stop_at_eos=False)

    first, again = engine.steer(request(11, 5.0)), engine.steer(request(11, 5.0))
    assert first == again
    assert engine.steer(request(12, 5.0)).steered.tokens != first.steered.tokens
    unsteered = engine.steer(request(11, 0.0))  # adding zero: the steered run must replay the default run
    assert unsteered.steered.tokens == unsteered.default.tokens
    assert unsteered.default == first.default


def test_hooks_are_removed_after_a_call_and_after_a_failing_call(source):
    request = SteerRequest(prompt=PROMPT, features=[SteerFeature(feature_id=2, strength=3.0)], max_new_tokens=4)
    LocalInference(source).steer(request)
    assert hooks_left(source.model) == 0
    hurried = LocalInference(source, limits=InferenceLimits(timeout_s=1e-6))
    with pytest.raises(InferenceTimeoutError, match="time limit"):
        hurried.steer(request)
    assert hooks_left(source.model) == 0
    assert source.lock.acquire(blocking=False)  # and the lock was released
    source.lock.release()


def test_generation_stops_at_a_stop_token(source, special_ids):
    tokens = source.model.to_tokens(PROMPT)
    with torch.no_grad():
        first_greedy = int(source.model(tokens)[0, -1].argmax())
        settings = SamplingSettings(max_new_tokens=5, temperature=0, top_p=1, freq_penalty=0, seed=0, top_logprobs=0,
                                    stop_token_ids=frozenset({first_greedy}))
        run = generate(source.model, source.hook_name, source.hook_layer, tokens,
                       SaeHook(source.sae, [1], None, special_ids), settings, Deadline(30))
    assert [c.token_id for c in run.choices] == [first_greedy] and run.stopped_at_eos
    assert run.feature_acts.shape == (1, 1)


def test_sampling_rules():
    generator = torch.Generator().manual_seed(0)
    logits = torch.tensor([3.0, 2.9, 0.0, -1.0])
    counts = torch.tensor([2.0, 0.0, 0.0, 0.0])

    def settings(**changes) -> SamplingSettings:
        base = dict(max_new_tokens=1, temperature=1.0, top_p=1.0, freq_penalty=0.0, seed=0, top_logprobs=0,
                    stop_token_ids=frozenset())
        return SamplingSettings(**{**base, **changes})

    assert choose_next_token(logits, counts, settings(temperature=0), generator) == 0
    assert choose_next_token(logits, counts, settings(temperature=0, freq_penalty=1.0), generator) == 1
    picks = {choose_next_token(logits, counts, settings(top_p=0.3), generator) for _ in range(50)}
    assert picks == {0}  # the top token alone already holds 30% of the mass
    picks = {choose_next_token(logits, counts, settings(top_p=0.99), generator) for _ in range(300)}
    assert picks >= {0, 1, 2}
