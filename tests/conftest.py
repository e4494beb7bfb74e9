"""Shared fixtures: a tiny real source (tokenizer + LM + SAE on disk) and a tiny index built
from it with the real builder. Everything is built once per test session in seconds."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from tests.support.tiny_source import TINY_TEXT, TinySourceDirs, build_tiny_source  # noqa: E402

torch.set_num_threads(1)  # tiny models gain nothing from threads; contention costs a lot

TINY_INDEX_CONFIG = dict(tokens=6_000, batch_size=8, window_before=4, window_after=2, top_k=5, per_interval=3,
                         coact_rows_per_batch=3, progress=False, umap=True)


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory) -> TinySourceDirs:
    return build_tiny_source(tmp_path_factory.mktemp("tiny_source"))


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tiny_data") / "corpus.txt"
    path.write_text("\n".join(TINY_TEXT * 40), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def source(tiny_dirs):
    """The tiny source, loaded once per process like the app does."""
    from backend.sources import load_source

    return load_source(tiny_dirs.spec)


@pytest.fixture(scope="session")
def engine(source):
    """The in-process inference engine on the tiny source (no index: explicit strengths)."""
    from backend.inference.engine import LocalInference

    return LocalInference(source)


@pytest.fixture(scope="session")
def tiny_index(tiny_dirs, tiny_dataset, tmp_path_factory) -> Path:
    from backend.index.build import IndexConfig, build_index
    from backend.sources import SourceSpec

    out = tmp_path_factory.mktemp("tiny_index") / "tiny.duckdb"
    return build_index(SourceSpec.parse(tiny_dirs.spec), IndexConfig(**TINY_INDEX_CONFIG, dataset=str(tiny_dataset)),
                       out)
