"""Which index the app shows: the URL's `index`, else this session's last choice, else $SAE_EXPLORER_INDEX,
else cache/demo.duckdb. The sidebar lets the reader switch and describes the chosen source."""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from backend.errors import UserError
from backend.sources import SourceSpec, sae_weights_digest
from ui import state
from ui.html import md_code, md_escape
from ui.resources import IndexContext, open_index

INDEX_ENV = "SAE_EXPLORER_INDEX"
CACHE_DIR = Path("cache")
DEFAULT_INDEX = CACHE_DIR / "demo.duckdb"
_SESSION_KEY = "chosen_index"
_OTHER = "Other path…"


def default_index() -> Path:
    return Path(os.environ.get(INDEX_ENV) or DEFAULT_INDEX)


def chosen_index_path() -> Path:
    raw = state.get_str("index") or st.session_state.get(_SESSION_KEY) or ""
    return Path(raw) if raw else default_index()


def index_param(path: Path) -> str | None:
    """What links carry as `index`: nothing for the default index, so links stay short."""
    return None if path == default_index() else str(path)


def available_indexes() -> list[Path]:
    """Index files in cache/ (team files and temp files left out), plus the default."""
    found = sorted(p for p in CACHE_DIR.glob("*.duckdb") if not p.name.startswith("."))
    default = default_index()
    return found if default in found else [default, *found]


def remember(path: Path) -> None:
    """Keep the choice in this session (the sidebar menu drops query parameters) and in the URL."""
    st.session_state[_SESSION_KEY] = str(path)
    state.put("index", index_param(path))


def sidebar_picker() -> None:
    current = chosen_index_path()
    options = [str(p) for p in available_indexes()]
    if str(current) not in options:
        options.append(str(current))
    options.append(_OTHER)
    picked = st.sidebar.selectbox("Index", options, index=options.index(str(current)), key=f"index_pick.{current}")
    if picked == _OTHER:
        typed = st.sidebar.text_input("Path to an index (.duckdb)", key="index_typed", placeholder="cache/other.duckdb")
        if typed.strip():
            current = Path(typed.strip())
    else:
        current = Path(picked)
    remember(current)


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
    path = chosen_index_path()
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
