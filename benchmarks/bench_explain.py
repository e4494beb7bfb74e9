"""Offline explanations on a finished index, measured in one run:

- how well the mined rules predict activation on held-out tokens (median balanced F1 and its histogram),
  against the automatic "top tokens" label read as a rule (the feature fires on one of those tokens),
  scored on the same held-out half;
- the time of the vectorised miner/scorer for every live feature, against a per-token Python loop scoring
  the same token rules (timed on a sample, per feature).

    python benchmarks/bench_explain.py [--index cache/demo.duckdb] [--heldout-tokens 200000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.explain.heldout import encode_heldout  # noqa: E402
from backend.explain.offline import OfflineConfig, explain_offline  # noqa: E402
from backend.explain.rules import Vocabulary  # noqa: E402
from backend.explain.scoring import balanced_arrays  # noqa: E402
from backend.sources import load_source  # noqa: E402
from backend.store import IndexStore, example_windows, live_feature_ids  # noqa: E402


def automatic_rule_f1(windows, half, live: list[int]) -> np.ndarray:
    """F1 of "one of the automatic label's tokens" (the top examples' center tokens, activation-weighted,
    top 3), on a held-out half, per live feature."""
    tokens = half.tokens.reshape(-1)
    keep = half.keep.reshape(-1)
    counts = np.bincount(tokens[keep], minlength=int(tokens.max()) + 1)
    fired_tok = tokens[half.fire_pos]
    out = []
    for f in live:
        rows = windows.rows_of(f)
        rows = rows[windows.top[rows]]
        centers, values = windows.tokens[rows, windows.center[rows]], windows.value[rows]
        weight = np.bincount(centers[centers >= 0], weights=values[centers >= 0], minlength=len(counts))
        top = np.argsort(-weight)[:3][weight[np.argsort(-weight)[:3]] > 0]
        sl = half.feature_slice(f)
        hits = np.isin(fired_tok[sl], top).sum()
        active = sl.stop - sl.start
        out.append(balanced_arrays(hits, counts[top].sum(), active, half.n_kept - active)[2])
    return np.asarray(out, dtype=np.float64)


def brute_token_rule(half, feature_id: int, keys: list[int]) -> tuple[int, int]:
    fires = set(half.fire_pos[half.feature_slice(feature_id)].tolist())
    wanted = set(keys)
    hits = matches = 0
    for r in range(half.rows):
        for c in range(half.ctx):
            if half.keep[r, c] and int(half.tokens[r, c]) in wanted:
                matches += 1
                hits += (r * half.ctx + c) in fires
    return hits, matches


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--index", default="cache/demo.duckdb")
    parser.add_argument("--heldout-tokens", type=int, default=200_000)
    parser.add_argument("--brute-sample", type=int, default=10)
    args = parser.parse_args()
    with IndexStore.open(args.index) as store:
        meta, token_bytes = store.meta, store.vocab
        windows, live = example_windows(store), live_feature_ids(store)
    t0 = time.perf_counter()
    heldout = encode_heldout(load_source(meta.source), meta, args.heldout_tokens, progress=False)
    t1 = time.perf_counter()
    vocab = Vocabulary.build(token_bytes, meta.excluded_token_ids)
    out = explain_offline(windows, heldout, vocab, live, OfflineConfig())
    t2 = time.perf_counter()
    scored = {e.feature_id: e for e in out if e.score is not None}
    f1 = np.array([e.score for e in scored.values()])
    hist = np.histogram(f1, bins=10, range=(0, 1))[0]
    print(f"held-out: {heldout.rows * heldout.ctx:,} tokens of {heldout.description} (encoded in {t1 - t0:.1f} s)")
    print(f"live features: {len(live):,} · scored {len(f1):,} · not enough data {len(out) - len(f1):,}")
    print(f"mined rules: median F1 {np.median(f1):.3f}, mean {f1.mean():.3f}")
    print("F1 histogram (0-0.1 ... 0.9-1):", " ".join(str(int(h)) for h in hist))
    scoring = heldout.halves()[1]
    ids = sorted(scored)
    auto = automatic_rule_f1(windows, scoring, ids)
    print(f"automatic top-token labels read as rules, same features and half: median F1 {np.median(auto):.3f} "
          f"-> mined / automatic = {np.median(f1) / max(np.median(auto), 1e-9):.2f}x; mined better on "
          f"{(f1 > auto + 1e-9).mean():.0%} of features")
    token_rules = [e for e in scored.values() if e.rule.family == "token"][: args.brute_sample]
    t3 = time.perf_counter()
    for e in token_rules:
        hits, matches = brute_token_rule(scoring, e.feature_id, e.rule.keys)
        assert hits == e.detection.true_positives and matches - hits == e.detection.false_positives
    per_feature_brute = (time.perf_counter() - t3) / max(len(token_rules), 1)
    per_feature_fast = (t2 - t1) / len(live)
    print(f"vectorised miner + scorer: {t2 - t1:.1f} s for {len(live):,} features "
          f"({per_feature_fast * 1e3:.2f} ms each); "
          f"per-token Python loop, scoring only: {per_feature_brute * 1e3:.0f} ms per feature "
          f"-> {per_feature_brute / per_feature_fast:.0f}x")


if __name__ == "__main__":
    main()
