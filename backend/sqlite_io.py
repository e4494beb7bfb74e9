"""One SQLite file beside an index (the team data with its concepts, the explanations): the way every
store here writes and reads it.

Writes are short `BEGIN IMMEDIATE` transactions, retried with backoff while another process holds the
write lock (a team shares one file); threads of one process queue on a lock of their own first, so
they never spin on SQLite's. WAL journal mode lets readers go on while a writer works. A file that
cannot be opened or written is one sentence naming it, never a traceback."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from backend.errors import UserError

BUSY_TIMEOUT_S = 10.0  # SQLite's own wait for a lock, per statement
RETRY_FOR_S = 30.0  # our retries of a whole transaction on top of it

T = TypeVar("T")


def is_lock_conflict(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


class SqliteFile:
    def __init__(self, path: Path, what: str, foreign_keys: bool = False):
        """`what` names the file in errors ("team data", "explanations")."""
        self.path = path
        self.what = what
        self.foreign_keys = foreign_keys
        self._write_lock = threading.Lock()

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        try:
            con = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.OperationalError as exc:
            raise UserError(f"Cannot open the {self.what} at {self.path} ({exc}).") from exc
        try:
            if self.foreign_keys:
                con.execute("PRAGMA foreign_keys = ON")
            yield con
        finally:
            con.close()

    def write(self, work: Callable[[sqlite3.Connection], T], ddl: bool = False) -> T:
        """`work(con)` in one transaction (rolled back if it raises); `ddl` first switches the file to WAL."""
        deadline, delay = time.monotonic() + RETRY_FOR_S, 0.01
        while True:
            try:
                with self._write_lock, self.connect() as con:
                    if ddl:
                        con.execute("PRAGMA journal_mode = WAL")
                    con.execute("BEGIN IMMEDIATE")
                    try:
                        result = work(con)
                        con.execute("COMMIT")
                        return result
                    except BaseException:
                        con.execute("ROLLBACK")
                        raise
            except sqlite3.OperationalError as exc:
                if not is_lock_conflict(exc) or time.monotonic() > deadline:
                    text = str(exc).lower()
                    if "readonly" in text or "unable to open" in text or is_lock_conflict(exc):
                        raise UserError(f"Cannot write the {self.what} at {self.path} ({exc}).") from exc
                    raise  # a mistake in our SQL: a traceback for us, not a sentence for the user
                time.sleep(delay)
                delay = min(delay * 2, 0.5)

    def read(self, sql: str, params: tuple | list = (), missing_ok: bool = False) -> list[tuple]:
        """The rows of one query; with `missing_ok`, a file or table not created yet reads as no rows."""
        if missing_ok and not self.path.exists():
            return []
        with self.connect() as con:
            try:
                return con.execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:
                if missing_ok and "no such table" in str(exc):  # a writer has not committed its schema yet
                    return []
                raise
