"""Features as the team sees them: the index's rows with the label each one shows laid over them.

Which label wins is one rule, `backend.labels.shown_label`: team label > best-scored explanation > automatic
tokens. Pages get their labels here rather than reading the three stores (index, team, explanations)."""

from __future__ import annotations

from dataclasses import dataclass

from backend.explain.storage import ExplanationStore
from backend.labels import ShownLabel, shown_label
from backend.payloads import FeatureQuery, FeatureRow
from ui.resources import IndexContext


@dataclass(frozen=True)
class NamedFeature:
    row: FeatureRow
    shown: ShownLabel
    explanation_score: float | None = None  # its best explanation's F1, shown or not (the label-score sort key)

    @property
    def feature_id(self) -> int:
        return self.row.feature_id

    @property
    def label(self) -> str:
        return self.shown.text

    @property
    def by_team(self) -> bool:
        return self.shown.source == "team"


@dataclass(frozen=True)
class FeatureListing:
    total: int
    features: list[NamedFeature]


def explanations(ctx: IndexContext) -> ExplanationStore:
    """The explanations sidecar beside the index (reading a missing one gives nothing)."""
    return ExplanationStore.for_index(ctx.path)


def shown_labels(ctx: IndexContext, rows: list[FeatureRow]) -> dict[int, ShownLabel]:
    return {f.feature_id: f.shown for f in name(ctx, rows)}


def labels_for(ctx: IndexContext, ids: list[int]) -> dict[int, str]:
    """The label each id shows (see `shown_label`)."""
    rows = ctx.store.feature_rows(ids)
    shown = shown_labels(ctx, list(rows.values()))
    return {i: shown[i].text if i in shown else "" for i in ids}


def name(ctx: IndexContext, rows: list[FeatureRow]) -> list[NamedFeature]:
    ids = [r.feature_id for r in rows]
    team, best = ctx.team.get_labels(ids), explanations(ctx).best(ids)
    return [
        NamedFeature(r, shown_label(r.label, team.get(r.feature_id), best.get(r.feature_id)),
                     best[r.feature_id].score if r.feature_id in best else None)
        for r in rows
    ]


def list_features(ctx: IndexContext, query: FeatureQuery) -> FeatureListing:
    """The index's matches and the features whose team label or explanation matches the search, filtered,
    sorted (label score included) and paged together by the query layer."""
    store = explanations(ctx)
    matches: list[int] = []
    if query.search.strip():
        matches = ctx.team.search_labels(query.search) + store.search(query.search)
    scores = store.best_scores() if query.sort == "label_score" or query.min_label_score > 0 else None
    table = ctx.store.list_features(query, also_matching=matches, label_scores=scores)
    return FeatureListing(table.total, name(ctx, table.rows))
