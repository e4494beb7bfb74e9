"""Feature: everything about one feature: label, statistics, examples, histograms, output tokens,
neighbours, a live test on the reader's own text, and links to steer with it or save it to a list."""

from __future__ import annotations

import streamlit as st

from backend.errors import UserError
from backend.payloads import FeatureQuery
from ui import catalog, url_state
from ui.charts import BLUE, ORANGE, RED
from ui.explanations_view import explanations_panel
from ui.feature_view import (
    examples_panel,
    logits_panel,
    neighbours_panel,
    steerability_panel,
    title_html,
    try_it_result,
)
from ui.feedback import flash, reported_errors
from ui.frame import page_frame
from ui.histogram_html import HistogramStyle, histogram_html
from ui.html import Shade, md_escape
from ui.identity import author_name
from ui.lists_view import add_to_list_popover
from ui.navigation import FEATURE, STEER, link, share_box

SCOPE = "feature"

ctx = page_frame(FEATURE)
try:
    feature_id = url_state.get_int("id")
    if feature_id is None:  # no id yet: the first live feature
        first = ctx.store.list_features(FeatureQuery(limit=1)).rows
        feature_id = first[0].feature_id if first else 0
    page = ctx.store.feature_page(feature_id)
except UserError as exc:
    st.error(md_escape(str(exc)), icon=":material/link_off:")
    link(FEATURE, "Open the first feature", {"id": 0}, icon=":material/arrow_forward:")
    st.stop()
url_state.put("id", str(feature_id))
row = page.row
team_label = ctx.team.get_labels([feature_id]).get(feature_id)
shown = catalog.shown_labels(ctx, [row])[feature_id]  # team > best-scored explanation > top tokens
label = shown.text

# ---- title row ---------------------------------------------------------------------------------
# one row that sizes each control to its label: fixed-ratio columns wrapped "Copy link" at 1280 px
with st.container(horizontal=True, vertical_alignment="center", gap="small"):
    st.html(title_html(feature_id, label, team_label, row.dead, shown, ctx.info.sae_weights_sha256), width="stretch")
    if feature_id > 0:
        link(FEATURE, f"#{feature_id - 1}", {"id": feature_id - 1}, icon=":material/chevron_left:",
             help="Previous feature")
    if feature_id < page.d_sae - 1:
        link(FEATURE, f"#{feature_id + 1}", {"id": feature_id + 1}, icon=":material/chevron_right:",
             icon_position="right", help="Next feature")
    if st.button("", icon=":material/casino:", help="Random live feature", key="random_feature"):
        url_state.put("id", str(ctx.store.random_feature_id()))
        url_state.put("text", None)
        st.rerun()
    share_slot = st.container(width="content")

if row.dead:
    st.warning("This feature never fired on the indexed tokens (dead): there is nothing to show but its weights.")

# ---- metrics and actions -----------------------------------------------------------------------
metric_cols = st.columns(5, border=True)
metric_cols[0].metric("Density", f"{row.density:.3%}" if row.density >= 1e-4 else f"{row.density:.2e}",
                      help="Fraction of indexed tokens (special tokens excluded) where it fires.")
metric_cols[1].metric("Max activation", f"{row.max_act:.3f}")
metric_cols[2].metric("Mean activation", f"{row.mean_act:.3f}", help="Mean over the tokens where it fires.")
metric_cols[3].metric("Fires on", f"{page.fire_count:,} tokens")
metric_cols[4].metric("Cluster", f"{row.cluster}", help="UMAP cluster of its decoder direction (see the map).")
if not row.dead:
    steerability_panel(row)

label_col, list_col, steer_col = st.columns([6, 1.5, 1.5], vertical_alignment="bottom")
# a row that sizes its buttons to their labels (fixed-ratio columns cut "Save" to "S…" at 1400 px)
with label_col, st.form(f"label_form.{feature_id}", border=False), \
        st.container(horizontal=True, vertical_alignment="bottom", gap="small"):
    new_label = st.text_input(
        "Label (shared with the team; overrides the automatic label everywhere)", value=label, max_chars=200,
        key=f"label_text.{feature_id}",
    )
    save = st.form_submit_button("Save", icon=":material/save:", width="content")
    reset = st.form_submit_button("Auto", icon=":material/restart_alt:", width="content",
                                  help="Remove the team label: the best-scored explanation shows again, "
                                       f"else the automatic label {md_escape(row.label)}")
    if save or reset:
        with reported_errors():
            ctx.team.set_label(feature_id, "" if reset else new_label, author=author_name())
            flash("Label reset to the automatic one." if reset or not new_label.strip() else "Label saved.")
            st.rerun()
with list_col:
    add_to_list_popover(ctx, [feature_id], key=f"feature.{feature_id}")
with steer_col:
    link(STEER, "Steer with it", {"f": feature_id, "prompt": url_state.get_str("text")}, icon=":material/tune:")

explanations_panel(catalog.explanations(ctx).for_feature(feature_id), shown)

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
    # inline SVG, not Plotly: its bundle was the largest share of a fresh load (benchmarks/bench_browser.py)
    st.html(histogram_html(page.activation_hist, HistogramStyle(
        f"Activation histogram · {page.fire_count:,} firings", "activation (non-zero only)", "tokens", ORANGE)))
    st.html(histogram_html(page.logit_hist, HistogramStyle(
        "Logit-weight histogram", "W_dec[f] · W_U", "vocabulary tokens", BLUE, RED)))
    logits_panel(page)
    st.markdown("**Neighbours**")
    neighbour_ids = [n.feature_id for n in page.cosine_neighbours + page.coactivation_neighbours]
    neighbours_panel(page, catalog.labels_for(ctx, neighbour_ids))

share_box(share_slot)
if text.strip():
    with try_slot, reported_errors():
        try_it_result(ctx, row, text)
