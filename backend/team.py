"""Team data: labels that override the automatic ones, and named lists of features with a note each.

It lives in a SQLite file beside the read-only index (`cache/demo.duckdb` -> `cache/demo.team.sqlite`),
so every session on the server, in any thread or process, sees and edits the same data. SQLite rather
than DuckDB because DuckDB lets only one process hold a file open for writing, while SQLite in WAL mode
lets many processes read while one writes. Every call opens its own connection and runs one short
transaction (`BEGIN IMMEDIATE`, so writers queue instead of failing mid-way); lock conflicts that outlast
SQLite's busy timeout are retried, so concurrent edits are all kept."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, Field

from backend.errors import NotFoundError, UserError, check_feature_id
from backend.sqlite_io import SqliteFile

SCHEMA_VERSION = 2  # 2: who created a list / last wrote a note, the SAE weights digest of a label
MAX_LABEL_CHARS = 200
MAX_LIST_NAME_CHARS = 100
MAX_NOTE_CHARS = 2_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS labels (
    feature_id INTEGER PRIMARY KEY,
    text       TEXT NOT NULL,
    author     TEXT NOT NULL DEFAULT '',
    updated_at TEXT NOT NULL,
    sae_sha256 TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS lists (
    list_id     INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL,
    created_by  TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS list_items (
    list_id    INTEGER NOT NULL REFERENCES lists(list_id) ON DELETE CASCADE,
    feature_id INTEGER NOT NULL,
    note       TEXT NOT NULL DEFAULT '',
    added_by   TEXT NOT NULL DEFAULT '',
    added_at   TEXT NOT NULL,
    note_by    TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (list_id, feature_id)
);
"""
# columns added after version 1, for team files written by an older version (ALTER TABLE keeps every row)
_ADDED_COLUMNS = [("labels", "sae_sha256"), ("lists", "created_by"), ("list_items", "note_by")]

T = TypeVar("T")


class TeamLabel(BaseModel):
    feature_id: int
    text: str
    author: str
    updated_at: str
    sae_sha256: str = Field("", description="digest of the SAE weights the label was written against ('' unknown)")

    def possibly_stale(self, current_sha256: str | None) -> bool:
        """Written against other SAE weights than the index's current ones: the feature may mean something else."""
        return bool(self.sae_sha256 and current_sha256 and self.sae_sha256 != current_sha256)


def effective_label(automatic: str, team: TeamLabel | None) -> str:
    """The label shown and exported for a feature: a team label overrides the automatic one everywhere."""
    return team.text if team is not None else automatic


class TeamList(BaseModel):
    list_id: int
    name: str
    description: str
    created_at: str
    item_count: int = 0
    created_by: str = ""


class ListItem(BaseModel):
    list_id: int
    feature_id: int
    note: str
    added_by: str
    added_at: str
    note_by: str = ""


class ItemEdit(BaseModel):
    """One edited row of a list: its new note, or its removal."""

    feature_id: int
    note: str = ""
    remove: bool = False


class ExportedItem(BaseModel):
    feature_id: int
    label: str = Field(description="team label if set, else the automatic label the page passed in")
    note: str
    added_by: str
    added_at: str


class ListExport(BaseModel):
    """What the JSON export holds: the list, and its items with the label each feature had at export time."""

    list: TeamList
    items: list[ExportedItem]


def team_path_for(index_path: str | Path) -> Path:
    """`cache/demo.duckdb` -> `cache/demo.team.sqlite` (beside the index, never inside it)."""
    index_path = Path(index_path)
    return index_path.with_name(f"{index_path.stem}.team.sqlite")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _clean(text: str, limit: int, what: str) -> str:
    text = (text or "").strip()
    if len(text) > limit:
        raise UserError(f"The {what} is {len(text)} characters long; keep it to {limit}.")
    return text


