"""The demo language model: a small HookedTransformer in the TransformerLens-native folder format
(backend/formats/hooked_lm.py), and how its training rows are cut."""

from __future__ import annotations

import torch

from backend.formats.hooked_lm import (
    LM_CONFIG_FILE,
    LM_WEIGHTS_FILE,
    HookedLMConfig,
    build_model,
    load_model,
    save_model,
)

# The format itself lives in backend.formats (sources load it without importing the demo); the demo's
# names are kept for its training code and tests.
DemoLMConfig = HookedLMConfig
__all__ = ["LM_CONFIG_FILE", "LM_WEIGHTS_FILE", "DemoLMConfig", "build_model", "load_model", "save_model",
           "tokenize_corpus"]


def tokenize_corpus(texts, tokenizer, n_ctx: int) -> torch.Tensor:
    """Concatenate files (each preceded by BOS) and cut rows of n_ctx tokens, each starting
    with BOS, so every row looks like what the model sees at inference time."""
    bos = tokenizer.bos_token_id
    stream: list[int] = []
    for text in texts:
        stream.append(bos)
        stream.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
    body = n_ctx - 1
    n_rows = len(stream) // body
    rows = torch.tensor(stream[: n_rows * body], dtype=torch.int32).view(n_rows, body)
    return torch.cat([torch.full((n_rows, 1), bos, dtype=torch.int32), rows], dim=1)
