"""Does steering work? For features chosen from the index, in two tables of one run (features picked at random,
and picked at random among those with a calibrated strength), steer with `add` at the feature's max activation
and at its calibrated strength (the index's steerability table) on held-out prompts (not the index's calibration
prompts) and measure:

- the feature's mean activation on the generated tokens, steered vs default (the engine
  records it while generating; target >= 3x), both as the SAE reads the edited residual (what
  the rest of the model sees) and before the edit (what the steered text itself evokes);
- the probability mass the next-token distribution puts on the feature's top-10 logit
  tokens at the end of the prompt, steered vs default.

Then, over `--rho-features` features, how well the index's output score ranks the measured effect
(Spearman rho).

    python benchmarks/bench_steering_effect.py [--index cache/demo.duckdb] [--features 10] [--seed 7]
"""

from __future__ import annotations

import argparse
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.index.datasets import dataset_texts  # noqa: E402
from backend.index.steerability import SteerabilityConfig, neutral_prompts  # noqa: E402
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


@dataclass(frozen=True)
class Effect:
    strength: float
    evoked_ratio: float  # mean activation before the edit (what the steered text evokes), steered / default
    read_ratio: float  # the same after the edit (what the rest of the model reads)
    mass_default: float  # next-token probability of the feature's top logit tokens at the prompt's end
    mass_steered: float


def measure(inference, source, row, top_ids: list[int], strength: float, prompts: list[str], new_tokens: int,
            prompt_tokens: dict, default_probs: dict) -> Effect:
    mean_d = mean_s = mean_edit = mass_d = mass_s = 0.0
    for prompt in prompts:
        res = inference.steer(SteerRequest(prompt=prompt, features=[SteerFeature(feature_id=row.feature_id,
                                                                                 strength=strength)],
                                           mode="add", max_new_tokens=new_tokens, seed=16, stop_at_eos=False))
        s = res.summary[0]
        mean_d += (s.mean_default or 0.0) / len(prompts)
        mean_s += s.mean_steered / len(prompts)
        mean_edit += s.mean_steered_after_edit / len(prompts)
        steered_probs = next_token_probs(source, prompt_tokens[prompt], row.feature_id, strength)
        mass_d += default_probs[prompt][top_ids].sum().item() / len(prompts)
        mass_s += steered_probs[top_ids].sum().item() / len(prompts)
    return Effect(strength, _ratio(mean_s, mean_d), _ratio(mean_edit, mean_d), mass_d, mass_s)


@dataclass(frozen=True)
class Bench:
    """What every table of one run shares."""

    inference: object
    source: object
    store: IndexStore
    multiplier: float
    new_tokens: int
    prompt_tokens: dict
    default_probs: dict

    def top_ids(self, feature_id: int) -> list[int]:
        return [e.token_id for e in self.store.feature_page(feature_id).logit_pos]


def feature_table(bench: Bench, title: str, chosen: list) -> None:
    print(f"\n{title}")
    print(f"{'feature':>7}  {'label':<20} {'out score':>9} | {'max act':>7} {'evokes':>6} {'reads':>6} "
          f"{'P(top) default':>14} {'steered':>8} | {'calibrated':>10} {'evokes':>6} {'reads':>6} {'steered':>8}")
    at_max, at_cal = [], []
    for row in chosen:
        top = bench.top_ids(row.feature_id)
        high = measure(bench.inference, bench.source, row, top, bench.multiplier * row.max_act, PROMPTS,
                       bench.new_tokens, bench.prompt_tokens, bench.default_probs)
        at_max.append(high)
        cal = measure(bench.inference, bench.source, row, top, row.calibrated_strength, PROMPTS,
                      bench.new_tokens, bench.prompt_tokens, bench.default_probs) if row.calibrated_strength else None
        at_cal.append(cal)
        cal_cols = (f"{cal.strength:>10.2f} {cal.evoked_ratio:>6.1f} {cal.read_ratio:>6.1f} {cal.mass_steered:>8.4f}"
                    if cal else f"{'none':>10} {'':>6} {'':>6} {'':>8}")
        print(f"{row.feature_id:>7}  {row.label[:20]:<20} {row.output_score or 0:>9.4f} | {high.strength:>7.2f} "
              f"{high.evoked_ratio:>6.1f} {high.read_ratio:>6.1f} {high.mass_default:>14.4f} {high.mass_steered:>8.4f} "
              f"| {cal_cols}")
    n = len(chosen)
    calibrated = [c for c in at_cal if c is not None]
    # a feature without a calibrated strength counts as not evoked at it (the ladder found none)
    print(f"evoked >= 3x (text before the edit): {sum(e.evoked_ratio >= 3 for e in at_max)}/{n} at max activation, "
          f"{sum(c.evoked_ratio >= 3 for c in calibrated)}/{n} at the calibrated strength ({len(calibrated)} have one)")
    print(f"top-token mass, steered / default (mean over features): {_mean_gain(at_max):.2f}x at max activation, "
          f"{_mean_gain(calibrated):.2f}x at the calibrated strength")


