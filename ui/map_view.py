"""The feature map: a WebGL scatter of every feature's UMAP position, and reading the reader's selection."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
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


@st.cache_resource(show_spinner=False, max_entries=8)  # shared, read-only: no copy per rerun
def _points(_ctx: IndexContext, index_key: str) -> MapPoints:
    return _ctx.store.map_points()


def build_map(
    ctx: IndexContext, colour: str, show_dead: bool, matches: set[int], labels: dict[int, str]
) -> MapView:
    """The map for these settings; cached, so a click or a rerun reuses the figure instead of rebuilding it.
    `labels` (team labels) are part of the key: a label edited anywhere shows on the next run."""
    return _build_map(ctx, ctx.key, colour, show_dead, tuple(sorted(matches)), tuple(sorted(labels.items())))


@st.cache_resource(show_spinner=False, max_entries=16)
def _build_map(_ctx: IndexContext, index_key: str, colour: str, show_dead: bool, matches: tuple[int, ...],
               label_items: tuple[tuple[int, str], ...]) -> MapView:
    labels = dict(label_items)
    points = _points(_ctx, index_key)
    # numpy columns, numeric colours: plotly validates arrays at once but lists item by item (seconds at 32k points)
    dead = np.asarray(points.dead, dtype=bool)
    keep = np.flatnonzero(~dead if not show_dead else np.ones_like(dead))
    ids = np.asarray(points.feature_id, dtype=np.int64)[keep]
    density = np.asarray(points.density, dtype=np.float64)[keep]
    cluster = np.asarray(points.cluster, dtype=np.int64)[keep]
    names = [esc(labels.get(f, points.label[i])[:80]) for f, i in zip(ids.tolist(), keep.tolist(), strict=True)]
    size = max(3.0, min(9.0, 12.0 - 2.0 * math.log10(max(len(ids), 1))))  # big dots for few features, small for many
    marker: dict = dict(size=size, opacity=0.85, line=dict(width=0))
    if colour == "density":
        marker.update(color=np.log10(np.maximum(density, 1e-7)), colorscale="Viridis", showscale=True,
                      colorbar=dict(title="log₁₀ density", thickness=12))
    elif colour == "cluster":
        marker.update(color=cluster % len(PALETTE), colorscale=_discrete_scale(PALETTE), cmin=0,
                      cmax=len(PALETTE) - 1, showscale=False)
    else:
        hit = np.isin(ids, list(matches))
        marker.update(color=hit.astype(np.int8), colorscale=_discrete_scale([GREY, ORANGE]), cmin=0, cmax=1,
                      showscale=False, size=np.where(hit, size + 3, size * 0.7), opacity=np.where(hit, 0.95, 0.35))
    figure = go.Figure(go.Scattergl(
        x=np.asarray(points.x)[keep], y=np.asarray(points.y)[keep], mode="markers", marker=marker,
        customdata=np.column_stack([ids, cluster, density]), text=names,
        hovertemplate="<b>#%{customdata[0]:d}</b> %{text}<br>density %{customdata[2]:.2e} · cluster "
                      "%{customdata[1]:d}<extra></extra>",
    ))
    figure.update_layout(
        height=640, margin=dict(l=4, r=4, t=4, b=4), dragmode="pan", hovermode="closest",  # pan: a click selects
        xaxis=dict(visible=False), yaxis=dict(visible=False, scaleanchor="x", scaleratio=1),
    )
    return MapView(ids.tolist(), figure)


def _discrete_scale(colours: list[str]) -> list[list]:
    """A colorscale mapping the integers 0..n-1 (with cmin 0, cmax n-1) to exactly these colours."""
    n = len(colours)
    if n == 1:
        return [[0.0, colours[0]], [1.0, colours[0]]]
    scale = []
    for i, c in enumerate(colours):
        scale += [[max(0.0, (i - 0.5) / (n - 1)), c], [min(1.0, (i + 0.5) / (n - 1)), c]]
    return scale


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
