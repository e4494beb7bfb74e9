"""The offline explainer: for every live feature, a short rule mined from its stored examples, chosen on
the mining half of the held-out tokens and scored on the scoring half. No LLM, no per-token Python.

1. candidates: in each rule family, the keys of the positions where the feature fires inside its top and
   interval example windows, weighted by activation (relative to the feature's max); the best few per family;
2. choice (mining half): per family, candidates ordered by precision, the prefix (at most `max_keys` keys)
   with the best balanced F1; then the simplest family whose F1 no later family beats by a margin;
3. score (scoring half): the chosen rule's balanced precision, recall and F1 (backend/explain/scoring.py).
All counts come from `np.unique` over (feature, key) codes of every firing at once."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

import numpy as np

from backend.explain.heldout import HeldOut, encode_heldout
from backend.explain.models import RULES, Explanation, RuleSpec
from backend.explain.rules import FAMILIES, Positions, Vocabulary, describe, family_keys, key_space
from backend.explain.scoring import balanced_arrays, balanced_score
from backend.explain.storage import ExplanationStore, now
from backend.sources import load_source
from backend.store import IndexStore
from backend.store_examples import ExampleWindows, example_windows, live_feature_ids


@dataclass(frozen=True)
class OfflineConfig:
    candidates: int = 8  # keys per family mined from the examples
    max_keys: int = 3  # keys one rule may list
    min_active: int = 10  # firings needed in each held-out half to choose and to score a rule
    key_gain: float = 0.01  # one more key must add this much mining F1
    family_margin: float = 0.02  # a later (more complex) family must beat the chosen one by this much


@dataclass(frozen=True)
class _Counts:
    """Per-key counts of one family on one held-out half: matches (all kept tokens) and hits (firings)."""

    keys: np.ndarray
    matches: np.ndarray
    codes: np.ndarray  # feature * space + key
    hits: np.ndarray
    space: int

    @classmethod
    def of(cls, family: str, half: HeldOut, positions: Positions) -> _Counts:
        space = key_space(family, positions)
        keys = family_keys(family, positions).reshape(-1)
        keys[~half.keep.reshape(-1)] = -1
        ukeys, matches = np.unique(keys[keys >= 0], return_counts=True)
        fired = keys[half.fire_pos]
        ok = fired >= 0
        codes, hits = np.unique(half.fire_feature[ok].astype(np.int64) * space + fired[ok], return_counts=True)
        return cls(ukeys, matches, codes, hits, space)

    def lookup(self, feature: np.ndarray, key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(hits, matches) of each (feature, key); key -1 counts nothing."""
        return (_take(self.codes, self.hits, np.where(key >= 0, feature * self.space + key, -1)),
                _take(self.keys, self.matches, key))


def _take(sorted_keys: np.ndarray, counts: np.ndarray, query: np.ndarray) -> np.ndarray:
    if len(sorted_keys) == 0:
        return np.zeros(query.shape, dtype=np.int64)
    at = np.minimum(np.searchsorted(sorted_keys, query), len(sorted_keys) - 1)
    return np.where((sorted_keys[at] == query) & (query >= 0), counts[at], 0)


def _candidates(windows: ExampleWindows, positions: Positions, family: str, weight: np.ndarray, per: int):
    """Top `per` keys of each feature in one family: (feature, key, rank) arrays, ordered by feature."""
    space = key_space(family, positions)
    keys = family_keys(family, positions)
    fired = (windows.acts > 0) & (keys >= 0)
    feature = np.broadcast_to(windows.feature_id[:, None], keys.shape)[fired]
    codes, inverse = np.unique(feature * space + keys[fired], return_inverse=True)
    total = np.bincount(inverse, weights=weight[fired])
    feat, key = codes // space, codes % space
    order = np.lexsort((-total, feat))
    feat, key = feat[order], key[order]
    rank = np.arange(len(feat)) - np.searchsorted(feat, feat)
    keep = rank < per
    return feat[keep], key[keep], rank[keep]


