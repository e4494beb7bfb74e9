"""Saved concept vectors, kept with the team's data: their own table in the team SQLite file beside the index
(`cache/demo.duckdb` -> `cache/demo.team.sqlite`, the file backend/team.py opens), so every session sees them.

Same discipline as the team store: one connection and one short `BEGIN IMMEDIATE` transaction per call, WAL,
lock conflicts retried. `export_concepts`/`import_concepts` move them as one pydantic model (for a team export),
and `concept_safetensors` writes one as a safetensors file that names its hook in the metadata.
"""

from __future__ import annotations

import json
import math
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import numpy as np
from pydantic import BaseModel, Field, field_validator

from backend.concepts import Method
from backend.errors import NotFoundError, UserError
from backend.sqlite_io import SqliteFile
from backend.team import team_path_for

CONCEPTS_SCHEMA_VERSION = 1
MAX_NAME_CHARS = 100
T = TypeVar("T")

_DDL = """
CREATE TABLE IF NOT EXISTS concepts (
    concept_id      INTEGER PRIMARY KEY AUTOINCREMENT,
    name            TEXT NOT NULL,
    method          TEXT NOT NULL,
    hook_name       TEXT NOT NULL,
    layer           INTEGER NOT NULL,
    model           TEXT NOT NULL DEFAULT '',
    d_in            INTEGER NOT NULL,
    vector          BLOB NOT NULL,
    with_prompts    TEXT NOT NULL,
    without_prompts TEXT NOT NULL,
    author          TEXT NOT NULL DEFAULT '',
    created_at      TEXT NOT NULL,
    UNIQUE (name, hook_name)
)"""


class SavedConcept(BaseModel):
    concept_id: int | None = Field(None, description="set by the store")
    name: str = Field(min_length=1, max_length=MAX_NAME_CHARS)
    method: Method
    hook_name: str
    layer: int
    model: str = ""
    with_concept: list[str]
    without_concept: list[str] = Field(default_factory=list)
    vector: list[float] = Field(min_length=1)
    author: str = ""
    created_at: str = ""

    @field_validator("vector")
    @classmethod
    def _finite(cls, vector: list[float]) -> list[float]:
        if not all(math.isfinite(v) for v in vector):
            raise ValueError("The concept vector holds a value that is not finite (NaN or infinity).")
        return vector

    @property
    def norm(self) -> float:
        return float(np.linalg.norm(np.asarray(self.vector, dtype=np.float64)))


class ConceptSummary(BaseModel):
    concept_id: int
    name: str
    method: Method
    hook_name: str
    d_in: int
    norm: float
    author: str
    created_at: str


class ConceptsExport(BaseModel):
    schema_version: int = CONCEPTS_SCHEMA_VERSION
    concepts: list[SavedConcept]


