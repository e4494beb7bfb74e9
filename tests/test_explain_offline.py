"""Offline explanations: rules mined from the index, scored on held-out tokens; checked by brute force."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from backend.explain.heldout import HeldOut, encode_heldout, heldout_plan
from backend.explain.models import RULES, Explanation
from backend.explain.offline import OfflineConfig, explain_offline, run_offline
from backend.explain.rules import CLASS_INDEX, CLASSES, FAMILIES, Vocabulary, describe, token_class
from backend.explain.scoring import balanced_score
from backend.explain.storage import ExplanationStore, explanations_path_for
from backend.index.datasets import DEMO_HELDOUT, DEMO_TRAIN, dataset_texts, token_rows
from backend.store import IndexStore
from backend.store_examples import example_windows, live_feature_ids
from backend.team import TeamStore

HELDOUT_TOKENS = 4_000


@pytest.fixture(scope="module")
def tiny_parts(tiny_index, source):
    with IndexStore.open(tiny_index) as store:
        meta, vocab = store.meta, store.vocab
        windows, live = example_windows(store), live_feature_ids(store)
    heldout = encode_heldout(source, meta, HELDOUT_TOKENS, progress=False)
    return meta, vocab, windows, live, heldout


@pytest.fixture(scope="module")
def offline(tiny_parts) -> list[Explanation]:
    meta, vocab, windows, live, heldout = tiny_parts
    return explain_offline(windows, heldout, Vocabulary.build(vocab, meta.excluded_token_ids), live,
                           OfflineConfig(min_active=5))


def test_heldout_rows_follow_the_index_rows(tiny_parts, tiny_dataset, source):
    meta, _, _, _, heldout = tiny_parts
    assert heldout_plan(meta, None)[0].skip_rows == meta.rows > 0
    assert heldout.rows * heldout.ctx >= HELDOUT_TOKENS and f"after row {meta.rows}" in heldout.description
    stream = np.concatenate([b.numpy() for b in token_rows(dataset_texts(str(tiny_dataset)), source.tokenizer,
                                                            meta.context_size, True, 8, 1 << 40)])
    assert np.array_equal(heldout.tokens, stream[meta.rows: meta.rows + heldout.rows])
    # the demo's held-out split is used up by its index: its training split follows, never the same rows
    plan = heldout_plan(meta.with_values(dataset=DEMO_HELDOUT, rows=7), None)
    assert [(p.dataset, p.skip_rows) for p in plan] == [(DEMO_HELDOUT, 7), (DEMO_TRAIN, 0)]


def test_heldout_firings_are_the_sae_on_those_rows(tiny_parts, source):
    from backend.index.build import encode_batch

    heldout = tiny_parts[4]
    import torch

    acts = encode_batch(source, torch.tensor(heldout.tokens[:3])).float().numpy()
    special = np.isin(heldout.tokens[:3], source.special_token_ids())
    acts[special] = 0
    first = heldout.fire_pos < 3 * heldout.ctx
    dense = np.zeros_like(acts)
    pos = heldout.fire_pos[first]
    dense[pos // heldout.ctx, pos % heldout.ctx, heldout.fire_feature[first]] = heldout.fire_act[first]
    np.testing.assert_allclose(dense, acts, atol=1e-5)
    assert not heldout.keep[:3][special].any()


def _brute_keys(family: str, row: list[int], col: int, vocab: Vocabulary) -> tuple | None:
    """The family's key at one position, written the slow and obvious way."""
    cur = row[col]
    prev = row[col - 1] if col > 0 else "START"
    cls = lambda t: "START" if t == "START" else int(vocab.classes[t])  # noqa: E731
    head = None
    breaks = [j for j in range(col + 1) if "\n" in vocab.texts[row[j]]]
    if breaks:
        solid = [k for k in range(breaks[-1] + 1, col + 1)
                 if vocab.texts[row[k]].strip() and "\n" not in vocab.texts[row[k]]]
        head = row[solid[0]] if solid else None
    return {
        "token": (cur,), "class": (cls(cur),), "prev_token": (prev,), "bigram": (prev, cur),
        "prev_class_token": (cls(prev), cur), "prev_token_class": (prev, cls(cur)),
        "head_token": None if head is None else (head, cur), "head_class": None if head is None else (head, cls(cur)),
    }[family]


