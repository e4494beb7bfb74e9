"""The index's meta table as one typed model: what `write_index` records and every reader reads.

The stored form is unchanged: one row per top-level field, its value as JSON (backend/index/writer.py
write_meta). Fields added after the first indexes were built default to None, and only fields that were
given are written (`stored`), so an index from any earlier version reads back and writes out key for key.
Keys this version does not know (an index from a newer one) are left out on reading instead of failing."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from backend.payloads import SourceInfo


class _Recorded(BaseModel):
    # forbid: a writer passing a key with no field fails at once instead of losing it on the way to disk
    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def _known(cls, stored: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in stored.items() if k in cls.model_fields}

    def stored(self) -> dict[str, Any]:
        """The JSON values of the fields that were given, as the meta table keeps them."""
        return self.model_dump(mode="json", exclude_unset=True)


class RecordedConfig(_Recorded):
    """The `IndexConfig` (backend/index/build.py) a build ran with; tests/test_index_meta.py keeps the fields
    the same. Defaults are None for the options that later versions added."""

    tokens: int
    context_size: int | None
    batch_size: int
    top_k: int
    window_before: int
    window_after: int
    n_hist_bins: int
    n_intervals: int
    per_interval: int
    coact_rows_per_batch: int
    n_neighbours: int
    n_logits: int
    umap: bool
    device: str | None
    dtype: str | None
    dataset: str | None
    seed: int
    progress: bool
    checkpoint_every: int | None = None
    resume: bool | None = None
    steerability: bool | None = None
    exact_neighbours_up_to: int | None = None
    umap_fit_up_to: int | None = None
    activation_log_gb: float | None = None


class IndexMeta(_Recorded, SourceInfo):
    """Everything an index records about its build besides its tables: the source's `SourceInfo`, then the rest."""

    d_in: int | None = None  # older indexes lack it (they are residual-stream SAEs)
    sae_weights_sha256: str | None = None  # sources on disk only; older indexes lack it
    # what was read
    dataset: str
    tokens_requested: int
    tokens_processed: int
    tokens_counted: int  # special tokens excluded
    rows: int
    context_size: int
    coactivation_tokens: int
    excluded_token_ids: list[int]
    logits_through_final_ln: bool
    # how it was built
    config: RecordedConfig
    versions: dict[str, str]  # package -> version
    built_at: str
    schema_version: int
    windows_read_from: str | None = None  # "activation log" or "encoding again"
    neighbour_method: str | None = None
    umap_fitted_on: int | None = None
    # where the time and memory went (write_index's stages; build_seconds_total includes loading the source)
    build_seconds_stream: float
    build_seconds_finalize: float
    build_seconds_total: float
    build_seconds_neighbours: float | None = None
    build_seconds_logits: float | None = None
    build_seconds_map: float | None = None
    build_seconds_windows: float | None = None
    build_seconds_steerability: float | None = None
    build_seconds_write: float | None = None
    build_peak_rss_mb: dict[str, float] | None = None  # stage -> the process's peak RSS after it
    # a Ray build (backend/index/distributed.py)
    ray_shards: int | None = None
    ray_shards_reused: int | None = None
    build_seconds_merge: float | None = None

    @classmethod
    def from_stored(cls, stored: dict[str, Any]) -> IndexMeta:
        """Parse the meta table's rows (key -> decoded JSON value)."""
        known = cls._known(stored)
        if isinstance(known.get("config"), dict):
            known["config"] = RecordedConfig._known(known["config"])
        return cls.model_validate(known)

    def with_values(self, **values: Any) -> IndexMeta:
        """A copy with these fields set (validated, and written by `stored`)."""
        return type(self).model_validate({**self.stored(), **values})
