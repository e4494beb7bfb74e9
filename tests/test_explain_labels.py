"""Which label wins (team > best-scored explanation > top tokens), and explanations in the Features table
(sort, filter, search) and on the feature page, with their source and score beside the text."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
# the page fixtures (a private index copy, a fresh app session) are test_pages.py's own
from test_pages import assert_clean, index, open_page, rendered  # noqa: E402, F401

from backend.catalog import Catalog  # noqa: E402
from backend.explain.models import LLM, RULES, Explanation  # noqa: E402
from backend.explain.scoring import balanced_score  # noqa: E402
from backend.explain.storage import ExplanationStore  # noqa: E402
from backend.labels import shown_label  # noqa: E402
from backend.payloads import FeatureQuery  # noqa: E402
from backend.store import IndexStore  # noqa: E402
from backend.team import TeamLabel, TeamStore  # noqa: E402


def explanation(fid: int, text: str, f1_hits: int | None, method: str = RULES, model: str = "") -> Explanation:
    """A scored explanation whose F1 grows with `f1_hits` (of 10), or an unscored one when None."""
    if f1_hits is None:
        return Explanation(feature_id=fid, method=method, model=model, status="not_enough_data", text=text,
                           reason="only 3 firings")
    score = balanced_score(f1_hits, 10, 10, 1000)
    return Explanation(feature_id=fid, method=method, model=model, status="ok", text=text, detection=score)


def test_team_beats_best_scored_explanation_beats_tokens():
    team = TeamLabel(feature_id=1, text="ours", author="ana", updated_at="2026-01-01")
    good = explanation(1, "`except` after a line break", 9)
    assert shown_label("except | try", team, good).source == "team"
    shown = shown_label("except | try", None, good)
    assert (shown.text, shown.source, shown.score) == ("`except` after a line break", "explanation", good.score)
    assert shown.source_text == f"rules · F1 {good.score:.2f}"
    assert shown_label("except | try", None, None).source_text == "top tokens"
    assert shown_label("except | try", None, explanation(1, "thin", None)).text == "except | try"  # unscored: no


def test_best_explanation_is_the_highest_score_of_any_method(tmp_path):
    store = ExplanationStore.for_index(tmp_path / "x.duckdb")
    store.replace_method(RULES, "", [explanation(1, "rule one", 5), explanation(2, "rule two", 9),
                                     explanation(3, "thin", None)])
    store.put(explanation(1, "llm one", 8, LLM, "qwen"))
    store.put(explanation(2, "llm two", 2, LLM, "qwen"))
    best = store.best([1, 2, 3])
    assert {i: (e.text, e.source_name) for i, e in best.items()} == {1: ("llm one", "llm:qwen"),
                                                                     2: ("rule two", "rules")}
    assert store.best_scores() == {1: best[1].score, 2: best[2].score}
    assert store.search("TWO") == [2] and store.search("thin") == [3] and store.search("%") == []
    # an offline rerun replaces the offline rules only; LLM explanations stay
    store.replace_method(RULES, "", [explanation(1, "rule one again", 1)])
    assert {(e.method, e.text) for e in store.for_features([1, 2, 3])} == {
        (RULES, "rule one again"), (LLM, "llm one"), (LLM, "llm two")}


def test_the_catalog_reads_the_three_stores_under_one_rule(index):  # noqa: F811
    store, team = IndexStore.open(index), TeamStore.for_index(index)
    a, b, c = store.list_features(FeatureQuery(limit=3)).rows
    explained = ExplanationStore.for_index(index)
    explained.replace_method(RULES, "", [explanation(a.feature_id, "rule a", 9), explanation(b.feature_id, "rule b", 4),
                                         explanation(c.feature_id, "thin c", None)])
    explained.put(explanation(b.feature_id, "llm b", 7, LLM, "qwen"))
    team.set_label(a.feature_id, "team a", author="ana")
    catalog = Catalog.for_index(index, store, team)

    missing = store.d_sae  # an id the index does not have
    assert catalog.labels_for([a.feature_id, b.feature_id, c.feature_id, missing]) == {
        a.feature_id: "team a", b.feature_id: "llm b", c.feature_id: c.label, missing: ""}
    named = catalog.name([a, b, c])
    assert [(f.shown.source, f.explanation_score) for f in named] == [
        ("team", explanation(a.feature_id, "", 9).score), ("explanation", explanation(b.feature_id, "", 7).score),
        ("automatic", None)]
    detail = catalog.label_detail(a)
    assert (detail.shown.text, detail.team.author) == ("team a", "ana")
    assert [e.text for e in detail.explanations] == ["rule a"]  # listed even though the team label wins
    assert catalog.label_detail(c).team is None and catalog.label_detail(c).shown.source == "automatic"
    # the Map's hover labels: every label that is not the automatic one, by the same rule as `name`
    everything = store.list_features(FeatureQuery(limit=min(store.d_sae, 5000))).rows
    assert catalog.label_overrides() == {f.feature_id: f.label for f in catalog.name(everything)
                                         if f.shown.source != "automatic"}
    assert catalog.label_overrides() == {a.feature_id: "team a", b.feature_id: "llm b"}
    found = catalog.list_features(FeatureQuery(search="llm b", limit=50))  # matched by its explanation only
    assert [f.feature_id for f in found.features] == [b.feature_id] and found.total == 1


def test_a_failed_write_leaves_the_previous_explanations(tmp_path):
    store = ExplanationStore.for_index(tmp_path / "x.duckdb")
    store.replace_method(RULES, "", [explanation(1, "kept", 5)])
    with pytest.raises(Exception, match="UNIQUE|constraint|CHECK"):
        store.replace_method(RULES, "", [explanation(1, "new", 5), explanation(1, "new", 5).model_copy(
            update={"status": "nonsense"})])
    assert [e.text for e in store.for_features([1])] == ["kept"]


def test_features_sort_and_filter_by_label_score_by_brute_force(tiny_index):
    store = IndexStore.open(tiny_index)
    live = store.list_features(FeatureQuery(limit=5000)).rows
    scores = {r.feature_id: ((r.feature_id * 37) % 100) / 100 for r in live[::2]}
    top = store.list_features(FeatureQuery(sort="label_score", descending=True, limit=5000), label_scores=scores)
    want = sorted(live, key=lambda r: (r.feature_id not in scores, -scores.get(r.feature_id, 0), r.feature_id))
    assert [r.feature_id for r in top.rows] == [r.feature_id for r in want]
    sharp = store.list_features(FeatureQuery(min_label_score=0.5, limit=5000), label_scores=scores)
    assert [r.feature_id for r in sharp.rows] == sorted(i for i, s in scores.items() if s >= 0.5)
    assert store.list_features(FeatureQuery(min_label_score=0.5), label_scores=None).total == 0


def test_features_page_shows_sources_and_scores_and_finds_explanations(index, open_page):  # noqa: F811
    live = IndexStore.open(index).list_features(FeatureQuery(limit=5000)).rows
    a, b, c = (r.feature_id for r in live[:3])
    ExplanationStore.for_index(index).replace_method(RULES, "", [
        explanation(a, "digits inside a hex literal", 9), explanation(b, "`except` after a line break", 3)])
    TeamStore.for_index(index).set_label(b, "our except")
    at = open_page("features", sort="label_score", desc="1", f1min="0.2")
    assert_clean(at)
    frame = at.dataframe[0].value
    assert list(frame["id"]) == [a, b]  # c has no explanation: filtered out
    assert list(frame["label"]) == ["digits inside a hex literal", "✎ our except"]
    assert frame["label source"][0].startswith("rules · F1 0.") and frame["label source"][1] == "team"
    assert frame["explanation F1"][0] > frame["explanation F1"][1] > 0.2
    found = open_page("features", q="hex literal")
    assert list(found.dataframe[0].value["id"]) == [a]
    plain = open_page("features", q=str(c))
    assert plain.dataframe[0].value["label source"][0] == "top tokens"


def test_feature_page_says_where_its_label_comes_from(index, open_page):  # noqa: F811
    live = IndexStore.open(index).list_features(FeatureQuery(limit=5000)).rows
    fid = live[0].feature_id
    good = explanation(fid, "digits inside a hex literal", 9)
    ExplanationStore.for_index(index).replace_method(RULES, "", [good])
    ExplanationStore.for_index(index).put(explanation(fid, "an LLM that failed", None, LLM, "qwen"))
    at = open_page("feature", id=fid)
    assert_clean(at)
    html = rendered(at)
    assert f'#{fid}</span>digits inside a hex literal<span class="label-source">explanation (rules) · F1 ' \
           f'{good.score:.2f} on held-out tokens' in html
    table = at.dataframe[0].value
    assert list(table["source"]) == ["rules", "llm:qwen"]
    assert table["status"][1].startswith("not enough data")
    assert at.expander[0].label.startswith("Explanations (2) · label shown: rules · F1")
