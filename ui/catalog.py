"""Features as the team sees them: the index's rows with team labels laid over the automatic ones.

A team label overrides the automatic label everywhere (the rule: `backend.team.effective_label`); pages get
their labels here rather than reading the two stores themselves."""

from __future__ import annotations

from dataclasses import dataclass

from backend.payloads import FeatureQuery, FeatureRow
from backend.team import effective_label
from ui.resources import IndexContext


@dataclass(frozen=True)
class NamedFeature:
    row: FeatureRow
    label: str
    by_team: bool

    @property
    def feature_id(self) -> int:
        return self.row.feature_id


@dataclass(frozen=True)
class FeatureListing:
    total: int
    features: list[NamedFeature]


def labels_for(ctx: IndexContext, ids: list[int]) -> dict[int, str]:
    """Effective label of each id (see `effective_label`)."""
    rows = ctx.store.feature_rows(ids)
    team = ctx.team.get_labels(ids)
    return {i: effective_label(rows[i].label if i in rows else "", team.get(i)) for i in ids}


def name(ctx: IndexContext, rows: list[FeatureRow]) -> list[NamedFeature]:
    team = ctx.team.get_labels([r.feature_id for r in rows])
    return [NamedFeature(r, effective_label(r.label, team.get(r.feature_id)), r.feature_id in team) for r in rows]


def list_features(ctx: IndexContext, query: FeatureQuery) -> FeatureListing:
    """The index's matches and the features whose team label matches the search, filtered, sorted and paged
    together by the query layer."""
    team_matches = ctx.team.search_labels(query.search) if query.search.strip() else []
    table = ctx.store.list_features(query, also_matching=team_matches)
    return FeatureListing(table.total, name(ctx, table.rows))
