"""The query layer: every SQL statement the UI and services run against an index lives here.

An `IndexStore` opens one index read-only, keeps the vocabulary in memory, and returns the
typed payloads of backend/payloads.py. It also implements the inference engine's
`IndexFeatureLookup` protocol (max activation, density, calibrated strength per feature)."""

from __future__ import annotations

import atexit
import json
import random
import threading
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from backend.errors import NotFoundError, UserError, check_feature_id
from backend.index.meta import IndexMeta
from backend.payloads import (
    Example,
    FeaturePage,
    FeatureQuery,
    FeatureRow,
    FeatureTable,
    Histogram,
    IndexInfo,
    IntervalGroup,
    LogitEntry,
    MapPoints,
    Neighbour,
    TokenCell,
)
from backend.tokens import display_pieces, single_token_text

_ROW_COLUMNS = ("feature_id, label, top_token, density, max_act, mean_act, dead, cluster, output_score, input_score, "
                "calibrated_strength")
_STEER_COLUMNS = ("output_score", "input_score", "calibrated_multiplier", "calibrated_strength", "evoked_ratio")
_N_ROW_COLUMNS = len(_ROW_COLUMNS.split(","))


@dataclass(frozen=True)
class _PageColumns:
    """The `features` columns a feature page reads besides the `FeatureRow` ones; field names are column names."""

    fire_count: int
    hist_bound: float
    hist_counts: list[int]
    logit_pos_ids: list[int]
    logit_pos_values: list[float]
    logit_neg_ids: list[int]
    logit_neg_values: list[float]
    logit_hist_counts: list[int]
    logit_hist_lo: float
    logit_hist_hi: float
    cos_ids: list[int]
    cos_values: list[float]
    coact_ids: list[int]
    coact_values: list[float]
    umap_x: float
    umap_y: float


_PAGE_COLUMNS = ", ".join(f.name for f in fields(_PageColumns))


_OPEN_STORES: weakref.WeakSet[IndexStore] = weakref.WeakSet()


@atexit.register
def _close_open_stores() -> None:
    """A store still open at exit (a cached one, a test's) is closed here, so DuckDB's objects are freed before
    the interpreter tears its bindings down (else nanobind reports each one as leaked)."""
    for store in list(_OPEN_STORES):
        store.close()


def require_index_file(path: Path) -> Path:
    """The one "no index at ..." check, shared by the store, the UI and the CLI."""
    if not path.is_file():
        raise NotFoundError(f"No index at {path}; build one with 'python -m backend index --out {path}'.")
    return path


