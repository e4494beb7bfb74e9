"""All of a team's data as one JSON file: labels (with author, time and SAE weights digest), lists (with who made
them) and their items with notes. `python -m backend team export|import` and the Lists page use it.

Import merges into what is there, in one transaction (all or nothing): a label or list item is replaced only by
a strictly newer one (a label by `updated_at`, an item by `added_at`), lists are matched by name. Importing a file
twice changes nothing."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from backend.errors import UserError
from backend.team import TeamLabel, TeamStore, upsert_label

FORMAT = "sae-explorer-team"


class ItemDump(BaseModel):
    feature_id: int = Field(ge=0)
    note: str = ""
    added_by: str = ""
    added_at: str
    note_by: str = ""


class ListDump(BaseModel):
    name: str = Field(min_length=1)
    description: str = ""
    created_at: str
    created_by: str = ""
    items: list[ItemDump] = []


class TeamDump(BaseModel):
    format: Literal["sae-explorer-team"] = FORMAT
    version: int = 2
    exported_at: str = ""
    sae_sha256: str = Field("", description="the weights digest of the index the file was exported from")
    labels: list[TeamLabel] = []
    lists: list[ListDump] = []


class ImportSummary(BaseModel):
    labels_written: int
    lists_created: int
    items_written: int


def export_team(store: TeamStore) -> TeamDump:
    labels = store.get_labels(sorted(store.all_labels()))
    lists = [
        ListDump(name=t.name, description=t.description, created_at=t.created_at, created_by=t.created_by,
                 items=[ItemDump(**i.model_dump(exclude={"list_id"})) for i in store.list_items(t.list_id)])
        for t in store.lists()
    ]
    return TeamDump(exported_at=datetime.now(UTC).isoformat(timespec="seconds"), sae_sha256=store.sae_sha256,
                    labels=[labels[k] for k in sorted(labels)], lists=lists)


def export_json(store: TeamStore) -> str:
    return export_team(store).model_dump_json(indent=2)


def parse_dump(text: str | bytes) -> TeamDump:
    """One sentence for anything that is not a team file."""
    try:
        return TeamDump.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the file"
        raise UserError(f"This is not a team data file of this explorer ({where}: {first['msg']}).") from exc


def import_team(store: TeamStore, dump: TeamDump) -> ImportSummary:
    top = max([lab.feature_id for lab in dump.labels] + [i.feature_id for t in dump.lists for i in t.items],
              default=-1)
    if store.d_sae is not None and top >= store.d_sae:
        raise UserError(f"The file names feature {top}, but this SAE has features 0 to {store.d_sae - 1}: "
                        "it belongs to another index.")

    def merge(con: sqlite3.Connection) -> ImportSummary:
        labels = lists = items = 0
        for label in dump.labels:
            have = con.execute("SELECT updated_at FROM labels WHERE feature_id = ?", (label.feature_id,)).fetchone()
            if have is None or have[0] < label.updated_at:
                upsert_label(con, label)
                labels += 1
        for t in dump.lists:
            row = con.execute("SELECT list_id FROM lists WHERE name = ?", (t.name,)).fetchone()
            if row is None:
                row = con.execute("INSERT INTO lists (name, description, created_at, created_by) VALUES (?, ?, ?, ?) "
                                  "RETURNING list_id", (t.name, t.description, t.created_at, t.created_by)).fetchone()
                lists += 1
            for i in t.items:
                cur = con.execute(
                    "INSERT INTO list_items (list_id, feature_id, note, added_by, added_at, note_by) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(list_id, feature_id) DO UPDATE SET note = excluded.note, "
                    "added_by = excluded.added_by, added_at = excluded.added_at, note_by = excluded.note_by "
                    "WHERE list_items.added_at < excluded.added_at",
                    (row[0], i.feature_id, i.note, i.added_by, i.added_at, i.note_by))
                items += cur.rowcount
        return ImportSummary(labels_written=labels, lists_created=lists, items_written=items)

    return store._db.write(merge)  # one transaction: a failed import leaves the team data as it was


def import_file(store: TeamStore, path: str | Path) -> ImportSummary:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"No file at {path}.")
    return import_team(store, parse_dump(path.read_bytes()))
