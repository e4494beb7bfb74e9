"""The demo language model: a small HookedTransformer in the TransformerLens-native folder format
(backend/formats/hooked_lm.py), and how its training rows are cut."""

from __future__ import annotations

import sys
from collections.abc import Iterable

import torch

from backend.formats.hooked_lm import (
    LM_CONFIG_FILE,
    LM_WEIGHTS_FILE,
    HookedLMConfig,
    build_model,
    load_model,
    save_model,
)
from backend.index.datasets import token_rows

# The format itself lives in backend.formats (sources load it without importing the demo); the demo's
# names are kept for its training code and tests.
DemoLMConfig = HookedLMConfig
__all__ = ["LM_CONFIG_FILE", "LM_WEIGHTS_FILE", "DemoLMConfig", "build_model", "load_model", "save_model",
           "tokenize_corpus"]


def tokenize_corpus(texts: Iterable[str], tokenizer, n_ctx: int) -> torch.Tensor:
    """All of the texts' rows at once, cut the way the index cuts them (backend.index.datasets.token_rows:
    files joined by BOS, every row starting with BOS), so training rows look like inference rows."""
    unbounded = sys.maxsize  # one batch holding every row, no token cap
    batches = list(token_rows(iter(texts), tokenizer, n_ctx, prepend_bos=True, batch_rows=unbounded,
                              max_tokens=unbounded))
    if not batches:
        return torch.empty((0, n_ctx), dtype=torch.int32)
    return torch.cat(batches).to(torch.int32)  # int32 halves the cached rows file
