"""Does steering work? For features chosen from the index, steer with `add` at the default
strength (the feature's max activation) and measure, in one run:

- the feature's mean activation on the generated tokens, steered vs default (the engine
  records it while generating; target >= 3x), both as the SAE reads the edited residual (what
  the rest of the model sees) and before the edit (what the steered text itself evokes);
- the probability mass the next-token distribution puts on the feature's top-10 logit
  tokens at the end of the prompt, steered vs default.

    python benchmarks/bench_steering_effect.py [--index cache/demo.duckdb] [--features 10] [--multiplier 1]
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.inference import get_inference  # noqa: E402
from backend.inference.schemas import SteerFeature, SteerRequest  # noqa: E402
from backend.inference.steering import SaeHook, SteeringPlan  # noqa: E402
from backend.payloads import FeatureQuery  # noqa: E402
from backend.sources import load_source  # noqa: E402
from backend.store import IndexStore  # noqa: E402

PROMPTS = ["import os\n\n", "def main():\n    ", "class Config:\n    \"\"\""]


@torch.no_grad()
def next_token_probs(source, tokens: torch.Tensor, feature_id: int | None = None,
                     strength: float = 0.0) -> torch.Tensor:
    """The next-token distribution after `tokens`, plain or with `add` of one feature at every position, through
    the engine's own steering hook (special tokens such as BOS are left alone, as in a steer call)."""
    if feature_id is None:
        return source.model(tokens)[0, -1].softmax(-1)
    plan = SteeringPlan([feature_id], [strength], "add", "all", tokens.shape[1])
    hook = SaeHook(source.sae, [feature_id], plan, torch.tensor(source.special_token_ids(), device=tokens.device))
    hook.prepare(tokens, 0)
    return source.model.run_with_hooks(tokens, fwd_hooks=[(source.hook_name, hook)])[0, -1].softmax(-1)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--index", default="cache/demo.duckdb")
    p.add_argument("--features", type=int, default=10)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--multiplier", type=float, default=1.0, help="strength = multiplier x the feature's max activation")
    args = p.parse_args()
    store = IndexStore.open(args.index)
    source_spec = store.meta["source"]
    inference = get_inference(source_spec, index_path=args.index)
    source = load_source(source_spec)
    # features that fire on 0.01%-1% of tokens: specific enough to have a meaning of their own
    rows = store.list_features(FeatureQuery(min_density=1e-4, max_density=1e-2, limit=5000)).rows
    chosen = sorted(random.Random(args.seed).sample(rows, min(args.features, len(rows))), key=lambda r: r.feature_id)
    print(f"{'feature':>7}  {'label':<24} {'strength':>8}  {'act default':>11} {'after edit':>10} {'ratio':>6}  "
          f"{'text evokes':>11} {'ratio':>6}  {'P(top logits) default':>21} {'steered':>8}")
    prompt_tokens = {prompt: source.model.to_tokens(prompt) for prompt in PROMPTS}
    default_probs = {prompt: next_token_probs(source, tokens) for prompt, tokens in prompt_tokens.items()}
    ratios, evoked_ratios, shifts = [], [], []
    for row in chosen:
        page = store.feature_page(row.feature_id)
        top_ids = [e.token_id for e in page.logit_pos]
        mean_d = mean_s = mean_edit = mass_d = mass_s = 0.0
        strength = 0.0
        for prompt in PROMPTS:
            res = inference.steer(SteerRequest(prompt=prompt, features=[SteerFeature(feature_id=row.feature_id)],
                                               mode="add", max_new_tokens=args.new_tokens, seed=16,
                                               strength_multiplier=args.multiplier,
                                               stop_at_eos=False))
            s = res.summary[0]
            strength = s.strength
            mean_d += (s.mean_default or 0.0) / len(PROMPTS)
            mean_s += s.mean_steered / len(PROMPTS)
            mean_edit += s.mean_steered_after_edit / len(PROMPTS)
            steered_probs = next_token_probs(source, prompt_tokens[prompt], row.feature_id, strength)
            mass_d += default_probs[prompt][top_ids].sum().item() / len(PROMPTS)
            mass_s += steered_probs[top_ids].sum().item() / len(PROMPTS)
        ratio, evoked_ratio = _ratio(mean_edit, mean_d), _ratio(mean_s, mean_d)
        ratios.append(ratio)
        evoked_ratios.append(evoked_ratio)
        shifts.append(mass_s > mass_d)
        print(f"{row.feature_id:>7}  {row.label[:24]:<24} {strength:>8.2f}  {mean_d:>11.3f} {mean_edit:>10.3f} "
              f"{ratio:>6.1f}  {mean_s:>11.3f} {evoked_ratio:>6.1f}  {mass_d:>21.4f} {mass_s:>8.4f}")
    print(f"features with >= 3x activation on generated tokens: {sum(r >= 3 for r in ratios)}/{len(ratios)} as the "
          f"model reads it (after the edit), {sum(r >= 3 for r in evoked_ratios)}/{len(evoked_ratios)} evoked by the "
          f"steered text alone; next-token mass moved toward top logit tokens: {sum(shifts)}/{len(shifts)}")


def _ratio(steered: float, default: float) -> float:
    return steered / default if default > 0 else (float("inf") if steered > 0 else 0.0)


if __name__ == "__main__":
    main()
