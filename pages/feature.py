"""Feature: everything about one feature: label, statistics, examples, histograms, output tokens,
neighbours, a live test on the reader's own text, and links to steer with it or save it to a list."""

from __future__ import annotations

import streamlit as st

from ui import url_state
from ui.explanations_view import explanations_panel
from ui.feature_view import (
    examples_panel,
    histograms_panel,
    label_form,
    logits_panel,
    metrics_panel,
    neighbours_panel,
    open_feature,
    title_row,
    try_it_result,
)
from ui.feedback import reported_errors
from ui.frame import page_frame
from ui.html import Shade
from ui.lists_view import add_to_list_popover
from ui.navigation import FEATURE, STEER, link, share_box

SCOPE = "feature"

ctx = page_frame(FEATURE)
page = open_feature(ctx)
row, feature_id = page.row, page.row.feature_id
detail = ctx.catalog.label_detail(row)  # team > best-scored explanation > top tokens

share_slot = title_row(ctx, page, detail)
if row.dead:
    st.warning("This feature never fired on the indexed tokens (dead): there is nothing to show but its weights.")
metrics_panel(page)

label_col, list_col, steer_col = st.columns([6, 1.5, 1.5], vertical_alignment="bottom")
with label_col:
    label_form(ctx, row, detail.shown)
with list_col:
    add_to_list_popover(ctx, [feature_id], key=f"feature.{feature_id}")
with steer_col:
    link(STEER, "Steer with it", {"f": feature_id, "prompt": url_state.get_str("text")}, icon=":material/tune:")

explanations_panel(detail.explanations, detail.shown)

# ---- body ----------------------------------------------------------------------------------------
shade = Shade(scale=row.max_act or 1.0)
left, right = st.columns([3, 2], gap="large")
with left:
    examples_panel(page, shade)
    st.markdown("**Try it on your text**")
    with st.form("try_form", border=False):
        text = url_state.url_text(SCOPE, "text", st.text_area, "Text", height=90, label_visibility="collapsed",
                                  placeholder="Paste text to see this feature's activation on every token")
        st.form_submit_button("Run", icon=":material/play_arrow:")
    try_slot = st.container()  # filled last, so the model call never holds back the rest of the page

with right:
    histograms_panel(page)
    logits_panel(page)
    st.markdown("**Neighbours**")
    neighbour_ids = [n.feature_id for n in page.cosine_neighbours + page.coactivation_neighbours]
    neighbours_panel(page, ctx.catalog.labels_for(neighbour_ids))

share_box(share_slot)
if text.strip():
    with try_slot, reported_errors():
        try_it_result(ctx, row, text)