class IndexStore:
    def __init__(self, path: Path, con):
        self.path = path
        self._con = con
        # one cursor per thread (connections are not shared between threads), kept here rather than in a
        # threading.local so close() can close every one of them
        self._cursors: dict[int, object] = {}
        self._cursors_lock = threading.Lock()
        _OPEN_STORES.add(self)
        self.meta = IndexMeta.from_stored({k: json.loads(v) for k, v in con.execute("SELECT key, value FROM meta")
                                          .fetchall()})
        self.vocab: list[bytes] = [
            bytes(b) for (b,) in con.execute("SELECT token_bytes FROM vocab ORDER BY token_id").fetchall()
        ]
        self.d_sae = self.meta.d_sae
        self._n_hist_bins = self.meta.config.n_hist_bins
        self._n_intervals = self.meta.config.n_intervals
        self.has_steerability = bool(con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'steerability'").fetchone()[0])
        # every feature query reads this view: the features with their steerability (NULL in older indexes)
        steer = ", ".join(f"s.{c}" for c in _STEER_COLUMNS) if self.has_steerability else \
            ", ".join(f"NULL::FLOAT AS {c}" for c in _STEER_COLUMNS)
        join = "LEFT JOIN steerability s USING (feature_id)" if self.has_steerability else ""
        self._features = f"(SELECT f.*, {steer} FROM features f {join})"

    @classmethod
    def open(cls, path: str | Path) -> IndexStore:
        import duckdb

        path = require_index_file(Path(path))
        try:
            con = duckdb.connect(str(path), read_only=True)
            con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except duckdb.Error as exc:
            raise UserError(f"{path} is not a feature index this version can read ({type(exc).__name__}).") from exc
        try:
            return cls(path, con)
        except ValidationError as exc:  # its meta table lacks a field every index has
            con.close()
            raise UserError(f"{path} is not a feature index this version can read (meta: {exc.error_count()} "
                            "fields missing or malformed).") from exc

    def close(self) -> None:
        """Close every thread's cursor and the connection; closing twice is harmless."""
        with self._cursors_lock:
            cursors, self._cursors = list(self._cursors.values()), {}
        for cur in cursors:
            cur.close()
        self._con.close()
        _OPEN_STORES.discard(self)

    def __enter__(self) -> IndexStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _cursor(self):
        """DuckDB connections are not shared between threads; each thread gets its own cursor."""
        key = threading.get_ident()  # a dead thread's id may be reused: its cursor then serves the new thread
        cur = self._cursors.get(key)
        if cur is None:
            with self._cursors_lock:
                cur = self._cursors[key] = self._con.cursor()
        return cur

    def _check_id(self, feature_id: int) -> int:
        return check_feature_id(feature_id, self.d_sae, holder="this index")

    # ---- index-level -------------------------------------------------------------------
    def info(self) -> IndexInfo:
        dead = self._cursor().execute("SELECT count(*) FROM features WHERE dead").fetchone()[0]
        m = self.meta
        return IndexInfo(
            path=str(self.path),
            source=m.source,
            model=m.model,
            hook=m.hook,
            d_model=m.d_model,
            d_in=m.d_in or m.d_model,
            d_sae=m.d_sae,
            dataset=m.dataset,
            tokens_processed=m.tokens_processed,
            tokens_counted=m.tokens_counted,
            context_size=m.context_size,
            alive_features=self.d_sae - dead,
            dead_features=dead,
            logits_through_final_ln=m.logits_through_final_ln,
            built_at=m.built_at,
            build_seconds=m.build_seconds_total,
            sae_weights_sha256=m.sae_weights_sha256,
            schema_version=m.schema_version,
        )

    def token_text(self, token_id: int) -> str:
        return single_token_text(token_id, self.vocab)

    # ---- feature table -----------------------------------------------------------------
    def list_features(
        self, query: FeatureQuery, also_matching: Sequence[int] = (), label_scores: Mapping[int, float] | None = None
    ) -> FeatureTable:
        """Filtered, sorted, paged rows. A search matches the automatic label, the top token, the id, and the
        ids in `also_matching` (e.g. those whose team label matched), all under the same filters and order.
        `label_scores` (best explanation F1 per feature) serve the label-score sort and filter."""
        table, params = _scored_features(self._features, query, label_scores)
        where = ["density BETWEEN ? AND ?"]
        params += [query.min_density, query.max_density]
        if query.min_output_score > 0:
            where.append("output_score >= ?")
            params.append(query.min_output_score)
        if query.steerable_only:
            where.append("calibrated_strength IS NOT NULL")
        if query.min_label_score > 0:
            where.append("label_score >= ?")
            params.append(query.min_label_score)
        if query.hide_dead:
            where.append("NOT dead")
        if query.search.strip():
            text = query.search.strip()
            matches = ["label ILIKE ?", "top_token ILIKE ?", "feature_id IN (SELECT unnest(?::INTEGER[]))"]
            params += [f"%{text}%", f"%{text}%", [int(i) for i in also_matching]]
            if text.isdigit():
                matches.append("feature_id = ?")
                params.append(int(text))
            where.append(f"({' OR '.join(matches)})")
        clause = " AND ".join(where)
        order = f"{query.sort} {'DESC' if query.descending else 'ASC'} NULLS LAST, feature_id"  # pattern-checked
        cur = self._cursor()
        total = cur.execute(f"SELECT count(*) FROM {table} WHERE {clause}", params).fetchone()[0]
        rows = cur.execute(
            f"SELECT {_ROW_COLUMNS} FROM {table} WHERE {clause} ORDER BY {order} LIMIT ? OFFSET ?",
            [*params, query.limit, query.offset],
        ).fetchall()
        return FeatureTable(total=total, rows=[_row(r) for r in rows])

    def search(self, text: str, limit: int = 20) -> list[FeatureRow]:
        return self.list_features(FeatureQuery(search=text, limit=limit, sort="max_act", descending=True)).rows

    def random_feature_id(self, seed: int | None = None) -> int:
        ids = [r[0] for r in self._cursor().execute("SELECT feature_id FROM features WHERE NOT dead").fetchall()]
        if not ids:
            raise NotFoundError("This index has no live feature.")
        return random.Random(seed).choice(ids)

    def feature_rows(self, ids: list[int]) -> dict[int, FeatureRow]:
        if not ids:
            return {}
        rows = (
            self._cursor()
            .execute(
                f"SELECT {_ROW_COLUMNS} FROM {self._features} WHERE feature_id IN (SELECT unnest(?::INTEGER[]))",
                [list(ids)],
            )
            .fetchall()
        )
        return {r[0]: _row(r) for r in rows}

    # ---- IndexFeatureLookup protocol (used by inference) ---------------------------------
    def max_activation(self, ids: list[int]) -> dict[int, float]:
        return {i: r.max_act for i, r in self.feature_rows(ids).items()}

    def density(self, ids: list[int]) -> dict[int, float]:
        return {i: r.density for i, r in self.feature_rows(ids).items()}

    def calibrated_strength(self, ids: list[int]) -> dict[int, float]:
        """Ids with a calibrated add-steering strength (backend/index/steerability.py); others are left out."""
        return {i: r.calibrated_strength for i, r in self.feature_rows(ids).items() if r.calibrated_strength}

    def steerability_inputs(self) -> tuple[np.ndarray, np.ndarray]:
        """Every feature's max activation [d_sae] and the peak token of each top example [d_sae, top_k] (-1 = none):
        what backend/index/steerability.py needs to (re)score an index."""
        cur = self._cursor()
        max_acts = np.array([m for (m,) in cur.execute("SELECT max_act FROM features ORDER BY feature_id").fetchall()],
                            dtype=np.float32)
        k = self.meta.config.top_k
        peaks = np.full((self.d_sae, k), -1, dtype=np.int64)
        rows = cur.execute("SELECT feature_id, rank, token_ids[center + 1] FROM examples WHERE kind = 'top'").fetchall()
        if rows:
            f, r, t = (np.array(c, dtype=np.int64) for c in zip(*rows, strict=True))
            peaks[f, r] = t
        return max_acts, peaks

    # ---- one feature ---------------------------------------------------------------------
    def feature_page(self, feature_id: int) -> FeaturePage:
        self._check_id(feature_id)
        cur = self._cursor()
        f = cur.execute(f"SELECT {_ROW_COLUMNS}, {_PAGE_COLUMNS} FROM {self._features} WHERE feature_id = ?",
                        [feature_id]).fetchone()
        row, cols = _row(f[:_N_ROW_COLUMNS]), _PageColumns(*f[_N_ROW_COLUMNS:])
        top, by_interval = self._examples(feature_id)
        hist, bound = cols.hist_counts, cols.hist_bound
        hist_width = bound / self._n_hist_bins if bound else 0.0
        labels = self.feature_rows(list(cols.cos_ids) + list(cols.coact_ids))
        return FeaturePage(
            row=row,
            fire_count=cols.fire_count,
            top_examples=top,
            intervals=self._intervals(bound, hist, by_interval)[::-1],
            activation_hist=Histogram(lo=0.0, hi=hist_width * len(hist), counts=list(hist)),
            logit_pos=self._logits(cols.logit_pos_ids, cols.logit_pos_values),
            logit_neg=self._logits(cols.logit_neg_ids, cols.logit_neg_values),
            logit_hist=Histogram(lo=cols.logit_hist_lo, hi=cols.logit_hist_hi, counts=list(cols.logit_hist_counts)),
            logits_through_final_ln=self.meta.logits_through_final_ln,
            cosine_neighbours=_neighbours(cols.cos_ids, cols.cos_values, labels),
            coactivation_neighbours=_neighbours(cols.coact_ids, cols.coact_values, labels),
            umap_x=cols.umap_x,
            umap_y=cols.umap_y,
            d_sae=self.d_sae,
        )

    def _examples(self, feature_id: int) -> tuple[list[Example], dict[int, list[Example]]]:
        """The feature's top examples, and its interval samples by interval index."""
        examples = self._cursor().execute(
            """SELECT kind, interval_idx, value, row_id, pos, center, token_ids, act_index, act_values
                                  FROM examples WHERE feature_id = ? ORDER BY kind DESC, interval_idx, rank""",
            [feature_id],
        ).fetchall()
        top, by_interval = [], {}
        for kind, interval, value, row_id, pos, center, token_ids, act_index, act_values in examples:
            acts = dense_window(len(token_ids), act_index, act_values)
            ex = Example(
                value=value,
                row_id=row_id,
                pos=pos,
                center=center,
                interval=interval,
                tokens=[
                    TokenCell(text=t, token_id=i, act=a)
                    for t, i, a in zip(display_pieces(token_ids, self.vocab), token_ids, acts, strict=True)
                ],
            )
            (top if kind == "top" else by_interval.setdefault(interval, [])).append(ex)
        return top, by_interval

    def _intervals(self, bound: float, hist: list[int], by_interval: dict[int, list[Example]]) -> list[IntervalGroup]:
        """The published activation intervals, lowest first: each groups `per_interval` internal histogram bins."""
        width = bound / self._n_intervals if bound else 0.0
        per_interval = self._n_hist_bins // self._n_intervals
        n_published = -(-len(hist) // per_interval) if hist else 0
        return [
            IntervalGroup(
                index=j,
                lo=j * width,
                hi=(j + 1) * width,
                activations_in_interval=int(sum(hist[j * per_interval : (j + 1) * per_interval])),
                examples=by_interval.get(j, []),
            )
            for j in range(n_published)
        ]

    def _logits(self, ids: list[int], values: list[float]) -> list[LogitEntry]:
        return [LogitEntry(token=self.token_text(i), token_id=i, value=v) for i, v in zip(ids, values, strict=True)]

    # ---- map -------------------------------------------------------------------------------
    def map_points(self) -> MapPoints:
        cols = (
            self._cursor()
            .execute("""SELECT feature_id, umap_x, umap_y, cluster, density, label, dead
                    FROM features ORDER BY feature_id""")
            .fetchnumpy()
        )
        return MapPoints(
            feature_id=np.asarray(cols["feature_id"], np.int64), x=np.asarray(cols["umap_x"], np.float32),
            y=np.asarray(cols["umap_y"], np.float32), cluster=np.asarray(cols["cluster"], np.int64),
            density=np.asarray(cols["density"], np.float64), label=np.asarray(cols["label"], object),
            dead=np.asarray(cols["dead"], bool),
        )


def _row(r) -> FeatureRow:
    return FeatureRow(
        feature_id=r[0], label=r[1], top_token=r[2], density=r[3], max_act=r[4], mean_act=r[5], dead=r[6], cluster=r[7],
        output_score=r[8], input_score=r[9], calibrated_strength=r[10],
    )


def _neighbours(ids: list[int], scores: list[float], rows: dict[int, FeatureRow]) -> list[Neighbour]:
    return [
        Neighbour(feature_id=i, score=s, label=rows[i].label if i in rows else "")
        for i, s in zip(ids, scores, strict=True)
    ]


def dense_window(length: int, act_index: Sequence[int], act_values: Sequence[float]) -> list[float]:
    """One example window's activations, one per stored token: the examples table keeps only the non-zero ones."""
    acts = np.zeros(length, dtype=np.float32)
    acts[np.asarray(act_index, dtype=np.int64)] = np.asarray(act_values, dtype=np.float32)
    return acts.tolist()


def _scored_features(features: str, query: FeatureQuery, label_scores: Mapping[int, float] | None) -> tuple[str, list]:
    """The features view, joined with the label scores when the query sorts or filters by them."""
    if query.sort != "label_score" and query.min_label_score <= 0:
        return features, []
    scores = dict(label_scores or {})
    joined = f"""(SELECT f.*, s.label_score FROM {features} f LEFT JOIN
                 (SELECT unnest(?::INTEGER[]) AS feature_id, unnest(?::DOUBLE[]) AS label_score) s
                 USING (feature_id))"""
    return joined, [list(scores), list(scores.values())]
