"""The installed versions that shape results, recorded by the index, the demo build and /health alike."""

from __future__ import annotations

import platform
from importlib.metadata import version

from pydantic import BaseModel


class Versions(BaseModel):
    python: str
    torch: str
    transformer_lens: str
    sae_lens: str
    duckdb: str


def package_versions() -> Versions:
    """Read from the installed distributions' metadata, so nothing heavy is imported to learn a version."""
    return Versions(python=platform.python_version(), torch=version("torch"),
                    transformer_lens=version("transformer-lens"), sae_lens=version("sae-lens"),
                    duckdb=version("duckdb"))