class TeamStore:
    def __init__(self, path: str | Path, d_sae: int | None = None, sae_sha256: str | None = None):
        """`d_sae`, when given, lets the store refuse feature ids the index does not have; `sae_sha256` (the
        index's SAE weights digest) is stored with each label so a later change of weights flags it."""
        self.path = Path(path)
        self.d_sae = d_sae
        self.sae_sha256 = sae_sha256 or ""
        self._db = SqliteFile(self.path, "team data", foreign_keys=True)
        if not self.path.parent.is_dir():
            raise NotFoundError(f"The folder {self.path.parent} for team data does not exist.")
        self._db.write(_create_schema, ddl=True)

    @classmethod
    def for_index(cls, index_path: str | Path, d_sae: int | None = None, sae_sha256: str | None = None) -> TeamStore:
        return cls(team_path_for(index_path), d_sae, sae_sha256)

    def _check_feature(self, feature_id: int) -> int:
        return check_feature_id(feature_id, self.d_sae)

    # ---- labels ------------------------------------------------------------------------------
    def set_label(self, feature_id: int, text: str, author: str = "") -> TeamLabel | None:
        """Set the team label of a feature; an empty text removes it (the automatic label shows again)."""
        self._check_feature(feature_id)
        text = _clean(text, MAX_LABEL_CHARS, "label")
        if not text:
            self._db.write(lambda con: con.execute("DELETE FROM labels WHERE feature_id = ?", (feature_id,)))
            return None
        label = TeamLabel(feature_id=feature_id, text=text, author=author.strip(), updated_at=_now(),
                          sae_sha256=self.sae_sha256)
        self._db.write(lambda con: upsert_label(con, label))
        return label

    def get_labels(self, ids: list[int]) -> dict[int, TeamLabel]:
        if not ids:
            return {}
        rows = self._db.read(
            "SELECT feature_id, text, author, updated_at, sae_sha256 FROM labels WHERE feature_id IN "
            "(SELECT value FROM json_each(?))",
            (json.dumps([int(i) for i in ids]),),
        )
        return {r[0]: TeamLabel(feature_id=r[0], text=r[1], author=r[2], updated_at=r[3], sae_sha256=r[4])
                for r in rows}

    def all_labels(self) -> dict[int, str]:
        return dict(self._db.read("SELECT feature_id, text FROM labels"))

    def search_labels(self, text: str) -> list[int]:
        """Ids whose team label contains `text` (case-insensitive for ASCII)."""
        pattern = "%" + text.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = self._db.read("SELECT feature_id FROM labels WHERE text LIKE ? ESCAPE '\\' ORDER BY feature_id",
                             (pattern,))
        return [r[0] for r in rows]

    # ---- lists --------------------------------------------------------------------------------
    def create_list(self, name: str, description: str = "", author: str = "") -> TeamList:
        name = _clean(name, MAX_LIST_NAME_CHARS, "list name")
        if not name:
            raise UserError("The list needs a name.")
        description = _clean(description, MAX_NOTE_CHARS, "list description")

        def insert(con: sqlite3.Connection) -> int:
            try:
                cur = con.execute(
                    "INSERT INTO lists (name, description, created_at, created_by) VALUES (?, ?, ?, ?)",
                    (name, description, _now(), author.strip()),
                )
            except sqlite3.IntegrityError as exc:
                raise UserError(f"A list named '{name}' already exists; pick another name.") from exc
            return int(cur.lastrowid)

        return self.get_list(self._db.write(insert))

    def get_list(self, list_id: int) -> TeamList:
        rows = self._db.read(_LISTS_SELECT.format(where="WHERE l.list_id = ?"), (list_id,))
        if not rows:
            raise _missing_list(list_id)
        return _team_list(rows[0])

    def lists(self) -> list[TeamList]:
        rows = self._db.read(_LISTS_SELECT.format(where=""))
        return [_team_list(r) for r in rows]

    def delete_list(self, list_id: int) -> None:
        deleted = self._db.write(lambda con: con.execute("DELETE FROM lists WHERE list_id = ?", (list_id,)).rowcount)
        if not deleted:
            raise _missing_list(list_id)

    def add_to_list(self, list_id: int, feature_id: int, note: str = "", author: str = "") -> ListItem:
        """Add a feature (adding it again replaces its note)."""
        return self.add_many_to_list(list_id, [feature_id], note, author)[0]

    def add_many_to_list(
        self, list_id: int, feature_ids: list[int], note: str = "", author: str = ""
    ) -> list[ListItem]:
        for feature_id in feature_ids:
            self._check_feature(feature_id)
        note = _clean(note, MAX_NOTE_CHARS, "note")
        items = [
            ListItem(list_id=list_id, feature_id=f, note=note, added_by=author.strip(), added_at=_now(),
                     note_by=author.strip() if note else "")
            for f in dict.fromkeys(feature_ids)
        ]

        def upsert(con: sqlite3.Connection) -> None:
            if con.execute("SELECT 1 FROM lists WHERE list_id = ?", (list_id,)).fetchone() is None:
                raise _missing_list(list_id)
            con.executemany(
                "INSERT INTO list_items (list_id, feature_id, note, added_by, added_at, note_by) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(list_id, feature_id) DO UPDATE SET note = excluded.note, "
                "added_by = excluded.added_by, added_at = excluded.added_at, note_by = excluded.note_by",
                [(i.list_id, i.feature_id, i.note, i.added_by, i.added_at, i.note_by) for i in items],
            )

        self._db.write(upsert)
        return items

    def edit_list(self, list_id: int, edits: list[ItemEdit], author: str = "") -> None:
        """Apply a list's edited rows (new notes, removals) in one transaction: all land or none does."""
        notes = {e.feature_id: _clean(e.note, MAX_NOTE_CHARS, "note") for e in edits if not e.remove}

        def apply(con: sqlite3.Connection) -> None:
            if con.execute("SELECT 1 FROM lists WHERE list_id = ?", (list_id,)).fetchone() is None:
                raise _missing_list(list_id)
            for edit in edits:
                if edit.remove:
                    con.execute("DELETE FROM list_items WHERE list_id = ? AND feature_id = ?",
                                (list_id, edit.feature_id))
                    continue
                cur = con.execute("UPDATE list_items SET note = ?, note_by = ? WHERE list_id = ? AND feature_id = ?",
                                  (notes[edit.feature_id], author.strip(), list_id, edit.feature_id))
                if cur.rowcount == 0:
                    raise NotFoundError(f"Feature {edit.feature_id} is not in list {list_id}.")

        self._db.write(apply)

    def list_items(self, list_id: int) -> list[ListItem]:
        self.get_list(list_id)
        return self._items(list_id)

    def _items(self, list_id: int) -> list[ListItem]:
        rows = self._db.read(
            "SELECT list_id, feature_id, note, added_by, added_at, note_by FROM list_items WHERE list_id = ? "
            "ORDER BY added_at, feature_id",
            (list_id,),
        )
        return [ListItem(list_id=r[0], feature_id=r[1], note=r[2], added_by=r[3], added_at=r[4], note_by=r[5])
                for r in rows]

    def lists_containing(self, feature_id: int) -> list[TeamList]:
        where = "WHERE l.list_id IN (SELECT list_id FROM list_items WHERE feature_id = ?)"
        return [_team_list(r) for r in self._db.read(_LISTS_SELECT.format(where=where), (feature_id,))]

    # ---- export -------------------------------------------------------------------------------
    def export(self, list_id: int, auto_labels: dict[int, str] | None = None) -> ListExport:
        """The list with each feature's label: the team label if set, else `auto_labels` (from the index)."""
        team_list = self.get_list(list_id)
        items = self._items(list_id)
        team = self.get_labels([i.feature_id for i in items])
        auto = auto_labels or {}
        return ListExport(
            list=team_list,
            items=[
                ExportedItem(
                    feature_id=i.feature_id,
                    label=effective_label(auto.get(i.feature_id, ""), team.get(i.feature_id)),
                    note=i.note,
                    added_by=i.added_by,
                    added_at=i.added_at,
                )
                for i in items
            ],
        )

    def export_json(self, list_id: int, auto_labels: dict[int, str] | None = None) -> str:
        return self.export(list_id, auto_labels).model_dump_json(indent=2)

    def export_csv(self, list_id: int, auto_labels: dict[int, str] | None = None) -> str:
        exported = self.export(list_id, auto_labels)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        fields = list(ExportedItem.model_fields)
        writer.writerow(fields)
        for item in exported.items:
            writer.writerow([getattr(item, f) for f in fields])
        return buffer.getvalue()


