"""Where the demo's artifacts live (committed) and where a rebuild works (git-ignored)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from backend.formats import DEMO_ARTIFACTS_DIR

DEMO_DIR = Path(__file__).resolve().parent
ARTIFACTS_DIR = DEMO_ARTIFACTS_DIR
WORK_DIR = DEMO_DIR / "work"


@dataclass(frozen=True)
class DemoPaths:
    """Layout shared by the work folder and the published artifacts folder."""

    work: Path

    @property
    def tokenizer_work(self) -> Path:
        return self.work / "tokenizer"

    @property
    def lm_work(self) -> Path:
        return self.work / "lm"

    @property
    def sae_work(self) -> Path:
        return self.work / "sae"

    @property
    def rows(self) -> Path:
        return self.work / "rows.pt"

    @property
    def manifest_work(self) -> Path:
        return self.work / "corpus_manifest.json"