def rho_table(bench: Bench, rows: list, n: int, seed: int, new_tokens: int) -> None:
    """Does the output score predict the effect? Spearman rho over features with a score, at max activation."""
    scored = [r for r in rows if r.output_score is not None]
    sample = random.Random(seed).sample(scored, min(n, len(scored)))
    effects = [measure(bench.inference, bench.source, r, bench.top_ids(r.feature_id), bench.multiplier * r.max_act,
                       PROMPTS[:2], new_tokens, bench.prompt_tokens, bench.default_probs) for r in sample]
    scores = [r.output_score for r in sample]
    print(f"\noutput score vs measured effect, {len(sample)} features, add at max activation, "
          f"{new_tokens} new tokens x {len(PROMPTS[:2])} prompts:")
    print(f"{'measured effect':<44} {'Spearman rho':>12} {'p':>8}")
    for name, values in (("top-token mass gain (steered / default)", [_gain(e) for e in effects]),
                         ("top-token mass rise (steered - default)", [e.mass_steered - e.mass_default
                                                                      for e in effects]),
                         ("activation evoked, steered / default", [min(e.evoked_ratio, 1e6) for e in effects])):
        rho, pval = spearmanr(scores, values)
        print(f"{name:<44} {rho:>12.3f} {pval:>8.3g}")


def held_out_check(store: IndexStore, source) -> None:
    """The bench's prompts must not be the ones the index calibrated on (the dataset's neutral prompts)."""
    calibration = neutral_prompts(dataset_texts(store.meta.dataset), source.tokenizer, source.prepend_bos,
                                  n=SteerabilityConfig().n_prompts)
    texts = {source.tokenizer.decode(p) for p in calibration}
    clash = [p for p in PROMPTS if any(p.strip() and p.strip() in t for t in texts)]
    if clash:
        raise SystemExit(f"bench prompts {clash} overlap the calibration prompts: the figures would not be held out")
    print(f"{len(PROMPTS)} held-out prompts (none among the {len(calibration)} calibration prompts)")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--index", default="cache/demo.duckdb")
    p.add_argument("--features", type=int, default=10)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--multiplier", type=float, default=1.0, help="strength = multiplier x the feature's max activation")
    p.add_argument("--rho-features", type=int, default=50,
                   help="features in the output score vs effect table (0: skip it)")
    p.add_argument("--rho-new-tokens", type=int, default=16)
    args = p.parse_args()
    store = IndexStore.open(args.index)
    source_spec = store.meta.source
    source = load_source(source_spec)
    held_out_check(store, source)
    prompt_tokens = {prompt: source.model.to_tokens(prompt) for prompt in PROMPTS}
    bench = Bench(get_inference(source_spec, index_path=args.index), source, store, args.multiplier,
                  args.new_tokens, prompt_tokens, {q: next_token_probs(source, t) for q, t in prompt_tokens.items()})
    # features that fire on 0.01%-1% of tokens: specific enough to have a meaning of their own
    rows = store.list_features(FeatureQuery(min_density=1e-4, max_density=1e-2, limit=5000)).rows
    steerable = [r for r in rows if r.calibrated_strength]
    for title, pool in ((f"features picked at random (seed {args.seed}) among {len(rows)}", rows),
                        (f"features picked at random (seed {args.seed}) among the {len(steerable)} calibrated",
                         steerable)):
        chosen = random.Random(args.seed).sample(pool, min(args.features, len(pool)))
        feature_table(bench, title, sorted(chosen, key=lambda r: r.feature_id))
    if args.rho_features > 0:
        rho_table(bench, rows, args.rho_features, args.seed + 1, args.rho_new_tokens)


def _gain(e: Effect) -> float:
    return e.mass_steered / e.mass_default if e.mass_default > 0 else float("inf")


def _mean_gain(effects: list[Effect]) -> float:
    gains = [_gain(e) for e in effects if e.mass_default > 0]
    return sum(gains) / len(gains) if gains else float("nan")


def _ratio(steered: float, default: float) -> float:
    return steered / default if default > 0 else (float("inf") if steered > 0 else 0.0)


if __name__ == "__main__":
    main()
