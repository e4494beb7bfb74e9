"""Saving features to the team's lists, from the feature page (one feature) or the map (a selection), and quick
lists: up to 150 features carried in a link (`lists?quick=3,17,42`), nothing stored until someone saves them."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from backend import team_transfer
from backend.catalog import NamedFeature
from backend.errors import UserError, check_feature_id
from backend.team import ItemEdit, ListItem, TeamList
from ui import url_state
from ui.feedback import flash, reported_errors
from ui.html import md_escape
from ui.identity import author_name
from ui.navigation import FEATURE_LINK_COLUMN, LISTS, feature_links, relative_url
from ui.resources import IndexContext

NEW_LIST = "New list…"
MAX_QUICK_LIST = 150  # ids in one link; longer links get unwieldy (Neuronpedia's quick lists stop here too)


def add_to_list_popover(ctx: IndexContext, feature_ids: list[int], key: str) -> None:
    single = len(feature_ids) == 1
    title = "Add to list" if single else f"Save {len(feature_ids):,} as a list"
    with st.popover(title, icon=":material/bookmark_add:", width="stretch"):
        lists = ctx.team.lists()
        with st.form(f"add_to_list.{key}", border=False):
            names = [NEW_LIST] + [t.name for t in lists]
            choice = st.selectbox("List", names, index=1 if lists and single else 0, key=f"{key}.list")
            new_name = st.text_input("…or a new list named", placeholder="e.g. python syntax", key=f"{key}.name")
            note = st.text_area("Note" + (" (for every feature)" if not single else ""), height=68, key=f"{key}.note")
            if st.form_submit_button("Save", icon=":material/bookmark_add:", type="primary"):
                with reported_errors():
                    target = _target_list(ctx, lists, choice, new_name)
                    ctx.team.add_many_to_list(target.list_id, feature_ids, note, author=author_name())
                    plural = "" if single else "s"
                    flash(f"Saved {len(feature_ids):,} feature{plural} to '{md_escape(target.name)}'.")
                    st.rerun()
        if single:
            containing = ctx.team.lists_containing(feature_ids[0])
            if containing:
                st.caption("Already in: " + ", ".join(md_escape(t.name) for t in containing))


def _target_list(ctx: IndexContext, lists: list[TeamList], choice: str, new_name: str) -> TeamList:
    """A typed name wins over the picked list (an existing list of that name is reused)."""
    name = new_name.strip()
    if name:
        existing = [t for t in lists if t.name == name]
        return existing[0] if existing else ctx.team.create_list(name, author=author_name())
    if choice == NEW_LIST:
        raise UserError("Type a name for the new list.")
    return next(t for t in lists if t.name == choice)


def parse_quick_list(text: str, d_sae: int) -> list[int]:
    """Feature ids from a quick-list link ("3,17,42"), in order, repeats dropped; one sentence when malformed."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not all(p.isdigit() for p in parts):
        raise UserError(f"The link's 'quick' must be feature ids separated by commas, like 3,17,42, not '{text}'.")
    ids = list(dict.fromkeys(int(p) for p in parts))
    if len(ids) > MAX_QUICK_LIST:
        raise UserError(f"A quick list holds at most {MAX_QUICK_LIST} features; this link has {len(ids)}. "
                        "Save them as a list instead.")
    for feature_id in ids:
        check_feature_id(feature_id, d_sae)
    return ids


def quick_list_url(feature_ids: list[int]) -> str | None:
    """A link to these features as a quick list, or None when there are too many for one link."""
    if not feature_ids or len(feature_ids) > MAX_QUICK_LIST:
        return None
    return relative_url(LISTS, {"quick": ",".join(str(i) for i in feature_ids)})


