"""Lists: the team's named lists of features, each with a note per feature, shared by everyone on this
server; edit notes, remove features, export as CSV or JSON."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from backend.errors import UserError
from ui import catalog, lists_view, url_state
from ui.feedback import flash, reported_errors
from ui.frame import page_frame
from ui.html import md_escape
from ui.identity import author_name
from ui.navigation import FEATURE_LINK_COLUMN, LISTS, feature_links, page_header, share_box

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
    st.markdown(f"#### {md_escape(chosen.name)}")
    if chosen.description:
        st.caption(md_escape(chosen.description))
    items = ctx.team.list_items(chosen.list_id)
    labels = catalog.labels_for(ctx, [i.feature_id for i in items])
    if not items:
        st.info("This list is empty.")
    else:
        table = pd.DataFrame({
            "open": feature_links(i.feature_id for i in items),
            "feature": [i.feature_id for i in items],
            "label": [labels.get(i.feature_id, "") for i in items],
            "note": [i.note for i in items],
            "remove": [False] * len(items),
            "added": [i.added_at.replace("T", " ").removesuffix("+00:00") for i in items],
            "by": [i.added_by for i in items],
        })
        with st.form(f"items.{chosen.list_id}", border=False):
            edited = st.data_editor(
                table, hide_index=True, width="stretch", key=f"items_editor.{chosen.list_id}",
                disabled=["open", "feature", "label", "added", "by"],
                column_config={
                    "open": FEATURE_LINK_COLUMN,
                    "feature": st.column_config.NumberColumn(format="%d", width="small"),
                    "label": st.column_config.TextColumn(width="medium"),
                    "note": st.column_config.TextColumn("note (editable)", width="large", max_chars=2000),
                    "added": st.column_config.TextColumn("added (UTC)", width="small"),
                    "by": st.column_config.TextColumn("added by", width="small"),
                    "remove": st.column_config.CheckboxColumn("remove", width="small"),
                },
            )
            if st.form_submit_button("Save changes", icon=":material/save:"):
                with reported_errors():
                    for item, note, remove in zip(items, edited["note"], edited["remove"], strict=True):
                        if remove:
                            ctx.team.remove_from_list(chosen.list_id, item.feature_id)
                        elif (note or "") != item.note:
                            ctx.team.set_note(chosen.list_id, item.feature_id, note or "", author=author_name())
                    flash("Changes saved.")
                    st.rerun()

    csv_col, json_col, delete_col = st.columns([1, 1, 2], vertical_alignment="bottom")
    slug = "".join(c if c.isalnum() else "-" for c in chosen.name).strip("-") or f"list-{chosen.list_id}"
    # callables: an export is built when its button is clicked, not on every run of the page
    csv_col.download_button("Export CSV", lambda: ctx.team.export_csv(chosen.list_id, labels), f"{slug}.csv",
                            "text/csv", icon=":material/download:", width="stretch")
    json_col.download_button("Export JSON", lambda: ctx.team.export_json(chosen.list_id, labels), f"{slug}.json",
                             "application/json", icon=":material/download:", width="stretch")
    with delete_col.popover("Delete list", icon=":material/delete:"):
        st.caption(f"Deletes '{md_escape(chosen.name)}' and its {chosen.item_count} notes for everyone.")
        if st.button("Delete for everyone", type="primary", key=f"delete.{chosen.list_id}"):
            try:
                ctx.team.delete_list(chosen.list_id)
            except UserError as exc:
                st.error(md_escape(str(exc)))
            else:
                url_state.put("list", None)
                flash(f"Deleted '{md_escape(chosen.name)}'.")
                st.rerun()

share_box(share_slot)
