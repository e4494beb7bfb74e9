"""Plotly figures. Small, titled, with hover values; Streamlit's theme colours the axes for light or dark."""

from __future__ import annotations

from dataclasses import dataclass

import plotly.graph_objects as go

from backend.payloads import Histogram

ORANGE = "#ff7f0e"
BLUE = "#1f77b4"
RED = "#d62728"
GREY = "#9e9e9e"
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
           "#7f7f7f", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94"]


def _compact(fig: go.Figure, height: int, title: str = "") -> go.Figure:
    fig.update_layout(
        height=height, margin=dict(l=8, r=8, t=34 if title else 8, b=8), title=dict(text=title, font=dict(size=13)),
        showlegend=False, bargap=0.05,
    )
    return fig


def _bin_centres(hist: Histogram) -> tuple[list[float], float]:
    edges = hist.edges
    width = edges[1] - edges[0] if len(edges) > 1 else 1.0
    return [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:], strict=True)], width


def activation_histogram(hist: Histogram, fire_count: int) -> go.Figure:
    centres, width = _bin_centres(hist)
    fig = go.Figure(go.Bar(
        x=centres, y=hist.counts, width=width, marker_color=ORANGE,
        hovertemplate="activation %{x:.3f}<br>%{y:,} tokens<extra></extra>",
    ))
    fig.update_xaxes(title_text="activation (non-zero only)")
    fig.update_yaxes(title_text="tokens")
    return _compact(fig, 230, f"Activation histogram · {fire_count:,} firings")


def logit_histogram(hist: Histogram) -> go.Figure:
    centres, width = _bin_centres(hist)
    fig = go.Figure(go.Bar(
        x=centres, y=hist.counts, width=width, marker_color=[BLUE if c >= 0 else RED for c in centres],
        hovertemplate="logit weight %{x:.3f}<br>%{y:,} vocabulary tokens<extra></extra>",
    ))
    fig.update_xaxes(title_text="W_dec[f] · W_U")
    fig.update_yaxes(title_text="tokens")
    return _compact(fig, 230, "Logit-weight histogram")


@dataclass(frozen=True)
class ActivationSeries:
    name: str
    tokens: list[str]
    values: list[float]
    dashed: bool
    colour: str


def steered_activation_lines(series: list[ActivationSeries]) -> go.Figure:
    fig = go.Figure()
    for s in series:
        fig.add_trace(go.Scatter(
            x=list(range(1, len(s.values) + 1)), y=s.values, name=s.name, mode="lines+markers",
            line=dict(color=s.colour, dash="dash" if s.dashed else "solid", width=2), marker=dict(size=5),
            customdata=s.tokens,
            hovertemplate="%{fullData.name}<br>token %{x}: %{customdata}<br>%{y:.3f}<extra></extra>",
        ))
    fig.update_xaxes(title_text="generated token")
    fig.update_yaxes(title_text="activation", rangemode="tozero")
    _compact(fig, 300, "Steered features along the generated text (solid: steered, dashed: default)")
    fig.update_layout(showlegend=True, legend=dict(orientation="h", y=-0.3))
    return fig


@dataclass(frozen=True)
class EffectBar:
    name: str  # already escaped for Plotly's HTML-ish labels
    effect: float
    activation: float


def direct_effect_bars(bars: list[EffectBar], predicted: str) -> go.Figure:
    ordered = bars[::-1]  # largest at the top
    fig = go.Figure(go.Bar(
        x=[b.effect for b in ordered], y=[b.name for b in ordered], orientation="h",
        marker_color=[BLUE if b.effect >= 0 else RED for b in ordered],
        customdata=[b.activation for b in ordered],
        hovertemplate="%{y}<br>effect %{x:.3f} · activation %{customdata:.3f}<extra></extra>",
    ))
    fig.update_xaxes(title_text=f"direct effect on the logit of {predicted}", zeroline=True)
    return _compact(fig, 90 + 24 * len(bars))