def _best_prefix(hits, matches, n_active, n_inactive, max_keys: int, cfg: OfflineConfig):
    """Per row: candidates by precision, the prefix with the best balanced F1 (a longer one must gain)."""
    precision = np.where(matches > 0, hits / np.maximum(matches, 1), -1.0)
    order = np.argsort(-precision, axis=1, kind="stable")[:, : min(cfg.max_keys, max_keys)]
    hits, matches = np.take_along_axis(hits, order, 1), np.take_along_axis(matches, order, 1)
    f1 = balanced_arrays(hits.cumsum(1), matches.cumsum(1), n_active[:, None], n_inactive[:, None])[2]
    length, best = np.ones(len(f1), dtype=np.int64), f1[:, 0].copy()
    for n in range(2, f1.shape[1] + 1):
        better = f1[:, n - 1] > best + cfg.key_gain
        length, best = np.where(better, n, length), np.where(better, f1[:, n - 1], best)
    return order, length, best


def explain_offline(
    windows: ExampleWindows, heldout: HeldOut, vocab: Vocabulary, live_ids: list[int], cfg: OfflineConfig
) -> list[Explanation]:
    ids = np.asarray(sorted(live_ids), dtype=np.int64)
    mining, scoring = heldout.halves()
    pos_w = Positions.of(windows.tokens, vocab, windows.start_col == 0)
    pos_m = Positions.of(mining.tokens, vocab, np.ones(mining.rows, dtype=bool))
    pos_s = Positions.of(scoring.tokens, vocab, np.ones(scoring.rows, dtype=bool))
    peak = np.zeros(heldout.d_sae, dtype=np.float64)
    np.maximum.at(peak, windows.feature_id, windows.acts.max(axis=1))
    weight = windows.acts / np.maximum(peak[windows.feature_id], 1e-12)[:, None]
    active_m, active_s = mining.fire_counts()[ids], scoring.fire_counts()[ids]
    inactive_m, inactive_s = mining.n_kept - active_m, scoring.n_kept - active_s

    n, n_fam, per = len(ids), len(FAMILIES), cfg.candidates
    fam_keys = np.full((n, n_fam, cfg.max_keys), -1, dtype=np.int64)
    fam_len = np.zeros((n, n_fam), dtype=np.int64)
    fam_f1 = np.full((n, n_fam), -1.0)
    fam_mining = np.zeros((n, n_fam, 2), dtype=np.int64)  # (hits, matches) of the chosen prefix
    first_token = np.full(n, -1, dtype=np.int64)  # fallback text when the mining half is too thin
    counts_s: list[_Counts] = []
    for j, family in enumerate(FAMILIES):
        feat, key, rank = _candidates(windows, pos_w, family.name, weight, per)
        inside = np.isin(feat, ids)
        feat, key, rank = feat[inside], key[inside], rank[inside]
        row = np.searchsorted(ids, feat)
        keys = np.full((n, per), -1, dtype=np.int64)
        keys[row, rank] = key
        if j == 0:
            first_token = keys[:, 0]
        counts_m = _Counts.of(family.name, mining, pos_m)
        hits, matches = counts_m.lookup(np.broadcast_to(ids[:, None], keys.shape), keys)
        order, length, best = _best_prefix(hits, matches, active_m, inactive_m, family.max_keys, cfg)
        chosen = np.take_along_axis(keys, order, 1)
        chosen = np.where(np.arange(chosen.shape[1])[None, :] < length[:, None], chosen, -1)
        fam_keys[:, j, : chosen.shape[1]] = chosen
        fam_len[:, j] = length
        fam_f1[:, j] = np.where(chosen[:, 0] >= 0, best, -1.0)
        in_prefix = np.arange(order.shape[1])[None, :] < length[:, None]
        fam_mining[:, j, 0] = (np.take_along_axis(hits, order, 1) * in_prefix).sum(1)
        fam_mining[:, j, 1] = (np.take_along_axis(matches, order, 1) * in_prefix).sum(1)
        counts_s.append(_Counts.of(family.name, scoring, pos_s))

    choice, best = np.zeros(n, dtype=np.int64), fam_f1[:, 0].copy()
    for j in range(1, n_fam):
        better = fam_f1[:, j] > best + cfg.family_margin
        choice, best = np.where(better, j, choice), np.where(better, fam_f1[:, j], best)
    rows = np.arange(n)
    rule_keys = fam_keys[rows, choice]
    hits_s, matches_s = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    for j in range(n_fam):
        sel = choice == j
        h, m = counts_s[j].lookup(np.broadcast_to(ids[sel, None], rule_keys[sel].shape), rule_keys[sel])
        hits_s[sel], matches_s[sel] = h.sum(1), m.sum(1)

    stamp, out = now(), []
    for i, f in enumerate(ids.tolist()):
        family = FAMILIES[choice[i]].name
        keys = [int(k) for k in rule_keys[i] if k >= 0]
        if active_m[i] < cfg.min_active or not keys:
            family, keys = "token", [int(first_token[i])] if first_token[i] >= 0 else []
            out.append(_thin(f, family, keys, vocab, stamp, f"only {active_m[i]} firings in the held-out mining "
                             f"half ({cfg.min_active} needed to choose a rule)"))
            continue
        mined = balanced_score(int(fam_mining[i, choice[i], 0]), int(fam_mining[i, choice[i], 1]),
                               int(active_m[i]), int(inactive_m[i]))
        rule = RuleSpec(family=family, keys=keys, mining=mined)
        text = describe(family, keys, vocab)
        if active_s[i] < cfg.min_active:
            out.append(Explanation(feature_id=f, method=RULES, status="not_enough_data", text=text, rule=rule,
                                   reason=f"only {active_s[i]} firings in the held-out scoring half "
                                          f"({cfg.min_active} needed to score it)", created_at=stamp))
            continue
        score = balanced_score(int(hits_s[i]), int(matches_s[i]), int(active_s[i]), int(inactive_s[i]))
        out.append(Explanation(feature_id=f, method=RULES, status="ok", text=text, detection=score, rule=rule,
                               created_at=stamp))
    return out


