"""What every page starts with (app.py has set the title and the wide layout): the shared CSS and the sidebar
(index picker and a short description of the source). Returns the index the page works on, or stops the page
after explaining why there is none and how to build one."""

from __future__ import annotations

import runpy
from contextlib import contextmanager
from contextvars import ContextVar

import streamlit as st

from ui import identity, index_choice, theme
from ui.feedback import show_flash
from ui.navigation import APP_FILE, PageRef
from ui.resources import IndexContext

_THROUGH_ENTRYPOINT: ContextVar[bool] = ContextVar("through_entrypoint", default=False)


@contextmanager
def entrypoint():
    """app.py runs the page inside this, so a page can tell whether app.py ran first."""
    token = _THROUGH_ENTRYPOINT.set(True)
    try:
        yield
    finally:
        _THROUGH_ENTRYPOINT.reset(token)


def _run_through_entrypoint() -> None:
    """The one work-around for Streamlit's pages/ folder (tests/test_pages.py pins the behaviour).

    A folder named pages/ beside the entrypoint puts Streamlit in its legacy multipage mode (MPA v1:
    `PagesManager.uses_pages_directory`) until st.navigation has run once in the process. In that mode it runs
    a page file on its own, without app.py: on a fresh server, the first link opened to any page but the
    root. (AppTest resets the mode before every run, so there it is every run.) No setting switches the mode
    off: `client.showSidebarNavigation` only hides its menu. So a page that finds app.py has not run runs
    app.py here: its st.navigation ends the mode for good and runs this same page, inside the frame, in this
    same run (a rerun would drop a click that came with it); then this bare run stops."""
    if not _THROUGH_ENTRYPOINT.get():
        runpy.run_path(str(APP_FILE), run_name="__main__")
        st.stop()


def page_frame(page: PageRef) -> IndexContext:
    _run_through_entrypoint()
    st.session_state["_current_page_path"] = "" if page.default else page.url_path  # for links without a browser
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
