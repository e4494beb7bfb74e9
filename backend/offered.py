"""Which indexes this server offers, each by a name: the `*.duckdb` files in `cache/` and in the folders
named by $SAE_EXPLORER_INDEX_DIRS, plus the configured default ($SAE_EXPLORER_INDEX, else cache/demo.duckdb).

A link names an index only by one of these names, never by a path: anything else, an absolute path, a
`../` name or a file that exists outside these folders, gets the same sentence and nothing is opened or
created, so a link can neither open nor probe other files on the server."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from backend.errors import NotFoundError

INDEX_ENV = "SAE_EXPLORER_INDEX"
DIRS_ENV = "SAE_EXPLORER_INDEX_DIRS"
CACHE_DIR = Path("cache")
DEFAULT_INDEX = CACHE_DIR / "demo.duckdb"
NOT_OFFERED = "This link names an index that this server does not offer; pick one from the sidebar's list."


@dataclass(frozen=True)
class OfferedIndex:
    name: str  # what links and the picker carry
    path: Path  # where it lives; never shown in a link

    @property
    def exists(self) -> bool:
        return self.path.is_file()


def default_index() -> Path:
    return Path(os.environ.get(INDEX_ENV) or DEFAULT_INDEX)


def index_dirs() -> list[Path]:
    extra = [Path(p) for p in os.environ.get(DIRS_ENV, "").split(os.pathsep) if p.strip()]
    return [CACHE_DIR, *extra]


def offered_indexes() -> list[OfferedIndex]:
    """The default first, then every index file in the folders, in order; a name taken earlier is
    qualified by its folder's name (`other/demo`) so each name stays unique."""
    default = default_index()
    found = [default]
    for folder in index_dirs():
        if folder.is_dir():
            found += sorted(p for p in folder.glob("*.duckdb") if not p.name.startswith(".") and p.is_file())
    offered: list[OfferedIndex] = []
    seen_paths: set[Path] = set()
    names: set[str] = set()
    for path in found:
        resolved = path.resolve()
        if resolved in seen_paths:
            continue
        seen_paths.add(resolved)
        name = path.stem if path.stem not in names else f"{path.parent.name}/{path.stem}"
        while name in names:
            name += "+"
        names.add(name)
        offered.append(OfferedIndex(name=name, path=path))
    return offered


def resolve_index(name: str | None) -> OfferedIndex:
    """The offered index of that name (None or "" is the default); anything else raises NOT_OFFERED."""
    offered = offered_indexes()
    if not name:
        return offered[0]
    for entry in offered:
        if entry.name == name:
            return entry
    raise NotFoundError(NOT_OFFERED)
