"""Live inference (prompt tracing and steering) behind one interface.

`get_inference()` returns the HTTP client when BACKEND_URL is set (token from BACKEND_TOKEN),
else the in-process engine; both implement `Inference` with the same request/response models
(backend.inference.schemas), so the UI cannot tell which one it has. One instance per process
per source (or URL) is shared by every UI session.
"""

from __future__ import annotations

import os
import threading

from backend.inference.errors import BACKEND_TOKEN_ENV
from backend.inference.protocols import IndexFeatureLookup, Inference

__all__ = ["IndexFeatureLookup", "Inference", "get_inference"]

BACKEND_URL_ENV = "BACKEND_URL"

_INSTANCES: dict[tuple[str, str, str], Inference] = {}
_INSTANCES_LOCK = threading.Lock()


def get_inference(source: str | None = None, index_path: str | None = None) -> Inference:
    """`source`: a source spec ('demo' by default) for the in-process engine; with BACKEND_URL set
    the service's own source is used. `index_path`: an index giving default steering strengths and
    densities; without one (or if it cannot be opened) those features ask for explicit values."""
    url = os.environ.get(BACKEND_URL_ENV, "").strip()
    if url:
        key = ("remote", url, "")
        with _INSTANCES_LOCK:
            if key not in _INSTANCES:
                from backend.inference.remote import RemoteInference

                _INSTANCES[key] = RemoteInference(url, os.environ.get(BACKEND_TOKEN_ENV) or None)
            return _INSTANCES[key]

    from backend.inference.engine import LocalInference
    from backend.inference.stats import open_feature_stats
    from backend.sources import SourceSpec, load_source

    spec = SourceSpec.parse(source or "demo")
    key = ("local", str(spec), index_path or "")
    with _INSTANCES_LOCK:
        if key not in _INSTANCES:
            loaded = load_source(spec)
            stats = open_feature_stats(index_path, loaded.d_sae, required=False)
            _INSTANCES[key] = LocalInference(loaded, stats)
        return _INSTANCES[key]
