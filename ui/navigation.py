"""The pages, links between them, and the "copy link" box. Every link carries the index being browsed."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import streamlit as st

from ui.index_choice import current_index_param

ROOT = Path(__file__).resolve().parent.parent
PAGES_DIR = ROOT / "pages"
APP_FILE = ROOT / "app.py"  # the entrypoint: `streamlit run app.py`


@dataclass(frozen=True)
class PageRef:
    name: str  # file name in pages/, without .py
    title: str
    icon: str
    url_path: str
    default: bool = False

    @property
    def file(self) -> str:
        """Absolute, so the pages resolve whichever script Streamlit started from."""
        return str(PAGES_DIR / f"{self.name}.py")


FEATURES = PageRef("features", "Features", ":material/table_rows:", "features", default=True)
FEATURE = PageRef("feature", "Feature", ":material/insights:", "feature")
MAP = PageRef("map", "Map", ":material/scatter_plot:", "map")
TRACE = PageRef("trace", "Trace", ":material/manage_search:", "trace")
STEER = PageRef("steer", "Steer", ":material/tune:", "steer")
CONCEPTS = PageRef("concepts", "Concepts", ":material/explore:", "concepts")
LISTS = PageRef("lists", "Lists", ":material/bookmarks:", "lists")
ALL_PAGES = [FEATURES, FEATURE, MAP, TRACE, STEER, CONCEPTS, LISTS]


def streamlit_pages() -> list[st.Page]:
    return [st.Page(p.file, title=p.title, icon=p.icon, url_path=p.url_path, default=p.default) for p in ALL_PAGES]


def with_index(params: dict[str, object]) -> dict[str, str]:
    """Parameters for a link: the given ones (None dropped) plus the current index when it is not the default."""
    out = {k: str(v) for k, v in params.items() if v is not None and v != ""}
    index = current_index_param()
    if index:
        out["index"] = index
    return out


def link(page: PageRef, label: str, params: dict[str, object] | None = None, **kwargs) -> None:
    """An in-app link (no page reload). `label` is Markdown: escape untrusted parts with md_escape."""
    st.page_link(page.file, label=label, query_params=with_index(params or {}), **kwargs)


def go(page: PageRef, params: dict[str, object] | None = None) -> None:
    st.switch_page(page.file, query_params=with_index(params or {}))


def relative_url(page: PageRef, params: dict[str, object] | None = None) -> str:
    """A URL relative to the app's root, for table link columns (they open in a new tab)."""
    query = urlencode(with_index(params or {}))
    path = "./" if page.default else page.url_path
    return f"{path}?{query}" if query else path


# A feature table's first column: each row's feature page, opened in a new tab.
FEATURE_LINK_COLUMN = st.column_config.LinkColumn("", display_text="open ↗", width="small")


def feature_links(ids: Iterable[int]) -> list[str]:
    """Values for a FEATURE_LINK_COLUMN."""
    return [relative_url(FEATURE, {"id": i}) for i in ids]


def current_url() -> str:
    """The full URL of what this session shows now, query parameters included."""
    base = st.context.url
    if not base:  # no browser (tests): a URL of the same shape on the default port
        page = st.session_state.get("_current_page_path", "")
        base = f"http://localhost:8501/{page}"
    query = urlencode(st.query_params.to_dict())
    return f"{base}?{query}" if query else base


def share_box(slot) -> None:
    """Fill `slot` (made at the top of the page) with the link to this exact view. Call it last, once
    every widget has written its value to the URL."""
    with slot, st.popover("Copy link", icon=":material/link:"):
        st.caption("Anyone on this server who opens this link sees this view.")
        st.code(current_url(), language=None, wrap_lines=True)


def page_header(title: str, caption: str = ""):
    """Title row with a slot at the right for `share_box`; returns the slot."""
    # the slot takes the width of its button (a fixed-ratio column wrapped "Copy link" at 1280 px)
    with st.container(horizontal=True, vertical_alignment="bottom"):
        with st.container():
            st.subheader(title, anchor=False)
            if caption:
                st.caption(caption)
        return st.container(width="content")
