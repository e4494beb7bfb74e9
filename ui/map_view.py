"""The feature map: a WebGL scatter of every feature's UMAP position, and reading the reader's selection."""

from __future__ import annotations

import math
from dataclasses import dataclass

import plotly.graph_objects as go
import streamlit as st

from backend.payloads import MapPoints
from ui.charts import GREY, ORANGE, PALETTE
from ui.html import esc
from ui.resources import IndexContext

COLOUR_MODES = {"density": "Density (log)", "cluster": "Cluster", "search": "Search match"}


@dataclass(frozen=True)
class MapView:
    """The points drawn, in drawing order: `feature_ids[i]` is point i of the single trace."""

    feature_ids: list[int]
    figure: go.Figure


@dataclass(frozen=True)
class MapSelection:
    clicked: int | None  # one point clicked (opens its page)
    selected: list[int]  # box or lasso selection (can be saved as a list)


@st.cache_data(show_spinner=False, max_entries=8)
def _points(_ctx: IndexContext, index_key: str) -> MapPoints:
    return _ctx.store.map_points()


def build_map(
    ctx: IndexContext, colour: str, show_dead: bool, matches: set[int], labels: dict[int, str]
) -> MapView:
    points = _points(ctx, ctx.key)
    keep = [i for i in range(len(points.feature_id)) if show_dead or not points.dead[i]]
    ids = [points.feature_id[i] for i in keep]
    density = [points.density[i] for i in keep]
    names = [esc(labels.get(f, points.label[i])[:80]) for f, i in zip(ids, keep, strict=True)]
    size = max(3.0, min(9.0, 12.0 - 2.0 * math.log10(max(len(ids), 1))))  # big dots for few features, small for many
    marker: dict = dict(size=size, opacity=0.85, line=dict(width=0))
    if colour == "density":
        marker.update(color=[math.log10(max(d, 1e-7)) for d in density], colorscale="Viridis", showscale=True,
                      colorbar=dict(title="log₁₀ density", thickness=12))
    elif colour == "cluster":
        marker.update(color=[PALETTE[points.cluster[i] % len(PALETTE)] for i in keep])
    else:
        marker.update(color=[ORANGE if f in matches else GREY for f in ids],
                      size=[size + 3 if f in matches else size * 0.7 for f in ids],
                      opacity=[0.95 if f in matches else 0.35 for f in ids])
    figure = go.Figure(go.Scattergl(
        x=[points.x[i] for i in keep], y=[points.y[i] for i in keep], mode="markers", marker=marker,
        customdata=[[f, points.cluster[i], d] for f, i, d in zip(ids, keep, density, strict=True)], text=names,
        hovertemplate="<b>#%{customdata[0]}</b> %{text}<br>density %{customdata[2]:.2e} · cluster %{customdata[1]}"
                      "<extra></extra>",
    ))
    figure.update_layout(
        height=640, margin=dict(l=4, r=4, t=4, b=4), dragmode="pan", hovermode="closest",  # pan: a click selects
        xaxis=dict(visible=False), yaxis=dict(visible=False, scaleanchor="x", scaleratio=1),
    )
    return MapView(ids, figure)


def read_selection(event, view: MapView) -> MapSelection:
    """A click selects one point (no box or lasso): open it. A box or lasso gives the selected ids."""
    selection = event.selection if event is not None else None
    if not selection:
        return MapSelection(None, [])
    indices = [p.get("point_index", p.get("point_number")) for p in selection.get("points", [])]
    ids = [view.feature_ids[i] for i in indices if isinstance(i, int) and 0 <= i < len(view.feature_ids)]
    dragged = bool(selection.get("box")) or bool(selection.get("lasso"))
    if len(ids) == 1 and not dragged:
        return MapSelection(ids[0], [])
    return MapSelection(None, ids)