def _decode(family: str, key: int, vocab: Vocabulary) -> tuple:
    V, C = vocab.size + 2, len(CLASSES) + 2
    tok = lambda t: "START" if t == vocab.size else t  # noqa: E731
    cl = lambda c: "START" if c == len(CLASSES) else c  # noqa: E731
    return {
        "token": lambda: (key,), "class": lambda: (key,), "prev_token": lambda: (tok(key),),
        "bigram": lambda: (tok(key // V), key % V), "prev_class_token": lambda: (cl(key // V), key % V),
        "prev_token_class": lambda: (tok(key // C), key % C), "head_token": lambda: (key // V, key % V),
        "head_class": lambda: (key // C, key % C),
    }[family]()


def _brute_score(e: Explanation, half: HeldOut, vocab: Vocabulary):
    wanted = {_decode(e.rule.family, k, vocab) for k in e.rule.keys}
    fires = set(half.fire_pos[half.fire_feature == e.feature_id].tolist())
    tp = predicted = active = kept = 0
    for r in range(half.rows):
        row = half.tokens[r].tolist()
        for c in range(half.ctx):
            if not half.keep[r, c]:
                continue
            kept += 1
            fired = r * half.ctx + c in fires
            match = _brute_keys(e.rule.family, row, c, vocab) in wanted
            active += fired
            predicted += match
            tp += fired and match
    return balanced_score(tp, predicted, active, kept - active)


def test_scores_are_the_rules_on_held_out_tokens_by_brute_force(offline, tiny_parts):
    meta, token_bytes, _, live, heldout = tiny_parts
    vocab = Vocabulary.build(token_bytes, meta.excluded_token_ids)
    mining, scoring = heldout.halves()
    assert {e.feature_id for e in offline} == set(live)
    scored = [e for e in offline if e.status == "ok"]
    assert len(scored) >= 10
    for e in scored:
        assert e.method == RULES and e.rule.family in {f.name for f in FAMILIES} and 1 <= len(e.rule.keys) <= 3
        for got, half in ((e.detection, scoring), (e.rule.mining, mining)):
            want = _brute_score(e, half, vocab)
            assert (got.true_positives, got.false_positives, got.n_active) == (
                want.true_positives, want.false_positives, want.n_active), e
            assert got.f1 == pytest.approx(want.f1) and got.precision == pytest.approx(want.precision)
        assert e.text == describe(e.rule.family, e.rule.keys, vocab)


def test_too_few_firings_means_not_enough_data_not_zero(tiny_parts):
    meta, token_bytes, windows, live, heldout = tiny_parts
    out = explain_offline(windows, heldout, Vocabulary.build(token_bytes, meta.excluded_token_ids), live,
                          OfflineConfig(min_active=10**9))
    assert all(e.status == "not_enough_data" and e.detection is None and e.score is None for e in out)
    assert all("needed" in e.reason for e in out)


def test_token_classes():
    assert token_class("   ", False) == CLASS_INDEX["space"]
    assert token_class("\n    ", False) == CLASS_INDEX["newline"]
    assert token_class(" 42", False) == CLASS_INDEX["number"]
    assert token_class("HTTP", False) == CLASS_INDEX["upper"]
    assert token_class(" Point", False) == CLASS_INDEX["capital"]
    assert token_class("_name", False) == CLASS_INDEX["lower"]
    assert token_class("((", False) == CLASS_INDEX["open"]
    assert token_class("'", False) == CLASS_INDEX["quote"]
    assert token_class(" ==", False) == CLASS_INDEX["operator"]
    assert token_class("café", False) == CLASS_INDEX["non_ascii"]
    assert token_class("<|endoftext|>", True) == CLASS_INDEX["special"]


def test_rule_text_reads_like_a_rule():
    vocab = Vocabulary.build([b"except", b"\n    ", b"0x", b"ff", b"def", b" run", b" stop"], [])
    V, C = vocab.size + 2, len(CLASSES) + 2
    assert describe("token", [0], vocab) == "`except`"
    assert describe("token", [5, 6, 0], vocab) == "`run`, `stop` or `except`"
    assert describe("prev_class_token", [CLASS_INDEX["newline"] * V + 0], vocab) == "`except` after a line break"
    assert describe("prev_token_class", [2 * C + CLASS_INDEX["lower"]], vocab) == "a lower-case word after `0x`"
    assert describe("bigram", [4 * V + 5, 4 * V + 6], vocab) == "`run` or `stop` after `def`"
    assert describe("prev_token", [4], vocab) == "the token after `def`"
    assert describe("head_class", [4 * C + CLASS_INDEX["lower"]], vocab) == \
        "a lower-case word on a line starting with `def`"
    assert describe("class", [CLASS_INDEX["number"]], vocab) == "a number"


def test_cli_writes_the_sidecar_and_never_a_team_label(tiny_index, tmp_path, capsys):
    from backend.__main__ import main

    index = Path(shutil.copy(tiny_index, tmp_path / "t.duckdb"))
    TeamStore.for_index(index).set_label(3, "our name for it")
    assert main(["explain", "--index", str(index), "--offline", "--heldout-tokens", str(HELDOUT_TOKENS)]) == 0
    assert "live features explained offline" in capsys.readouterr().out
    store = ExplanationStore.for_index(index)
    summary = store.summaries()[0]
    assert summary.method == RULES and summary.scored + summary.not_enough_data == len(store.done_ids(RULES, ""))
    assert TeamStore.for_index(index).get_labels([3])[3].text == "our name for it"
    # a second run replaces the first in one transaction: same features, no duplicates
    report = run_offline(str(index), HELDOUT_TOKENS, progress=False)
    assert len(store.done_ids(RULES, "")) == len(report.explanations)
    assert explanations_path_for(index) == tmp_path / "t.explanations.sqlite"


def test_too_little_held_out_text_says_so_in_one_sentence(tiny_index, tmp_path):
    from backend.errors import UserError

    index = Path(shutil.copy(tiny_index, tmp_path / "t.duckdb"))
    short = tmp_path / "short.txt"
    short.write_text("x = 1\n", encoding="utf-8")
    with pytest.raises(UserError, match="held-out tokens are left.*--heldout-dataset"):
        run_offline(str(index), HELDOUT_TOKENS, dataset=str(short), progress=False)
    assert not explanations_path_for(index).exists()
