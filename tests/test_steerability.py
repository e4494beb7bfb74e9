"""Steerability scores on the tiny source, each checked against a brute-force computation: the shared-prefix
output score against a full forward pass per feature, the batched calibration against the engine's own
single steer calls (greedy, so both are deterministic), the input score against a hand count."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from backend.index.geometry import logit_effects
from backend.index.steerability import (
    SteerabilityConfig,
    calibrate,
    compute_steerability,
    input_scores,
    neutral_prompts,
    output_scores,
)
from backend.inference.batch_generation import RowSampling
from backend.inference.schemas import SteerFeature, SteerRequest
from backend.readout import Readout
from tests.support.tiny_source import TINY_TEXT

GREEDY = SteerabilityConfig(ladder=(1.0, 4.0, 16.0), sampling=RowSampling(new_tokens=5, temperature=0.0),
                            batch_rows=3, min_examples=2)


@pytest.fixture(scope="module")
def prompts(source) -> list[list[int]]:
    found = neutral_prompts([t * 3 for t in TINY_TEXT], source.tokenizer, source.prepend_bos, n=4, length=6)
    assert len(found) == 4 and all(len(p) == 7 for p in found)  # BOS + 6 tokens
    return found


def test_output_score_with_a_shared_prefix_equals_a_full_forward_per_feature(source, prompts):
    ids = torch.tensor([0, 5, 17, 30, 41])
    lens = logit_effects(Readout(source.model, source.hook_name), source.sae.W_dec[ids].detach(),
                         GREEDY.logit_lens_k).top_ids
    fast = output_scores(source, ids, lens, prompts, GREEDY)
    for row, feature in enumerate(ids.tolist()):
        expected = 0.0
        for prompt in prompts:
            tokens = torch.tensor([prompt])
            _, cache = source.model.run_with_cache(tokens, names_filter=source.hook_name)
            strength = GREEDY.amp * float(source.sae.encode(cache[source.hook_name][:, -1]).max())

            def add_last(act, hook=None, vector=strength * source.sae.W_dec[feature]):
                act = act.clone()
                act[:, -1] += vector
                return act

            with torch.no_grad():
                probs = source.model.run_with_hooks(tokens, fwd_hooks=[(source.hook_name, add_last)])[0, -1].softmax(-1)
            order = probs.argsort(descending=True).tolist()
            ranks = [order.index(t) for t in lens[row].tolist()]
            expected += (1 - min(ranks) / len(probs)) * float(probs[lens[row]].max()) / len(prompts)
        assert fast[row] == pytest.approx(expected, rel=1e-4, abs=1e-6)


def test_input_score_counts_top_examples_peaking_on_a_logit_lens_token():
    lens = torch.tensor([[3, 4], [7, 8]])
    peaks = torch.tensor([[3, 9, 4, -1], [1, 2, -1, -1]])
    np.testing.assert_allclose(input_scores(lens, peaks, min_examples=2), [2 / 3, 0.0])
    assert math.isnan(input_scores(lens, peaks, min_examples=3)[1])  # two examples are too few to score


def _engine_evoked(engine, source, feature: int, max_act: float, rung: float, prompt: list[int], cfg) -> bool:
    """One steer call through the engine: is this prompt evoked, by the stage's rule?"""
    result = engine.steer(SteerRequest(
        prompt=source.tokenizer.decode(prompt[1:]),
        features=[SteerFeature(feature_id=feature, strength=rung * max_act)],
        max_new_tokens=5, temperature=0, stop_at_eos=False))
    assert [t.id for t in result.prompt_tokens] == prompt  # the decoded prompt tokenizes back
    steered, default = result.summary[0].mean_steered, result.summary[0].mean_default
    return steered > 0 and steered >= cfg.evoke_ratio * default and steered >= cfg.min_evoked * max_act


def test_calibration_needs_three_of_four_prompts_each_evoked_like_the_engine(source, engine, prompts):
    # a lower bar than the index's (the tiny random LM's text rarely evokes anything), so that the ladder
    # stops at different rungs for different features and some features at none
    cfg = dataclasses.replace(GREEDY, evoke_ratio=1.2, min_evoked=0.05)
    ids = torch.arange(16)
    max_acts = torch.linspace(0.3, 3.0, 16)  # different max activations spread the features over the rungs
    multiplier, _ = calibrate(source, ids, max_acts, prompts, cfg)
    expected, counts = [], []
    for feature, max_act in zip(ids.tolist(), max_acts.tolist(), strict=True):  # brute force: all rungs, prompts
        count = {rung: sum(_engine_evoked(engine, source, feature, max_act, rung, p, cfg) for p in prompts)
                 for rung in cfg.ladder}
        counts.append(count)
        passing = [rung for rung in cfg.ladder if count[rung] >= cfg.min_prompts_evoked]
        # not evoked at the top rung: screened out, even where a lower rung happens to pass
        expected.append(min(passing) if count[cfg.ladder[-1]] >= cfg.min_prompts_evoked else math.nan)
    print(counts, expected)
    np.testing.assert_allclose(multiplier, expected, rtol=1e-6)  # NaN where no rung evoked it, on both sides
    assert np.isnan(expected).any() and len(set(np.array(expected)[~np.isnan(expected)])) >= 2


def test_calibration_refuses_fewer_prompts_than_it_needs(source, prompts):
    with pytest.raises(ValueError, match="at least 3 prompts"):
        calibrate(source, torch.arange(2), torch.ones(2), prompts[:2], GREEDY)


def test_compute_steerability_returns_one_typed_entry_per_feature(source, prompts):
    ids = torch.tensor([1, 4, 8])
    result = compute_steerability(source, ids, torch.tensor([1.0, 2.0, 3.0]), prompts,
                                  torch.tensor([[5, 6, -1], [7, -1, -1], [1, 2, 3]]), GREEDY)
    table = result.to_arrow()
    assert table.column("feature_id").to_pylist() == [1, 4, 8]
    assert all(0 <= s <= 1 for s in table.column("output_score").to_pylist())
    strengths = table.column("calibrated_strength").to_pylist()
    multipliers = table.column("calibrated_multiplier").to_pylist()
    for s, m, a in zip(strengths, multipliers, [1.0, 2.0, 3.0], strict=True):
        assert (s is None and m is None) or s == pytest.approx(m * a)
