"""All of a team's data as one JSON file: labels (with author, time and SAE weights digest), lists (with who made
them) and their items with notes, and (version 3) the saved concept vectors. `python -m backend team
export|import` and the Lists page use it.

Import merges into what is there, in one transaction (all or nothing): a label, list item or concept is replaced
only by a strictly newer one (a label by `updated_at`, an item by `added_at`, a concept by `created_at`), lists
are matched by name, concepts by name and hook. Importing a file twice changes nothing. Version 2 files (no
concepts) still import."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from backend.concepts_store import SavedConcept, export_concepts, merge_concept
from backend.errors import UserError
from backend.team import TeamLabel, TeamStore, upsert_label

FORMAT = "sae-explorer-team"
VERSION = 3  # 3: concepts; 2: lists with authors


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
    version: int = VERSION
    exported_at: str = ""
    sae_sha256: str = Field("", description="the weights digest of the index the file was exported from")
    labels: list[TeamLabel] = []
    lists: list[ListDump] = []
    concepts: list[SavedConcept] = []


class ImportSummary(BaseModel):
    labels_written: int
    lists_created: int
    items_written: int
    concepts_written: int = 0


def export_team(store: TeamStore) -> TeamDump:
    labels = store.get_labels(sorted(store.all_labels()))
    lists = [
        ListDump(name=t.name, description=t.description, created_at=t.created_at, created_by=t.created_by,
                 items=[ItemDump(**i.model_dump(exclude={"list_id"})) for i in store.list_items(t.list_id)])
        for t in store.lists()
    ]
    concepts = [c.model_copy(update={"concept_id": None}) for c in export_concepts(store.path).concepts]
    return TeamDump(exported_at=datetime.now(UTC).isoformat(timespec="seconds"), sae_sha256=store.sae_sha256,
                    labels=[labels[k] for k in sorted(labels)], lists=lists, concepts=concepts)


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


def import_team(store: TeamStore, dump: TeamDump, d_in: int | None = None) -> ImportSummary:
    """`d_in`, when given: the width of this index's hook, which every concept vector must have."""
    if dump.version > VERSION:
        raise UserError(f"The file was written by a newer version of this explorer (team format {dump.version}); "
                        "update this app to import it.")
    wrong = next((c for c in dump.concepts if d_in is not None and len(c.vector) != d_in), None)
    if wrong is not None:
        raise UserError(f"The concept '{wrong.name}' has {len(wrong.vector)} values but this index's hook is "
                        f"{d_in} wide: it belongs to another model.")
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
        concepts = sum(merge_concept(con, c) for c in dump.concepts)
        return ImportSummary(labels_written=labels, lists_created=lists, items_written=items,
                             concepts_written=concepts)

    return store._db.write(merge)  # one transaction: a failed import leaves the team data as it was


def import_file(store: TeamStore, path: str | Path, d_in: int | None = None) -> ImportSummary:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"No file at {path}.")
    return import_team(store, parse_dump(path.read_bytes()), d_in)
