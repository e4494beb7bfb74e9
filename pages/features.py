"""Features: a sortable, filterable table of every feature; each row opens its feature page."""

from __future__ import annotations

import streamlit as st

from backend.payloads import FeatureQuery
from ui import url_state
from ui.features_view import PAGE_SIZE, SORTS, features_table
from ui.feedback import reported_errors
from ui.frame import page_frame
from ui.navigation import FEATURE, FEATURES, go, page_header, share_box

SCOPE = "features"

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
    listing = ctx.catalog.list_features(query)

if listing is not None:
    picked = features_table(listing, page_number, caption_col,
                            key=f"features_table.{search}.{sort}.{descending}.{page_number}")
    if picked is not None:
        go(FEATURE, {"id": picked})

share_box(share_slot)
