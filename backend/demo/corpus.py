"""The demo corpus: the Python standard-library source of the running interpreter.

It is present on every machine, so nothing third-party is committed. File order is
deterministic and the train / held-out split is by file, from a stable hash of the
relative path, so the same interpreter always gives the same split.
"""

from __future__ import annotations

import hashlib
import json
import sysconfig
from dataclasses import asdict, dataclass
from pathlib import Path

HELDOUT_PERCENT = 10


@dataclass(frozen=True)
class CorpusFile:
    path: str  # relative to the stdlib root
    bytes: int
    sha256: str
    split: str  # "train" | "heldout"


@dataclass(frozen=True)
class CorpusManifest:
    root: str
    python_version: str
    files: list[CorpusFile]

    @property
    def digest(self) -> str:
        """One hash over every file's path, content hash and split."""
        h = hashlib.sha256()
        for f in self.files:
            h.update(f"{f.path}\0{f.sha256}\0{f.split}\n".encode())
        return h.hexdigest()

    def to_json(self) -> str:
        payload = {
            "root": self.root,
            "python_version": self.python_version,
            "digest": self.digest,
            "files": [asdict(f) for f in self.files],
        }
        return json.dumps(payload, indent=1)


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def split_of(relative_path: str) -> str:
    """Stable per-file split: the same path is always on the same side."""
    bucket = int(hashlib.sha256(relative_path.encode()).hexdigest()[:8], 16) % 100
    return "heldout" if bucket < HELDOUT_PERCENT else "train"


def build_manifest(root: Path | None = None) -> CorpusManifest:
    import platform

    root = root or stdlib_root()
    files = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if "site-packages" in path.parts or "dist-packages" in path.parts:
            continue
        data = path.read_bytes()
        files.append(CorpusFile(rel, len(data), hashlib.sha256(data).hexdigest(), split_of(rel)))
    return CorpusManifest(str(root), platform.python_version(), files)


def iter_texts(manifest: CorpusManifest, split: str):
    """Yield the decoded text of each file of one split, in manifest order."""
    root = Path(manifest.root)
    for f in manifest.files:
        if f.split == split:
            yield (root / f.path).read_text(encoding="utf-8", errors="replace")
