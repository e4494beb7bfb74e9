"""The feature map: a WebGL scatter of the features' UMAP positions (over a density grid when there are
too many to send), and reading the reader's click, box or lasso back to feature ids."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from backend.map_layout import MapPlan, Viewport, plan_map
from backend.payloads import MapPoints
from ui.charts import GREY, ORANGE, PALETTE
from ui.html import esc
from ui.resources import IndexContext

COLOUR_MODES = {"density": "Density (log)", "cluster": "Cluster", "search": "Search match"}
MAX_SELECTION = 5_000  # features a box or lasso hands on to a list (a bigger box: zoom in first)


@dataclass(frozen=True)
class MapView:
    """`feature_ids[i]` is point i of the scatter trace `figure.data[points_trace]`."""

    feature_ids: np.ndarray
    figure: go.Figure
    points_trace: int
    in_view: int  # features inside the viewport (all drawn unless decimated)
    decimated: bool
    viewport: Viewport


@dataclass(frozen=True)
class MapSelection:
    clicked: int | None  # one point clicked (opens its page)
    selected: list[int]  # box or lasso selection, drawn points only
    box: Viewport | None  # the box, when the reader dragged one


@st.cache_resource(show_spinner=False, max_entries=8)  # shared, read-only: no copy per rerun
def _points(_ctx: IndexContext, index_key: str) -> MapPoints:
    return _ctx.store.map_points()


def build_map(ctx: IndexContext, colour: str, show_dead: bool, matches: set[int], labels: dict[int, str],
              viewport: Viewport | None = None) -> MapView:
    """The map for these settings; cached, so a click or a rerun reuses the figure instead of rebuilding it.
    `labels` (the labels that differ from the automatic ones: team labels, best explanations) are part of
    the key: a label edited or an explanation run anywhere shows on the next run."""
    return _build_map(ctx, ctx.key, colour, show_dead, tuple(sorted(matches)), tuple(sorted(labels.items())),
                      viewport)


def features_in_box(ctx: IndexContext, box: Viewport, show_dead: bool) -> list[int]:
    """Every shown feature inside the box, drawn or not (a decimated map draws only some)."""
    points = _points(ctx, ctx.key)
    inside = box.contains(points.x, points.y) & (show_dead | ~points.dead)
    return points.feature_id[inside].tolist()


@st.cache_resource(show_spinner=False, max_entries=16)
def _build_map(_ctx: IndexContext, index_key: str, colour: str, show_dead: bool, matches: tuple[int, ...],
               label_items: tuple[tuple[int, str], ...], viewport: Viewport | None) -> MapView:
    points = _points(_ctx, index_key)
    hit = np.zeros(len(points), bool)
    hit[[m for m in matches if 0 <= m < len(points)]] = True
    plan = plan_map(points.x, points.y, show_dead | ~points.dead, viewport,
                    first=hit)
    figure = go.Figure()
    if plan.grid is not None:
        figure.add_trace(_density_trace(plan))
    figure.add_trace(_points_trace(points, plan.drawn, colour, hit, dict(label_items), plan.decimated))
    view = plan.viewport
    figure.update_layout(
        height=640, margin=dict(l=4, r=4, t=4, b=4), dragmode="pan", hovermode="closest",  # pan: a click selects
        xaxis=dict(visible=False, range=[view.x0, view.x1]),
        yaxis=dict(visible=False, range=[view.y0, view.y1], scaleanchor="x", scaleratio=1),
    )
    return MapView(points.feature_id[plan.drawn], figure, len(figure.data) - 1, len(plan.in_view), plan.decimated,
                   view)


def _points_trace(points: MapPoints, drawn: np.ndarray, colour: str, hit: np.ndarray, labels: dict[int, str],
                  decimated: bool) -> go.Scattergl:
    # numpy columns, numeric colours: plotly validates arrays at once but lists item by item (seconds at 32k points)
    ids, density, cluster = points.feature_id[drawn], points.density[drawn], points.cluster[drawn]
    names = [esc(labels.get(f, text)[:80]) for f, text in zip(ids.tolist(), points.label[drawn].tolist(), strict=True)]
    size = max(3.0, min(9.0, 12.0 - 2.0 * math.log10(max(len(ids), 1))))  # big dots for few features, small for many
    marker: dict = dict(size=size, opacity=0.6 if decimated else 0.85, line=dict(width=0))
    if colour == "density":
        marker.update(color=np.log10(np.maximum(density, 1e-7)), colorscale="Viridis", showscale=True,
                      colorbar=dict(title="log₁₀ density", thickness=12))
    elif colour == "cluster":
        marker.update(color=cluster % len(PALETTE), colorscale=_discrete_scale(PALETTE), cmin=0,
                      cmax=len(PALETTE) - 1, showscale=False)
    else:
        match = hit[drawn]
        marker.update(color=match.astype(np.int8), colorscale=_discrete_scale([GREY, ORANGE]), cmin=0, cmax=1,
                      showscale=False, size=np.where(match, size + 3, size * 0.7), opacity=np.where(match, 0.95, 0.35))
    return go.Scattergl(
        x=points.x[drawn], y=points.y[drawn], mode="markers", marker=marker,
        customdata=np.column_stack([ids, cluster, density]), text=names,
        hovertemplate="<b>#%{customdata[0]:d}</b> %{text}<br>density %{customdata[2]:.2e} · cluster "
                      "%{customdata[1]:d}<extra></extra>",
    )


def _density_trace(plan: MapPlan) -> go.Heatmap:
    """Every feature in view as counts per cell, under the sample of points that is drawn."""
    grid = plan.grid
    z = np.where(grid.counts > 0, np.log10(np.maximum(grid.counts, 1)) + 1, np.nan)  # empty cells transparent
    return go.Heatmap(x=grid.x, y=grid.y, z=z, colorscale="Greys", showscale=False, opacity=0.55, hoverinfo="skip",
                      zsmooth=False)


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
        return MapSelection(None, [], None)
    indices = [p.get("point_index", p.get("point_number")) for p in selection.get("points", [])
               if p.get("curve_number", view.points_trace) == view.points_trace]
    ids = [int(view.feature_ids[i]) for i in indices if isinstance(i, int) and 0 <= i < len(view.feature_ids)]
    boxes = selection.get("box") or []
    box = Viewport.from_box(boxes[0]) if boxes and isinstance(boxes[0], dict) else None
    dragged = bool(boxes) or bool(selection.get("lasso"))
    if len(ids) == 1 and not dragged:
        return MapSelection(ids[0], [], None)
    return MapSelection(None, ids, box)
