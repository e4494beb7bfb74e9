"""The explanations sidecar: `cache/demo.duckdb` -> `cache/demo.explanations.sqlite`, and all its SQL.

A separate store, like the team's (backend/team.py), because it is written while the dashboard reads the
index: an LLM run adds one feature at a time for hours and must resume after an interruption. SQLite in
WAL mode lets the dashboard read while a run writes; every write is one transaction, so an interrupted run
loses nothing it had finished and leaves nothing half-written. Team labels are never touched here."""

from __future__ import annotations

import sqlite3
import statistics
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from pydantic import TypeAdapter

from backend.errors import UserError
from backend.explain.models import Explanation, Judgment, MethodSummary, RuleSpec
from backend.explain.scoring import Score
from backend.sqlite_io import SqliteFile

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS explanations (
    feature_id  INTEGER NOT NULL,
    method      TEXT NOT NULL,
    model       TEXT NOT NULL DEFAULT '',
    status      TEXT NOT NULL CHECK (status IN ('ok', 'not_enough_data', 'failed')),
    text        TEXT NOT NULL DEFAULT '',
    reason      TEXT NOT NULL DEFAULT '',
    score       REAL,            -- detection F1 when status = 'ok': what explanations are ranked by
    detection   TEXT,            -- Score as JSON
    fuzzing     TEXT,            -- Score as JSON
    rule        TEXT,            -- RuleSpec as JSON (offline rules)
    judgments   TEXT NOT NULL DEFAULT '[]',
    created_at  TEXT NOT NULL,
    PRIMARY KEY (feature_id, method, model)
);
CREATE INDEX IF NOT EXISTS explanations_score ON explanations (feature_id, score);
CREATE TABLE IF NOT EXISTS runs (
    run_id      INTEGER PRIMARY KEY AUTOINCREMENT,
    method      TEXT NOT NULL,
    model       TEXT NOT NULL DEFAULT '',
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    heldout     TEXT NOT NULL DEFAULT '',
    settings    TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_COLUMNS = "feature_id, method, model, status, text, reason, score, detection, fuzzing, rule, judgments, created_at"
_JUDGMENTS = TypeAdapter(list[Judgment])


def explanations_path_for(index_path: str | Path) -> Path:
    """`cache/demo.duckdb` -> `cache/demo.explanations.sqlite` (beside the index, never inside it)."""
    index_path = Path(index_path)
    return index_path.with_name(f"{index_path.stem}.explanations.sqlite")


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class ExplanationStore:
    """Reads work on a missing file (no explanations yet); the first write creates it."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._db = SqliteFile(self.path, "explanations")
        self._created = False

    @classmethod
    def for_index(cls, index_path: str | Path) -> ExplanationStore:
        return cls(explanations_path_for(index_path))

    def _write(self, work) -> None:
        """`work(con)` in one transaction; the first write of this process creates the schema."""
        if not self.path.parent.is_dir():
            raise UserError(f"The folder {self.path.parent} for explanations does not exist.")

        def with_schema(con: sqlite3.Connection) -> None:
            if not self._created:
                for statement in _SCHEMA.split(";"):  # not executescript(): it would commit the transaction
                    if statement.strip():
                        con.execute(statement)
                con.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])
            work(con)

        self._db.write(with_schema, ddl=not self._created)
        self._created = True

    def _read(self, sql: str, params: list | tuple = ()) -> list[tuple]:
        return self._db.read(sql, params, missing_ok=True)  # no file yet: no explanations yet

    # ---- writes ------------------------------------------------------------------------------
    def put(self, explanation: Explanation) -> None:
        """Insert or replace one feature's explanation of one method and model, atomically."""
        self._write(lambda con: con.execute(_UPSERT, _row(explanation)))

    def replace_method(self, method: str, model: str, explanations: Iterable[Explanation]) -> None:
        """Swap every explanation of one method and model for a new set, in one transaction."""
        rows = [_row(e) for e in explanations]

        def swap(con: sqlite3.Connection) -> None:
            con.execute("DELETE FROM explanations WHERE method = ? AND model = ?", [method, model])
            con.executemany(_UPSERT, rows)

        self._write(swap)

    def start_run(self, method: str, model: str, heldout: str, settings: str) -> int:
        ids: list[int] = []

        def insert(con: sqlite3.Connection) -> None:
            cur = con.execute(
                "INSERT INTO runs (method, model, started_at, heldout, settings) VALUES (?, ?, ?, ?, ?)",
                [method, model, now(), heldout, settings],
            )
            ids.append(int(cur.lastrowid))

        self._write(insert)
        return ids[0]

    def finish_run(self, run_id: int) -> None:
        self._write(lambda con: con.execute("UPDATE runs SET finished_at = ? WHERE run_id = ?", [now(), run_id]))

    # ---- reads -------------------------------------------------------------------------------
    def done_ids(self, method: str, model: str, include_failed: bool = True) -> set[int]:
        """Features that already have a result of this method and model (what a resumed run skips)."""
        sql = "SELECT feature_id FROM explanations WHERE method = ? AND model = ?"
        if not include_failed:
            sql += " AND status != 'failed'"
        return {r[0] for r in self._read(sql, [method, model])}

    def for_feature(self, feature_id: int) -> list[Explanation]:
        """Every explanation of a feature, best score first (unscored ones last)."""
        rows = self._read(
            f"SELECT {_COLUMNS} FROM explanations WHERE feature_id = ? "
            "ORDER BY score IS NULL, score DESC, method, model",
            [feature_id],
        )
        return [_explanation(r) for r in rows]

    def for_features(self, ids: Iterable[int]) -> list[Explanation]:
        rows = self._read(f"SELECT {_COLUMNS} FROM explanations WHERE feature_id IN (SELECT value FROM json_each(?)) "
                          "ORDER BY feature_id, method, model", [_json_ids(ids)])
        return [_explanation(r) for r in rows]

    def best(self, ids: list[int]) -> dict[int, Explanation]:
        """The best-scored explanation of each id that has a scored one."""
        if not ids:
            return {}
        rows = self._read(
            f"""SELECT {_COLUMNS} FROM (
                    SELECT *, row_number() OVER (PARTITION BY feature_id ORDER BY score DESC, method, model) AS k
                    FROM explanations WHERE status = 'ok' AND score IS NOT NULL
                    AND feature_id IN (SELECT value FROM json_each(?))
                ) WHERE k = 1""",
            [_json_ids(ids)],
        )
        return {r[0]: _explanation(r) for r in rows}

    def best_texts(self) -> dict[int, str]:
        """feature id -> the text of its best-scored explanation, for every feature whose best one has text
        (the Map's hover labels: one query for all features instead of `best` over a million ids)."""
        rows = self._read(
            """SELECT feature_id, text FROM (
                    SELECT feature_id, text,
                           row_number() OVER (PARTITION BY feature_id ORDER BY score DESC, method, model) AS k
                    FROM explanations WHERE status = 'ok' AND score IS NOT NULL
                ) WHERE k = 1 AND text != ''""")
        return {int(f): t for f, t in rows}

    def best_scores(self) -> dict[int, float]:
        """feature id -> its best explanation score, for every scored feature (sorting and filtering)."""
        rows = self._read("SELECT feature_id, max(score) FROM explanations WHERE status = 'ok' GROUP BY feature_id")
        return {int(f): float(s) for f, s in rows if s is not None}

    def search(self, text: str, limit: int = 5000) -> list[int]:
        """Ids whose explanation text (of any status but failed) contains `text`, case-insensitively."""
        text = text.strip()
        if not text:
            return []
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = self._read(
            "SELECT DISTINCT feature_id FROM explanations WHERE status != 'failed' AND text LIKE ? ESCAPE '\\' "
            "ORDER BY feature_id LIMIT ?",
            [pattern, limit],
        )
        return [r[0] for r in rows]

    def summaries(self) -> list[MethodSummary]:
        rows = self._read("SELECT method, model, status, score FROM explanations ORDER BY method, model")
        groups: dict[tuple[str, str], list[tuple[str, float | None]]] = {}
        for method, model, status, score in rows:
            groups.setdefault((method, model), []).append((status, score))
        out = []
        for (method, model), items in groups.items():
            scores = [s for st, s in items if st == "ok" and s is not None]
            out.append(MethodSummary(
                method=method, model=model, scored=len(scores),
                not_enough_data=sum(st == "not_enough_data" for st, _ in items),
                failed=sum(st == "failed" for st, _ in items),
                median_f1=statistics.median(scores) if scores else None,
            ))
        return out


_UPSERT = f"INSERT OR REPLACE INTO explanations ({_COLUMNS}) VALUES ({', '.join('?' * 12)})"


def _json_ids(ids: Iterable[int]) -> str:
    return "[" + ",".join(str(int(i)) for i in ids) + "]"


def _row(e: Explanation) -> tuple:
    return (
        e.feature_id, e.method, e.model, e.status, e.text, e.reason, e.score,
        e.detection.model_dump_json() if e.detection else None,
        e.fuzzing.model_dump_json() if e.fuzzing else None,
        e.rule.model_dump_json() if e.rule else None,
        _JUDGMENTS.dump_json(e.judgments).decode(),
        e.created_at or now(),
    )


def _explanation(r: tuple) -> Explanation:
    feature_id, method, model, status, text, reason, _score, det, fuzz, rule, judgments, created = r
    return Explanation(
        feature_id=feature_id, method=method, model=model, status=status, text=text, reason=reason,
        detection=Score.model_validate_json(det) if det else None,
        fuzzing=Score.model_validate_json(fuzz) if fuzz else None,
        rule=RuleSpec.model_validate_json(rule) if rule else None,
        judgments=_JUDGMENTS.validate_json(judgments), created_at=created,
    )
