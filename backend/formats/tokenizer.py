"""A tokenizer folder in Hugging Face format, always reloaded from disk: a tokenizer object built in memory
trips TransformerLens when it re-loads it to add BOS."""

from __future__ import annotations

from pathlib import Path

TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json", "vocab.json", "tokenizer.model")


def has_tokenizer(folder: Path) -> bool:
    return any((folder / name).is_file() for name in TOKENIZER_FILES)


def load_tokenizer(path: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