class ConceptStore:
    def __init__(self, path: str | Path, d_in: int | None = None):
        """`d_in`, when given, lets the store refuse vectors of another width than the index's hook."""
        self.path = Path(path)
        self.d_in = d_in
        self._db = SqliteFile(self.path, "team data")  # the team's file: concepts travel with its labels and lists
        if not self.path.parent.is_dir():
            raise NotFoundError(f"The folder {self.path.parent} for team data does not exist.")
        self._db.write(lambda con: con.execute(_DDL), ddl=True)

    @classmethod
    def for_index(cls, index_path: str | Path, d_in: int | None = None) -> ConceptStore:
        return cls(team_path_for(index_path), d_in)

    # ---- concepts ---------------------------------------------------------------------------------------
    def _checked(self, concept: SavedConcept) -> SavedConcept:
        name = concept.name.strip()
        if not name:
            raise UserError("The concept needs a name.")
        if self.d_in is not None and len(concept.vector) != self.d_in:
            raise UserError(f"The concept '{name}' has {len(concept.vector)} values but this index's hook is "
                            f"{self.d_in} wide.")
        return concept.model_copy(update={"name": name, "created_at": concept.created_at or _now()})

    def save(self, concept: SavedConcept, replace: bool = False) -> SavedConcept:
        """Store a new concept (or, with `replace`, overwrite the one of the same name at the same hook)."""
        c = self._checked(concept)
        row = (c.name, c.method, c.hook_name, c.layer, c.model, len(c.vector),
               np.asarray(c.vector, dtype="<f4").tobytes(), json.dumps(c.with_concept), json.dumps(c.without_concept),
               c.author.strip(), c.created_at)

        def insert(con: sqlite3.Connection) -> int:
            if replace:
                con.execute("DELETE FROM concepts WHERE name = ? AND hook_name = ?", (c.name, c.hook_name))
            try:
                cur = con.execute("INSERT INTO concepts (name, method, hook_name, layer, model, d_in, vector, "
                                  "with_prompts, without_prompts, author, created_at) "
                                  "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
            except sqlite3.IntegrityError as exc:
                raise UserError(f"A concept named '{c.name}' already exists at {c.hook_name}; pick another "
                                "name.") from exc
            return int(cur.lastrowid)

        return self.get(self._db.write(insert))

    def get(self, concept_id: int) -> SavedConcept:
        rows = self._db.read(f"SELECT {_COLUMNS} FROM concepts WHERE concept_id = ?", (concept_id,))
        if not rows:
            raise NotFoundError(f"Concept {concept_id} does not exist (it may have been deleted).")
        return _concept(rows[0])

    def summaries(self) -> list[ConceptSummary]:
        rows = self._db.read("SELECT concept_id, name, method, hook_name, d_in, vector, author, created_at "
                             "FROM concepts ORDER BY lower(name), concept_id")
        return [ConceptSummary(concept_id=r[0], name=r[1], method=r[2], hook_name=r[3], d_in=r[4],
                               norm=float(np.linalg.norm(np.frombuffer(r[5], dtype="<f4"))), author=r[6],
                               created_at=r[7]) for r in rows]

    def delete(self, concept_id: int) -> None:
        if not self._db.write(lambda con: con.execute("DELETE FROM concepts WHERE concept_id = ?",
                                                   (concept_id,)).rowcount):
            raise NotFoundError(f"Concept {concept_id} does not exist (it may have been deleted).")

    def export_concepts(self) -> ConceptsExport:
        rows = self._db.read(f"SELECT {_COLUMNS} FROM concepts ORDER BY concept_id")
        return ConceptsExport(concepts=[_concept(r) for r in rows])

    def import_concepts(self, payload: ConceptsExport) -> list[int]:
        """Every concept of an export; one with the name of a stored one at the same hook replaces it."""
        if payload.schema_version > CONCEPTS_SCHEMA_VERSION:
            raise UserError(f"The concepts were exported by a newer version (schema {payload.schema_version}); "
                            "update this app to import them.")
        return [int(self.save(c.model_copy(update={"concept_id": None}), replace=True).concept_id or 0)
                for c in payload.concepts]


def merge_concept(con: sqlite3.Connection, concept: SavedConcept) -> bool:
    """Inside a caller's transaction (a team import): store `concept` unless one of the same name at the same
    hook is there with a `created_at` as new or newer. True when it was written."""
    con.execute(_DDL)
    have = con.execute("SELECT created_at FROM concepts WHERE name = ? AND hook_name = ?",
                       (concept.name, concept.hook_name)).fetchone()
    if have is not None and have[0] >= concept.created_at:
        return False
    con.execute("DELETE FROM concepts WHERE name = ? AND hook_name = ?", (concept.name, concept.hook_name))
    con.execute("INSERT INTO concepts (name, method, hook_name, layer, model, d_in, vector, with_prompts, "
                "without_prompts, author, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (concept.name, concept.method, concept.hook_name, concept.layer, concept.model, len(concept.vector),
                 np.asarray(concept.vector, dtype="<f4").tobytes(), json.dumps(concept.with_concept),
                 json.dumps(concept.without_concept), concept.author, concept.created_at))
    return True


_COLUMNS = ("concept_id, name, method, hook_name, layer, model, vector, with_prompts, without_prompts, author, "
            "created_at")


def _concept(r: tuple) -> SavedConcept:
    return SavedConcept(concept_id=r[0], name=r[1], method=r[2], hook_name=r[3], layer=r[4], model=r[5],
                        vector=np.frombuffer(r[6], dtype="<f4").astype(float).tolist(),
                        with_concept=json.loads(r[7]), without_concept=json.loads(r[8]), author=r[9], created_at=r[10])


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def export_concepts(team_path: str | Path) -> ConceptsExport:
    """Every concept in a team file (`backend.team.team_path_for(index)`), for a team export."""
    return ConceptStore(team_path).export_concepts()


def import_concepts(team_path: str | Path, payload: ConceptsExport, d_in: int | None = None) -> list[int]:
    """Store the concepts of an export in a team file; returns their ids there."""
    return ConceptStore(team_path, d_in).import_concepts(payload)


def concept_safetensors(concept: SavedConcept) -> bytes:
    """One tensor, `vector` [d_in] float32; the metadata names the hook (SAELens' `hook_name`), so the file
    can be added at the right place by any TransformerLens user."""
    import torch
    from safetensors.torch import save

    metadata = {"hook_name": concept.hook_name, "hook_layer": str(concept.layer), "name": concept.name,
                "method": concept.method, "model": concept.model, "norm": f"{concept.norm:.6g}",
                "with_concept": json.dumps(concept.with_concept),
                "without_concept": json.dumps(concept.without_concept)}
    return save({"vector": torch.tensor(concept.vector, dtype=torch.float32)}, metadata=metadata)
