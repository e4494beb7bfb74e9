"""Lists: the team's named lists of features, each with a note per feature, shared by everyone on this
server; edit notes, remove features, export as CSV or JSON."""

from __future__ import annotations

import streamlit as st

from ui import lists_view, url_state
from ui.feedback import flash, reported_errors
from ui.frame import page_frame
from ui.html import md_escape
from ui.identity import author_name
from ui.navigation import LISTS, page_header, share_box

SCOPE = "lists"

ctx = page_frame(LISTS)
share_slot = page_header("Lists", "Shared with everyone who browses this index on this server. Save features "
                         "from a feature page or a map selection.")
quick = url_state.lenient(lambda: lists_view.parse_quick_list(url_state.get_str("quick"), ctx.info.d_sae), [])
if quick:  # a list carried in the link: shown on its own, saved only on request
    lists_view.quick_list_panel(ctx, quick)
    share_box(share_slot)
    st.stop()
team_lists = ctx.team.lists()

side, main = st.columns([1, 3], gap="large")
picker_slot = side.container()  # the list picker sits above the "new list" form
with side:
    with st.form("new_list", border=True, clear_on_submit=True):
        st.markdown("**New list**")
        name = st.text_input("Name", placeholder="e.g. python syntax")
        description = st.text_input("Description (optional)")
        if st.form_submit_button("Create", icon=":material/add:"):
            with reported_errors():
                created = ctx.team.create_list(name, description, author=author_name())
                url_state.put("list", str(created.list_id))
                flash(f"Created '{md_escape(created.name)}'.")
                st.rerun()
    lists_view.team_transfer_panel(ctx)

if not team_lists:
    main.info("No list yet. Create one here, or save features from a feature page or the map.",
              icon=":material/bookmarks:")
    share_box(share_slot)
    st.stop()

ids = [t.list_id for t in team_lists]
by_id = {t.list_id: t for t in team_lists}
wanted = url_state.lenient(lambda: url_state.get_int("list", ids[0], lo=0), ids[0])
if wanted not in by_id:
    main.error(f"List {wanted} does not exist (it may have been deleted); showing '{md_escape(team_lists[0].name)}'.",
               icon=":material/link_off:")
    wanted = ids[0]
with picker_slot:
    chosen_id = url_state.url_widget(
        SCOPE, "list", wanted, None,
        lambda key: st.radio("Lists", ids, key=key,
                             format_func=lambda i: f"{md_escape(by_id[i].name)} ({by_id[i].item_count})"),
        url_state.encode_number,
    )
chosen = by_id[chosen_id]

with main:
    lists_view.list_panel(ctx, chosen)

share_box(share_slot)