def quick_list_panel(ctx: IndexContext, feature_ids: list[int]) -> None:
    """`feature_ids` are checked against the SAE (`parse_quick_list`), so each has an index row."""
    st.markdown(f"#### Quick list · {len(feature_ids)} feature{'s' if len(feature_ids) != 1 else ''}")
    st.caption("Carried in this link and stored nowhere: copy the link to share it, or save it as a team list.")
    rows = ctx.store.feature_rows(feature_ids)
    features_summary_table(ctx.catalog.name([rows[i] for i in feature_ids]), max_height=640)
    add_to_list_popover(ctx, feature_ids, key="quick_list")


def features_summary_table(features: list[NamedFeature], max_height: int) -> None:
    """A short table of chosen features (a quick list, a map selection): link, id, label, density, max act."""
    st.dataframe(
        {"open": feature_links(f.feature_id for f in features), "feature": [f.feature_id for f in features],
         "label": [f.label for f in features], "density": [f.row.density for f in features],
         "max act": [f.row.max_act for f in features]},
        hide_index=True, width="stretch", height=min(36 + 35 * len(features), max_height),
        column_config={"open": FEATURE_LINK_COLUMN, "feature": st.column_config.NumberColumn(format="%d"),
                       "density": st.column_config.NumberColumn(format="%.2e"),
                       "max act": st.column_config.NumberColumn(format="%.2f")},
    )


def _items_frame(items: list[ListItem], labels: dict[int, str]) -> pd.DataFrame:
    return pd.DataFrame({
        "open": feature_links(i.feature_id for i in items),
        "feature": [i.feature_id for i in items],
        "label": [labels.get(i.feature_id, "") for i in items],
        "note": [i.note for i in items],
        "remove": [False] * len(items),
        "added": [i.added_at.replace("T", " ").removesuffix("+00:00") for i in items],
        "by": [i.added_by for i in items],
    })


def edits_from_editor(items: list[ListItem], edited: pd.DataFrame) -> list[ItemEdit]:
    """The rows the reader changed: ticked for removal, or with another note (only those get a new author)."""
    edits = []
    for item, note, remove in zip(items, edited["note"], edited["remove"], strict=True):
        if remove or (note or "") != item.note:
            edits.append(ItemEdit(feature_id=item.feature_id, note=note or "", remove=bool(remove)))
    return edits


def list_panel(ctx: IndexContext, chosen: TeamList) -> None:
    """One list: its items with editable notes (saved together), exports, and deleting it."""
    st.markdown(f"#### {md_escape(chosen.name)}")
    if chosen.description:
        st.caption(md_escape(chosen.description))
    items = ctx.team.list_items(chosen.list_id)
    labels = ctx.catalog.labels_for([i.feature_id for i in items])
    if not items:
        st.info("This list is empty.")
    else:
        with st.form(f"items.{chosen.list_id}", border=False):
            edited = st.data_editor(
                _items_frame(items, labels), hide_index=True, width="stretch", key=f"items_editor.{chosen.list_id}",
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
                    ctx.team.edit_list(chosen.list_id, edits_from_editor(items, edited), author=author_name())
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


def team_transfer_panel(ctx: IndexContext) -> None:
    """All team data of this index as one JSON file, and importing such a file (merged, newer entries win)."""
    with st.expander("All team data", icon=":material/database:"):
        st.caption("Every label, list, note and saved concept of this index in one JSON file: a backup, or a way "
                   "to move the team's work to another server.")
        st.download_button("Export all (JSON)", lambda: team_transfer.export_json(ctx.team),
                           f"{ctx.path.stem}.team.json", "application/json", icon=":material/download:",
                           width="stretch", key="team_export")
        upload = st.file_uploader("Import a team data file", type=["json"], key="team_import")
        if upload is not None and st.button("Import", icon=":material/upload:", key="team_import_go"):
            with reported_errors():
                summary = team_transfer.import_team(ctx.team, team_transfer.parse_dump(upload.getvalue()),
                                                    d_in=ctx.info.d_in)
                flash(f"Imported {summary.labels_written} labels, {summary.lists_created} new lists, "
                      f"{summary.items_written} list entries and {summary.concepts_written} concepts.")
                st.rerun()
