"""Features: a sortable, filterable table of every feature; each row opens its feature page."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from backend.payloads import FeatureQuery
from ui import catalog, url_state
from ui.feedback import reported_errors
from ui.frame import page_frame
from ui.html import plain_token
from ui.navigation import FEATURE, FEATURE_LINK_COLUMN, FEATURES, feature_links, go, page_header, share_box

SCOPE = "features"
PAGE_SIZE = 200
SORTS = {"feature_id": "Id", "density": "Density", "max_act": "Max activation", "mean_act": "Mean activation",
         "label": "Label", "top_token": "Top token", "label_score": "Explanation F1", "output_score": "Output score",
         "input_score": "Input score", "calibrated_strength": "Calibrated strength"}

ctx = page_frame(FEATURES)
info = ctx.info
share_slot = page_header(
    "Features",
    f"{info.d_sae:,} features · {info.alive_features:,} alive · {info.dead_features:,} dead · "
    f"{info.tokens_counted:,} tokens indexed",
)

search_col, sort_col, order_col, random_col = st.columns([5, 2.2, 1.3, 1.8], vertical_alignment="bottom")
with search_col:
    search = url_state.url_text(SCOPE, "q", st.text_input, "Search labels and tokens",
                                placeholder="e.g. bracket, def, 42")
with sort_col:
    sort = url_state.url_choice(SCOPE, "sort", "Sort by", SORTS, "feature_id")
with order_col:
    descending = url_state.url_toggle(SCOPE, "desc", "Descending")
with random_col:
    if st.button("Random feature", icon=":material/casino:", width="stretch"):
        go(FEATURE, {"id": ctx.store.random_feature_id()})

low_col, high_col, f1_col, out_col, steer_col, dead_col, caption_col, pager_col = st.columns(
    [1.5, 1.5, 1.5, 1.5, 1.4, 1.1, 2.6, 1.1], vertical_alignment="bottom")
with low_col:
    min_density = url_state.url_number(SCOPE, "dmin", "Min density", 0.0, 0.0, 1.0, step=0.001, format="%g")
with high_col:
    max_density = url_state.url_number(SCOPE, "dmax", "Max density", 1.0, 0.0, 1.0, step=0.01, format="%g")
with f1_col:
    min_f1 = url_state.url_number(
        SCOPE, "f1min", "Min explanation F1", 0.0, 0.0, 1.0, step=0.05, format="%g",
        help="Only features whose best explanation scores at least this F1 on held-out tokens.")
with out_col:
    min_output = url_state.url_number(SCOPE, "omin", "Min output score", 0.0, 0.0, 1.0, step=0.01, format="%g",
                                      help="Steerability (Arad et al. 2025): how much adding the feature raises the "
                                           "probability of the tokens it promotes. High output scores steer well.")
with steer_col:
    steerable = url_state.url_toggle(SCOPE, "steerable", "Steerable only",
                                     help="Only features with a calibrated strength: adding them at that strength made "
                                          "the generated text evoke them at least 3x more than the default text.")
with dead_col:
    show_dead = url_state.url_toggle(SCOPE, "dead", "Show dead")
with pager_col:
    page_number = url_state.url_number(SCOPE, "page", "Page", 1, lo=1, step=1)
listing = None
with reported_errors():
    if min_density > max_density:
        st.warning("The minimum density is above the maximum; no feature can match.")
    query = FeatureQuery(
        search=search, min_density=min_density, max_density=max_density, hide_dead=not show_dead, sort=sort,
        descending=descending, limit=PAGE_SIZE, offset=(page_number - 1) * PAGE_SIZE, min_label_score=min_f1,
        min_output_score=min_output, steerable_only=steerable,
    )
    listing = catalog.list_features(ctx, query)

if listing is not None:
    pages = max(1, -(-listing.total // PAGE_SIZE))
    frame = pd.DataFrame(
        {
            "open": feature_links(f.feature_id for f in listing.features),
            "id": [f.feature_id for f in listing.features],
            "label": [("✎ " if f.by_team else "") + f.label for f in listing.features],
            "label source": [f.shown.source_text for f in listing.features],
            "explanation F1": [f.explanation_score for f in listing.features],
            "top token": [plain_token(f.row.top_token) for f in listing.features],
            "density": [f.row.density for f in listing.features],
            "max act": [f.row.max_act for f in listing.features],
            "mean act": [f.row.mean_act for f in listing.features],
            "output score": [f.row.output_score for f in listing.features],
            "input score": [f.row.input_score for f in listing.features],
            "calibrated strength": [f.row.calibrated_strength for f in listing.features],
            "cluster": [f.row.cluster for f in listing.features],
            "dead": [f.row.dead for f in listing.features],
        }
    )
    caption_col.caption(
        f"{listing.total:,} matching · page {page_number} of {pages} · select a row to open it "
        "(✎ = label set by the team; otherwise the best-scored explanation, else the top tokens)"
    )
    if page_number > pages:
        st.info(f"There are only {pages} pages of results.")
    max_act = max([f.row.max_act for f in listing.features], default=1.0) or 1.0
    event = st.dataframe(
        frame,
        hide_index=True,
        width="stretch",
        height=min(36 + 35 * len(frame), 640),
        on_select="rerun",
        selection_mode="single-row",
        key=f"features_table.{search}.{sort}.{descending}.{page_number}",
        column_config={
            "open": FEATURE_LINK_COLUMN,
            "id": st.column_config.NumberColumn("id", format="%d", width="small"),
            "label": st.column_config.TextColumn("label", width="large"),
            "label source": st.column_config.TextColumn(
                "label source", width="small",
                help="team label > best-scored explanation (its F1 on held-out tokens) > top tokens"),
            "explanation F1": st.column_config.NumberColumn("explanation F1", format="%.2f", width="small"),
            "top token": st.column_config.TextColumn("top token", width="small"),
            "density": st.column_config.NumberColumn("density", format="%.2e", width="small"),
            "max act": st.column_config.ProgressColumn("max act", format="%.2f", min_value=0.0, max_value=max_act),
            "mean act": st.column_config.NumberColumn("mean act", format="%.2f", width="small"),
            "output score": st.column_config.NumberColumn("output score", format="%.4f", width="small"),
            "input score": st.column_config.NumberColumn("input score", format="%.2f", width="small"),
            "calibrated strength": st.column_config.NumberColumn(
                "calibrated strength", format="%.2f", width="small",
                help="The Steer page's default add strength; empty: no rung of the ladder evoked the feature."),
            "cluster": st.column_config.NumberColumn("cluster", format="%d", width="small"),
            "dead": st.column_config.CheckboxColumn("dead", width="small"),
        },
    )
    if event.selection.rows:
        go(FEATURE, {"id": int(frame.iloc[event.selection.rows[0]]["id"])})

share_box(share_slot)
