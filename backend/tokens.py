"""Token ids -> text a person can read, one piece per token.

Byte-level BPE tokens can hold part of a multi-byte UTF-8 character; decoding each token on
its own shows garbage (sae_vis #55). We keep each token's raw bytes and run them through an
incremental UTF-8 decoder: a token that starts a character shows nothing, the token that
completes it shows the whole character."""

from __future__ import annotations

import codecs
from functools import lru_cache
from typing import NamedTuple


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """Inverse of GPT-2's bytes_to_unicode map used by byte-level BPE vocabularies."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs, strict=True)}


def token_bytes_table(tokenizer) -> list[bytes]:
    """The raw bytes of every vocabulary id (special tokens as their literal text)."""
    vocab_size = len(tokenizer)
    pieces = tokenizer.convert_ids_to_tokens(list(range(vocab_size)))
    special = set(getattr(tokenizer, "all_special_tokens", []) or [])
    dec = _byte_decoder()
    table: list[bytes] = []
    for piece in pieces:
        if piece is None:
            table.append(b"")
        elif piece in special:
            table.append(piece.encode())
        elif all(ch in dec for ch in piece):  # byte-level BPE (GPT-2 style)
            table.append(bytes(dec[ch] for ch in piece))
        elif piece.startswith("<0x") and piece.endswith(">") and len(piece) == 6:  # sentencepiece byte fallback
            table.append(bytes([int(piece[3:5], 16)]))
        else:  # sentencepiece word pieces use U+2581 for a leading space
            table.append(piece.replace("\u2581", " ").encode())
    return table


def display_pieces(ids: list[int], table: list[bytes]) -> list[str]:
    """One readable string per token; partial characters complete on the token that ends them."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    out = []
    for i in ids:
        out.append(decoder.decode(table[i]) if 0 <= i < len(table) else "")
    tail = decoder.decode(b"", final=True)  # a sequence cut mid-character still shows its bytes
    if out and tail:
        out[-1] += tail
    return out


class TokenText(NamedTuple):
    text: str
    partial: bool  # not whole UTF-8 characters (part of a multi-byte character)


def single_token(token_id: int, table: list[bytes]) -> TokenText:
    """A token on its own (a logit table entry, a label, a predicted token) and whether it is partial:
    bytes that are not whole UTF-8 characters are shown as <0xNN> escapes rather than as nothing or as a
    replacement character. Decodes once."""
    raw = table[token_id] if 0 <= token_id < len(table) else b""
    try:
        return TokenText(raw.decode("utf-8"), partial=False)
    except UnicodeDecodeError:
        return TokenText("".join(f"<0x{b:02X}>" for b in raw), partial=True)


def single_token_text(token_id: int, table: list[bytes]) -> str:
    return single_token(token_id, table).text


def visible_whitespace(text: str) -> str:
    """Spaces, tabs and newlines made visible for token strips (· → ↵)."""
    return text.replace(" ", "·").replace("\t", "→").replace("\n", "↵")
