"""Features as the team sees them: the index's rows with the label each one shows laid over them.

A feature's label comes from three stores (the index, the team store, the explanations sidecar) and one
rule, `backend.labels.shown_label`: team label > best-scored explanation > automatic tokens. `Catalog`
is the one place that reads the three together, so no page or view resolves a label on its own."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from backend.explain.models import Explanation
from backend.explain.storage import ExplanationStore
from backend.labels import ShownLabel, shown_label
from backend.payloads import FeatureQuery, FeatureRow
from backend.store import IndexStore
from backend.team import TeamLabel, TeamStore


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


@dataclass(frozen=True)
class LabelDetail:
    """All a feature page says about one feature's label: the one shown, the team's (with its author, date
    and SAE digest, even when it is the one shown) and every explanation of the feature."""

    shown: ShownLabel
    team: TeamLabel | None
    explanations: list[Explanation]


@dataclass(frozen=True)
class Catalog:
    store: IndexStore
    team: TeamStore
    explanations: ExplanationStore

    @classmethod
    def for_index(cls, path: Path, store: IndexStore, team: TeamStore) -> Catalog:
        """With the explanations sidecar beside the index (reading a missing one gives nothing)."""
        return cls(store, team, ExplanationStore.for_index(path))

    def name(self, rows: list[FeatureRow]) -> list[NamedFeature]:
        ids = [r.feature_id for r in rows]
        team, best = self.team.get_labels(ids), self.explanations.best(ids)
        return [
            NamedFeature(r, shown_label(r.label, team.get(r.feature_id), best.get(r.feature_id)),
                         best[r.feature_id].score if r.feature_id in best else None)
            for r in rows
        ]

    def labels_for(self, ids: list[int]) -> dict[int, str]:
        """The label each id shows; "" for an id the index does not have."""
        shown = {f.feature_id: f.label for f in self.name(list(self.store.feature_rows(ids).values()))}
        return {i: shown.get(i, "") for i in ids}

    def label_overrides(self) -> dict[int, str]:
        """Every feature whose shown label is not its automatic one -> that label (team labels over best
        explanations, as `shown_label` rules); the features missing here show their automatic label."""
        return self.explanations.best_texts() | self.team.all_labels()

    def label_detail(self, row: FeatureRow) -> LabelDetail:
        team = self.team.get_labels([row.feature_id]).get(row.feature_id)
        explanations = self.explanations.for_feature(row.feature_id)
        best = self.explanations.best([row.feature_id]).get(row.feature_id)
        return LabelDetail(shown_label(row.label, team, best), team, explanations)

    def list_features(self, query: FeatureQuery) -> FeatureListing:
        """The index's matches and the features whose team label or explanation matches the search, filtered,
        sorted (label score included) and paged together by the query layer."""
        matches: list[int] = []
        if query.search.strip():
            matches = self.team.search_labels(query.search) + self.explanations.search(query.search)
        wants_scores = query.sort == "label_score" or query.min_label_score > 0
        scores = self.explanations.best_scores() if wants_scores else None
        table = self.store.list_features(query, also_matching=matches, label_scores=scores)
        return FeatureListing(table.total, self.name(table.rows))
