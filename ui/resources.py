"""Long-lived objects shared by every session of this server process: the open index, the team store and
the inference engine. Opening them once (`st.cache_resource`) is what keeps switching features fast."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from backend.catalog import Catalog
from backend.inference import Inference, get_inference
from backend.payloads import IndexInfo
from backend.store import IndexStore
from backend.team import TeamStore


@dataclass(frozen=True)
class IndexContext:
    """The index a page works on, with what every page needs from it."""

    path: Path
    store: IndexStore
    team: TeamStore
    info: IndexInfo
    catalog: Catalog  # the label each feature shows (team > best explanation > automatic), for every page

    @property
    def key(self) -> str:
        return str(self.path)


def _close_context(ctx: IndexContext) -> None:
    ctx.store.close()


@st.cache_resource(show_spinner=False, max_entries=8, on_release=_close_context)  # evicted or stale: closed
def _open_index(path: str, modified_ns: int) -> IndexContext:
    """Keyed by modification time too, so an index rebuilt in place is reopened."""
    store = IndexStore.open(path)
    info = store.info()
    team = TeamStore.for_index(path, d_sae=info.d_sae, sae_sha256=info.sae_weights_sha256)
    catalog = Catalog.for_index(Path(path), store, team)
    return IndexContext(path=Path(path), store=store, team=team, info=info, catalog=catalog)


def open_index(path: Path) -> IndexContext:
    """Raises NotFoundError/UserError (one sentence) for a missing or unreadable file."""
    from backend.store import require_index_file

    require_index_file(path)
    with st.spinner(f"Opening {path.name}…"):
        return _open_index(str(path.resolve()), path.stat().st_mtime_ns)


def inference_for(ctx: IndexContext) -> Inference:
    """The engine for the index's own source. Not cached here: get_inference keeps one engine per source
    and index in the process (the CLI and the service share that layer), so a Streamlit cache on top
    only stacked a second copy of the same handle."""
    with st.spinner(f"Loading {ctx.info.model} and its SAE (first time only)…"):
        return get_inference(source=ctx.info.source, index_path=str(ctx.path))