def _thin(feature_id: int, family: str, keys: list[int], vocab: Vocabulary, stamp: str, reason: str) -> Explanation:
    text = describe(family, keys, vocab) if keys else ""
    return Explanation(feature_id=feature_id, method=RULES, status="not_enough_data", text=text, reason=reason,
                       created_at=stamp)


@dataclass(frozen=True)
class OfflineReport:
    explanations: list[Explanation]
    heldout: str
    heldout_tokens: int
    seconds_encode: float
    seconds_explain: float


def run_offline(
    index_path: str,
    heldout_tokens: int = 200_000,
    dataset: str | None = None,
    device: str | None = None,
    cfg: OfflineConfig = OfflineConfig(),
    progress: bool = True,
) -> OfflineReport:
    """Explain every live feature of an index offline and store the result (replacing earlier offline rules)."""
    with IndexStore.open(index_path) as store:
        meta, token_bytes = store.meta, store.vocab
        windows, live = example_windows(store), live_feature_ids(store)
    t0 = time.perf_counter()
    source = load_source(meta.source, device)
    heldout = encode_heldout(source, meta, heldout_tokens, dataset, min_tokens=2 * meta.context_size,
                             progress=progress)
    t1 = time.perf_counter()
    vocab = Vocabulary.build(token_bytes, meta.excluded_token_ids)
    explanations = explain_offline(windows, heldout, vocab, live, cfg)
    t2 = time.perf_counter()
    store_out = ExplanationStore.for_index(index_path)
    run_id = store_out.start_run(RULES, "", heldout.description, json.dumps(asdict(cfg)))
    store_out.replace_method(RULES, "", explanations)
    store_out.finish_run(run_id)
    return OfflineReport(explanations, heldout.description, heldout.rows * heldout.ctx, t1 - t0, t2 - t1)
