"""Which index the app shows: the URL's `index` name, else this session's last choice, else the default
(backend/offered.py decides what is offered). The sidebar lets the reader switch and describes the source."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from backend.errors import UserError
from backend.offered import DEFAULT_INDEX, INDEX_ENV, OfferedIndex, offered_indexes, resolve_index
from backend.sources import SourceSpec, sae_weights_digest
from ui import url_state
from ui.html import md_code, md_escape
from ui.resources import IndexContext, open_index

_SESSION_KEY = "chosen_index"


def chosen_index() -> OfferedIndex:
    """The URL's `index` name, else this session's last choice, else the default. Raises NotFoundError with
    one sentence (the same for every name that is not offered) before anything is opened."""
    name = url_state.get_str("index") or st.session_state.get(_SESSION_KEY) or ""
    return resolve_index(name)


def chosen_index_path() -> Path:
    return chosen_index().path


def index_param(entry: OfferedIndex) -> str | None:
    """What links carry as `index`: the name, nothing for the default index so links stay short."""
    return None if entry.name == offered_indexes()[0].name else entry.name


def current_index_param() -> str | None:
    try:
        return index_param(chosen_index())
    except UserError:
        return None


def remember(entry: OfferedIndex) -> None:
    """Keep the choice in this session (the sidebar menu drops query parameters) and in the URL."""
    st.session_state[_SESSION_KEY] = entry.name
    url_state.put("index", index_param(entry))


def sidebar_picker() -> None:
    """A menu of the offered names only: there is no box to type a path into."""
    offered = {e.name: e for e in offered_indexes()}
    try:
        current = chosen_index().name
    except UserError:
        current = None  # a bad link: the page shows why; the menu still offers the real ones
    names = list(offered)
    picked = st.sidebar.selectbox("Index", names, index=names.index(current) if current in names else None,
                                  key=f"index_pick.{current}", placeholder="pick an index")
    if picked is not None:
        remember(offered[picked])


def sidebar_description(ctx: IndexContext) -> None:
    info = ctx.info
    alive_share = info.alive_features / max(info.d_sae, 1)
    st.sidebar.markdown(
        f"**{md_escape(info.model)}** · {md_code(info.hook)}  \n"
        f"SAE: {info.d_sae:,} features ({info.alive_features:,} alive, {info.dead_features:,} dead; "
        f"{alive_share:.0%} alive)  \n"
        f"d_model {info.d_model:,} · context {info.context_size}  \n"
        f"{info.tokens_counted:,} tokens indexed  \n"
        f"Dataset: {md_escape(Path(info.dataset).name or info.dataset)}"
    )
    st.sidebar.caption(f"Built {info.built_at} in {info.build_seconds:.0f} s · source {md_code(info.source)}")
    current = _current_weights_digest(info.source)
    if info.sae_weights_sha256 and current and current != info.sae_weights_sha256:
        st.sidebar.warning(
            "This index was built from other SAE weights than the source's current ones, so its features may not "
            "match what tracing and steering compute. Rebuild it:  \n"
            f"{md_code(f'python -m backend index --source {info.source} --out {info.path}')}",
            icon=":material/history:",
        )


@st.cache_data(show_spinner=False, ttl=60)  # re-read now and then: weights can be retrained under a running app
def _current_weights_digest(source: str) -> str | None:
    try:
        return sae_weights_digest(SourceSpec.parse(source))
    except UserError:
        return None


def current_index() -> IndexContext | None:
    """The chosen index, or None after showing why it cannot be opened and how to build one."""
    try:
        entry = chosen_index()
    except UserError as exc:
        st.error(md_escape(str(exc)), icon=":material/link_off:")
        return None
    path = entry.path
    try:
        return open_index(path)
    except UserError as exc:
        st.error(md_escape(str(exc)), icon=":material/database_off:")
        if not path.exists():
            source = "demo" if path == DEFAULT_INDEX else "<source>"
            st.info(
                "Build an index with  \n"
                f"{md_code(f'python -m backend index --source {source} --out {path}')}  \n"
                "(the demo index takes a minute or two on a laptop; `./run.sh dashboard` builds it on first start). "
                f"Set \\${INDEX_ENV} or pick another index in the sidebar to open a different one."
            )
        return None
