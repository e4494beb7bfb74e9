"""What every page starts with: wide layout, the shared CSS, and the sidebar (index picker and a short
description of the source). Returns the index the page works on, or stops the page after explaining
why there is none and how to build one."""

from __future__ import annotations

import streamlit as st

from ui import identity, index_choice, theme
from ui.feedback import show_flash
from ui.navigation import PageRef, streamlit_pages
from ui.resources import IndexContext


def _leave_page_folder_mode() -> None:
    """Until st.navigation has run once in a process, Streamlit takes pages/ for an old-style page folder and
    runs a page file on its own (no app.py, file names as the menu): that is the first link opened on a fresh
    server. Registering our pages switches that mode off; the rerun then goes through app.py like every
    later run, so widget state never straddles the two modes (it would be dropped at the switch)."""
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        st.navigation(streamlit_pages())
        st.rerun()


def page_frame(page: PageRef) -> IndexContext:
    _leave_page_folder_mode()
    st.session_state["_current_page_path"] = "" if page.default else page.url_path  # for links without a browser
    st.set_page_config(page_title="SAE feature explorer", page_icon=":material/biotech:", layout="wide")
    theme.inject()
    identity.require_sign_in()  # team mode: nothing of the index is shown before sign-in
    st.sidebar.markdown("### :material/biotech: SAE feature explorer")
    index_choice.sidebar_picker()
    ctx = index_choice.current_index()
    if ctx is None:
        st.stop()
    index_choice.sidebar_description(ctx)
    identity.sidebar_author_input()
    show_flash()
    return ctx
