"""Opening an index as the engine's `IndexFeatureLookup` (max activations, densities), if one is given."""

from __future__ import annotations

import logging

from backend.errors import UserError
from backend.inference.protocols import IndexFeatureLookup

log = logging.getLogger(__name__)


def open_feature_stats(index_path: str | None, d_sae: int, required: bool) -> IndexFeatureLookup | None:
    """The index at `index_path`, or None when there is none. `required` (an explicit CLI flag)
    turns an index that cannot be used into an error; otherwise the engine runs without it
    (explicit strengths, no density filter) and a warning says why."""
    if not index_path:
        return None
    try:
        return _open_checked(index_path, d_sae)
    except Exception as exc:  # the UI must come up even when the index is broken or from another source
        if required:
            if isinstance(exc, UserError):
                raise
            raise UserError(f"Could not open the index at {index_path} ({type(exc).__name__}: {exc}).") from exc
        log.warning("Inference runs without feature statistics (default strengths, density filter): %s", exc)
        return None


def _open_checked(index_path: str, d_sae: int) -> IndexFeatureLookup:
    from backend.store import IndexStore  # imported late: the store pulls in DuckDB

    store = IndexStore.open(index_path)
    index_d_sae = getattr(store, "d_sae", d_sae)
    if index_d_sae != d_sae:
        store.close()
        raise UserError(f"The index at {index_path} has {index_d_sae} features but the SAE has {d_sae}; "
                        "it was built for another source.")
    return store
