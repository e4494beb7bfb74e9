"""The index's DuckDB layout and its writer. Only this module and the query layer (backend/store.py,
backend/store_examples.py) speak SQL.

Rows are ordered by feature id so a point lookup touches one small block. The file is
written under a temporary name and renamed at the end: a failed build leaves the previous
index as it was and no half-written file behind."""

from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

SCHEMA_VERSION = 1
WRITE_MEMORY_LIMIT = "256MB"  # the tables arrive in key order: DuckDB sorts nothing and streams row groups out

DDL = """
CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR);
"""

# The features, examples and vocab tables are created from the Arrow tables of backend/index/tables.py
# (CREATE TABLE AS ... ORDER BY; the examples table streamed in key order), so their columns are defined in one place.


@contextmanager
def atomic_index_file(out: Path):
    """Yield a DuckDB connection to a temporary file; rename it to `out` only on success."""
    import duckdb

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    # DuckDB would buffer up to 80% of RAM while sorting the tables in; past this it spills beside the file
    spill = tmp.with_name(f"{tmp.name}.spill")
    # one thread: the tables stream in already ordered, so more threads only add per-thread row-group buffers
    con = duckdb.connect(str(tmp), config={"memory_limit": WRITE_MEMORY_LIMIT, "temp_directory": str(spill),
                                           "threads": 1})
    try:
        con.execute(DDL)
        yield con
        con.execute("CHECKPOINT")
        con.close()
        os.replace(tmp, out)
    except BaseException:
        con.close()
        tmp.unlink(missing_ok=True)
        Path(f"{tmp}.wal").unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(spill, ignore_errors=True)


def write_table(con, name: str, arrow_table, order_by: str) -> None:
    con.register("_incoming", arrow_table)
    con.execute(f"CREATE TABLE {name} AS SELECT * FROM _incoming ORDER BY {order_by}")
    con.unregister("_incoming")


def write_batches(con, name: str, reader) -> None:
    """A table from a pyarrow RecordBatchReader already in key order: streamed in as it is read, in that order
    (DuckDB keeps insertion order), so neither a sort nor a whole-table copy is held in memory."""
    con.register("_incoming", reader)
    con.execute(f"CREATE TABLE {name} AS SELECT * FROM _incoming")
    con.unregister("_incoming")


def write_meta(con, meta: dict) -> None:
    rows = [(k, json.dumps(v)) for k, v in {**meta, "schema_version": SCHEMA_VERSION}.items()]
    con.executemany("INSERT INTO meta VALUES (?, ?)", rows)


def replace_table(path: Path, name: str, arrow_table, order_by: str) -> None:
    """Write (or rewrite) one table of an existing index, atomically: a copy is edited, then renamed over it,
    so readers holding the old file keep a consistent view and a failure leaves the index as it was."""

    import duckdb

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    shutil.copyfile(path, tmp)
    try:
        con = duckdb.connect(str(tmp))
        try:
            con.execute(f"DROP TABLE IF EXISTS {name}")
            write_table(con, name, arrow_table, order_by)
            con.execute("CHECKPOINT")
        finally:
            con.close()
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        Path(f"{tmp}.wal").unlink(missing_ok=True)
        raise
