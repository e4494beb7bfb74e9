"""Map: every feature placed by the UMAP of its decoder direction. Hover for its label, click to open it,
draw a box or lasso to save a group as a list."""

from __future__ import annotations

import streamlit as st

from backend.map_layout import Viewport
from backend.payloads import FeatureQuery
from ui import url_state
from ui.frame import page_frame
from ui.html import md_escape
from ui.lists_view import MAX_QUICK_LIST, add_to_list_popover, features_summary_table, quick_list_url
from ui.map_view import COLOUR_MODES, MAX_SELECTION, build_map, features_in_box, read_selection
from ui.navigation import FEATURE, MAP, go, page_header, share_box

SCOPE = "map"
ctx = page_frame(MAP)
share_slot = page_header("Feature map", "UMAP of decoder directions. Hover a point for its label, click it to open "
                         "the feature, or pick the lasso or box tool (top right of the map) to save a group as a list.")

colour_col, search_col, dead_col = st.columns([2, 3, 1], vertical_alignment="bottom")
with search_col:
    search = url_state.url_text(SCOPE, "q", st.text_input, "Highlight features matching", placeholder="label or token")
with colour_col:
    default_colour = "search" if search.strip() else "density"
    colour = url_state.url_choice(SCOPE, "color", "Colour by", COLOUR_MODES, default_colour, st.segmented_control)
with dead_col:
    show_dead = url_state.url_toggle(SCOPE, "dead", "Show dead")

matches: set[int] = set()
if search.strip():
    found = ctx.catalog.list_features(FeatureQuery(search=search, hide_dead=not show_dead, limit=5000))
    matches = {f.feature_id for f in found.features}
    st.caption(f"{len(matches):,} features match '{md_escape(search)}'.")

viewport = url_state.lenient(lambda: Viewport.parse(v) if (v := url_state.get_str("view")) else None, None)
view = build_map(ctx, colour, show_dead, matches, ctx.catalog.label_overrides(), viewport)
event = st.plotly_chart(
    view.figure, width="stretch", on_select="rerun", selection_mode=("points", "box", "lasso"),
    key=f"feature_map.{colour}.{show_dead}.{search}.{viewport}", config={"displaylogo": False, "scrollZoom": True},
)
picked = read_selection(event, view)
if picked.clicked is not None:
    go(FEATURE, {"id": picked.clicked})
# a decimated map draws a sample: a box then means every feature inside it
selected = features_in_box(ctx, picked.box, show_dead) if picked.box and view.decimated else picked.selected
zoom_col, whole_col, count_col = st.columns([1.4, 1, 3], vertical_alignment="center")
if picked.box and zoom_col.button(f"Zoom to this box ({len(selected):,} features)", icon=":material/zoom_in:",
                                  width="stretch"):
    url_state.put("view", str(picked.box))
    st.rerun()
if viewport and whole_col.button("Whole map", icon=":material/zoom_out_map:", width="stretch"):
    url_state.put("view", None)
    st.rerun()
if view.decimated:
    count_col.caption(f"{view.in_view:,} features in view, {len(view.feature_ids):,} of them drawn over the "
                      "density of all (search matches first). Draw a box and zoom to it to see every point.")
if len(selected) > MAX_SELECTION:
    st.info(f"{len(selected):,} features selected: zoom to the box or draw a smaller one to save them as a list "
            f"(at most {MAX_SELECTION:,}).", icon=":material/select_all:")
elif selected:
    rows = ctx.catalog.name(list(ctx.store.feature_rows(selected).values()))
    info_col, share_col, save_col = st.columns([3, 1.3, 1.3], vertical_alignment="center")
    info_col.markdown(f"**{len(selected):,} features selected**")
    if quick_url := quick_list_url(sorted(selected)):
        share_col.link_button("Open as a quick list", quick_url, icon=":material/share:", width="stretch",
                              help="A link that carries these features; share it, nothing is saved.")
    else:
        share_col.caption(f"Too many for a link (at most {MAX_QUICK_LIST}); save them as a list.")
    with save_col:
        add_to_list_popover(ctx, sorted(selected), key="map_selection")
    features_summary_table(rows, max_height=320)
elif not view.decimated:
    st.caption(f"{len(view.feature_ids):,} features shown.")

share_box(share_slot)