def _create_schema(con: sqlite3.Connection) -> None:
    # statement by statement: executescript() would commit the transaction _write opened
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            con.execute(statement)
    for table, column in _ADDED_COLUMNS:
        if column not in {row[1] for row in con.execute(f"PRAGMA table_info({table})")}:
            con.execute(f"ALTER TABLE {table} ADD COLUMN {column} TEXT NOT NULL DEFAULT ''")
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def upsert_label(con: sqlite3.Connection, label: TeamLabel) -> None:
    con.execute(
        "INSERT INTO labels (feature_id, text, author, updated_at, sae_sha256) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT(feature_id) DO UPDATE SET text = excluded.text, author = excluded.author, "
        "updated_at = excluded.updated_at, sae_sha256 = excluded.sae_sha256",
        (label.feature_id, label.text, label.author, label.updated_at, label.sae_sha256),
    )


# every read of lists counts items the same way; {where} narrows it
_LISTS_SELECT = ("SELECT l.list_id, l.name, l.description, l.created_at, count(i.feature_id), l.created_by "
                 "FROM lists l LEFT JOIN list_items i USING (list_id) {where} GROUP BY l.list_id "
                 "ORDER BY lower(l.name)")


def _missing_list(list_id: int) -> NotFoundError:
    return NotFoundError(f"List {list_id} does not exist (it may have been deleted).")


def _team_list(row: tuple) -> TeamList:
    return TeamList(list_id=row[0], name=row[1], description=row[2], created_at=row[3], item_count=row[4],
                    created_by=row[5])
