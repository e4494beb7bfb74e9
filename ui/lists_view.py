"""Saving features to the team's lists, from the feature page (one feature) or the map (a selection)."""

from __future__ import annotations

import streamlit as st

from backend.errors import UserError
from backend.team import TeamList
from ui.feedback import flash, reported_errors
from ui.html import md_escape
from ui.identity import author_name
from ui.resources import IndexContext

NEW_LIST = "New list…"


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
        return existing[0] if existing else ctx.team.create_list(name)
    if choice == NEW_LIST:
        raise UserError("Type a name for the new list.")
    return next(t for t in lists if t.name == choice)
