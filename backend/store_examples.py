"""The query layer's other reader: every stored example of some features as padded arrays, for the
explainers (backend/explain/), which work on whole arrays rather than one feature page at a time."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from backend.store import IndexStore


@dataclass(frozen=True)
class ExampleWindows:
    """Every stored example of some features as padded arrays, for explainers that work on whole arrays.

    Windows are left-aligned: column 0 is the window's first token, `center` the token it is about,
    padding is token -1 with activation 0. `start_col` is the window's first column in its row."""

    feature_id: np.ndarray  # [n] int64
    top: np.ndarray  # [n] bool: a top example (else an interval sample)
    interval: np.ndarray  # [n] int64, -1 for top examples
    value: np.ndarray  # [n] float32
    center: np.ndarray  # [n] int64
    start_col: np.ndarray  # [n] int64
    tokens: np.ndarray  # [n, width] int64
    acts: np.ndarray  # [n, width] float32

    def rows_of(self, feature_id: int) -> np.ndarray:
        lo, hi = np.searchsorted(self.feature_id, [feature_id, feature_id + 1])
        return np.arange(lo, hi)


def example_windows(store: IndexStore, feature_ids: Sequence[int] | None = None) -> ExampleWindows:
    """The examples of `feature_ids` (all features when None), ordered by feature, top ones first."""
    where = "" if feature_ids is None else "WHERE feature_id IN (SELECT unnest(?::INTEGER[]))"
    params = [] if feature_ids is None else [[int(i) for i in feature_ids]]
    table = store._cursor().sql(
        f"""SELECT feature_id, kind = 'top' AS top, coalesce(interval_idx, -1) AS interval, value, center,
                   pos - center AS start_col, token_ids, act_index, act_values
            FROM examples {where} ORDER BY feature_id, kind DESC, interval_idx, rank""",
        params=params,
    ).to_arrow_table()
    width = store.meta.config.window_before + store.meta.config.window_after + 1
    n = table.num_rows
    tokens = np.full((n, width), -1, dtype=np.int64)
    acts = np.zeros((n, width), dtype=np.float32)
    if n:
        lists = table.column("token_ids").combine_chunks()
        lengths = np.diff(lists.offsets.to_numpy())
        rows = np.repeat(np.arange(n), lengths)
        cols = np.arange(len(rows)) - np.repeat(lists.offsets.to_numpy()[:-1], lengths)
        tokens[rows, cols] = lists.flatten().to_numpy()
        fired = table.column("act_index").combine_chunks()
        fired_rows = np.repeat(np.arange(n), np.diff(fired.offsets.to_numpy()))
        acts[fired_rows, fired.flatten().to_numpy()] = table.column("act_values").combine_chunks().flatten().to_numpy()
    col = lambda name, dtype: table.column(name).to_numpy().astype(dtype)  # noqa: E731
    return ExampleWindows(col("feature_id", np.int64), col("top", bool), col("interval", np.int64),
                          col("value", np.float32), col("center", np.int64), col("start_col", np.int64), tokens, acts)


def live_feature_ids(store: IndexStore) -> list[int]:
    rows = store._cursor().execute("SELECT feature_id FROM features WHERE NOT dead ORDER BY 1").fetchall()
    return [r[0] for r in rows]
