"""Panels of the trace page, rendered from a TraceResponse."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from backend.errors import UserError
from backend.inference.schemas import FeatureValue, PromptFeature, TokenInfo, TraceRequest, TraceResponse
from backend.tokens import visible_whitespace
from ui import charts, live
from ui.charts import EffectBar
from ui.html import Shade, StripToken, chip, esc, md_escape, plain_token, token_strip
from ui.navigation import FEATURE_LINK_COLUMN, feature_links
from ui.resources import IndexContext


def all_feature_ids(result: TraceResponse) -> list[int]:
    ids = {f.feature_id for t in result.token_features for f in t.features}
    ids |= {f.feature_id for f in result.top_by_max + result.top_by_sum}
    ids |= {d.feature_id for d in result.prediction.direct_effects}
    return sorted(ids)


def token_label(token: TokenInfo) -> str:
    return plain_token(token.text)


def prompt_strip(result: TraceResponse, labels: dict[int, str], selected: int) -> str:
    """Each token shaded by the highlighted feature (the request's first `feature_ids`); hover lists the
    token's top features too."""
    values = result.feature_traces[0].values if result.feature_traces else [0.0] * len(result.tokens)
    tokens = []
    for token, feats, value in zip(result.tokens, result.token_features, values, strict=True):
        tops = "; ".join(f"#{f.feature_id} {labels.get(f.feature_id, '')[:30]} {f.value:.2f}"
                         for f in feats.features[:3])
        tokens.append(StripToken(token.text, value, f"position {feats.position} · top: {tops}"))
    return token_strip(tokens, Shade(max(values, default=0.0) or 1.0), selected, wrap_lines=True, css_class="wrap")


def highlight_choices(result: TraceResponse, current: int | None) -> list[int]:
    ids = [f.feature_id for f in result.top_by_max]
    return ids if current is None or current in ids else [current, *ids]


_SUBSCRIPT = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")


def token_pills_format(result: TraceResponse):
    """Each pill shows its token and position: labels must be unique, since a pill's value travels as its label
    (a repeated token would otherwise select its first occurrence)."""
    return lambda i: md_escape(token_label(result.tokens[i])) + str(i).translate(_SUBSCRIPT)


def _link_frame(rows: list[dict], link_ids: list[int]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    frame.insert(0, "open", feature_links(link_ids))
    return frame



def token_features_table(features: list[FeatureValue], labels: dict[int, str]) -> None:
    if not features:
        st.caption("No feature is active at this token.")
        return
    frame = _link_frame(
        [{"feature": f.feature_id, "label": labels.get(f.feature_id, ""), "activation": f.value} for f in features],
        [f.feature_id for f in features],
    )
    st.dataframe(frame, hide_index=True, width="stretch", column_config={
        "open": FEATURE_LINK_COLUMN, "feature": st.column_config.NumberColumn(format="%d", width="small"),
        "activation": st.column_config.ProgressColumn(format="%.3f", min_value=0.0,
                                                      max_value=max(f.value for f in features)),
    })


def prompt_features_table(features: list[PromptFeature], result: TraceResponse, labels: dict[int, str]) -> None:
    if not features:
        st.caption("No feature passes the filters.")
        return
    rows = [
        {"feature": f.feature_id, "label": labels.get(f.feature_id, ""), "max": f.max_value,
         "at token": f"{f.max_position}: {token_label(result.tokens[f.max_position])}", "sum": f.sum_value,
         "active tokens": f.active_tokens, "density": f.density}
        for f in features
    ]
    st.dataframe(_link_frame(rows, [f.feature_id for f in features]), hide_index=True, width="stretch",
                 height=min(36 + 35 * len(rows), 460), column_config={
                     "open": FEATURE_LINK_COLUMN, "feature": st.column_config.NumberColumn(format="%d", width="small"),
                     "max": st.column_config.NumberColumn(format="%.3f"),
                     "sum": st.column_config.NumberColumn(format="%.3f"),
                     "density": st.column_config.NumberColumn(format="%.2e"),
                 })


def prompt_features_panel(result: TraceResponse, labels: dict[int, str], density: float) -> None:
    st.markdown("**The prompt's top features**")
    if result.hidden_by_density:
        st.caption(f"{result.hidden_by_density} active features denser than {density:g} are hidden.")
    if density and not result.density_filter_applied:
        st.caption("The density filter was not applied: the engine has no index statistics.")
    by_max, by_sum = st.tabs(["By max activation", "By total activation"])
    with by_max:
        prompt_features_table(result.top_by_max, result, labels)
    with by_sum:
        prompt_features_table(result.top_by_sum, result, labels)


def trace_or_last_token(ctx: IndexContext, request: TraceRequest) -> TraceResponse:
    """The trace; a token position past the prompt (a link's, after the prompt was edited) falls back to the
    last token, with a warning."""
    try:
        return live.trace(ctx, request)
    except UserError as exc:
        if request.position is None:
            raise
        st.warning(f"{md_escape(str(exc))} Showing the last token instead.")
        return live.trace(ctx, request.model_copy(update={"position": None}))


def prediction_panel(result: TraceResponse, labels: dict[int, str]) -> None:
    p = result.prediction
    after = token_label(result.tokens[p.position])
    alternatives = " ".join(
        f'{chip(a.token.text)}<span class="label-source">{a.probability:.1%}</span>' for a in p.alternatives[1:]
    )
    st.html(
        f'<div>After token {p.position} {chip(result.tokens[p.position].text)} the model predicts '
        f'{chip(p.token.text, "pos")} <b>{p.probability:.1%}</b></div>'
        f'<div style="margin-top:4px">Next most likely: {alternatives}</div>'
    )
    if not p.direct_effects:
        st.caption("No active feature at this position.")
        return
    bars = [EffectBar(f"#{d.feature_id} {esc(labels.get(d.feature_id, '')[:28])}", d.effect, d.activation)
            for d in p.direct_effects]
    st.plotly_chart(charts.direct_effect_bars(bars, esc(repr(p.token.text))), width="stretch",
                    config={"displayModeBar": False}, key=f"effects.{p.position}")
    st.caption(f"Direct effect: activation × decoder direction through the frozen final norm × unembedding of "
               f"{md_escape(repr(visible_whitespace(p.token.text)))}, the logit each feature adds at token "
               f"{p.position} ({md_escape(after)}).")


def feature_labels(ctx: IndexContext, result: TraceResponse) -> dict[int, str]:
    return ctx.catalog.labels_for(all_feature_ids(result))
