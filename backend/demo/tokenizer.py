"""Byte-level BPE tokenizer for the demo, saved in Hugging Face format.

It is always reloaded from its folder with `AutoTokenizer.from_pretrained`: a tokenizer
object built in memory trips TransformerLens when it re-loads it to add BOS.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from backend.formats.tokenizer import load_tokenizer

__all__ = ["BOS_TOKEN", "load_tokenizer", "train_tokenizer"]

BOS_TOKEN = "<|endoftext|>"


def train_tokenizer(texts: Iterable[str], vocab_size: int, out_dir: Path) -> None:
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer(add_prefix_space=False)
    bpe.train_from_iterator(
        texts, vocab_size=vocab_size, min_frequency=2, special_tokens=[BOS_TOKEN], show_progress=False
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer,
        bos_token=BOS_TOKEN,
        eos_token=BOS_TOKEN,
        pad_token=BOS_TOKEN,
        unk_token=BOS_TOKEN,
        model_max_length=1 << 20,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(out_dir))
