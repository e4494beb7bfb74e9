"""Features as the team sees them: the index's rows with team labels laid over the automatic ones.

A team label overrides the automatic label everywhere; this is the one place where the two meet."""

from __future__ import annotations

from dataclasses import dataclass

from backend.payloads import FeatureQuery, FeatureRow
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
    """Effective label of each id: team label if set, else the automatic one."""
    rows = ctx.store.feature_rows(ids)
    team = ctx.team.get_labels(ids)
    return {i: team[i].text if i in team else (rows[i].label if i in rows else "") for i in ids}


def name(ctx: IndexContext, rows: list[FeatureRow]) -> list[NamedFeature]:
    team = ctx.team.get_labels([r.feature_id for r in rows])
    return [
        NamedFeature(r, team[r.feature_id].text, True) if r.feature_id in team else NamedFeature(r, r.label, False)
        for r in rows
    ]


def _passes(row: FeatureRow, query: FeatureQuery) -> bool:
    return query.min_density <= row.density <= query.max_density and not (query.hide_dead and row.dead)


def list_features(ctx: IndexContext, query: FeatureQuery) -> FeatureListing:
    """The index's matches (automatic label, top token, id) plus features whose team label matches; the
    team matches that pass the filters come first on the first page, then the index's matches."""
    table = ctx.store.list_features(query)
    named = name(ctx, table.rows)
    if not query.search.strip():
        return FeatureListing(table.total, named)
    shown = {f.feature_id for f in named}
    team_ids = [i for i in ctx.team.search_labels(query.search) if i not in shown]
    extra_rows = [r for r in ctx.store.feature_rows(team_ids).values() if _passes(r, query)]
    extra = name(ctx, sorted(extra_rows, key=lambda r: r.feature_id)) if query.offset == 0 else []
    return FeatureListing(table.total + len(extra_rows), extra + named)
