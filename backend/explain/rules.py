"""The offline rule language: short rules over a token and its left context, evaluated on whole arrays.

Every position of a token matrix gets one integer key per rule family (the token; its class; the token
before it; the pair; the class of the one before and the token; the token before and the class; the first
word of its line and the token or the class). A rule is "the key is one of these few keys" in one family,
so its hits and its matches on any data are sums of counts per key: no rule is ever run token by token.

Key spaces: token ids 0..V-1 plus START (the position opens a context) and UNKNOWN (the context is cut
off, e.g. a stored example window's first token); classes 0..C-1 plus the same two. Keys involving
UNKNOWN are -1 and never count."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from backend.tokens import single_token_text, visible_whitespace

# (name, phrase) in the order they are tested; a token gets the first class whose test it passes
CLASSES: list[tuple[str, str]] = [
    ("special", "a special token"),
    ("newline", "a line break"),
    ("space", "whitespace"),
    ("number", "a number"),
    ("upper", "an upper-case word"),
    ("capital", "a capitalised word"),
    ("lower", "a lower-case word"),
    ("open", "an opening bracket"),
    ("close", "a closing bracket"),
    ("quote", "a quote mark"),
    ("operator", "an operator"),
    ("punct", "punctuation"),
    ("non_ascii", "non-ASCII text"),
    ("other", "mixed text"),
]
CLASS_INDEX = {name: i for i, (name, _) in enumerate(CLASSES)}
_PATTERNS = [
    ("number", re.compile(r"[0-9]+")),
    ("upper", re.compile(r"[A-Z][A-Z0-9_]+")),
    ("capital", re.compile(r"[A-Z][a-z0-9_]*")),
    ("lower", re.compile(r"[a-z_][a-z0-9_]*")),
    ("open", re.compile(r"[(\[{]+")),
    ("close", re.compile(r"[)\]}]+")),
    ("quote", re.compile(r"[rbfu]{0,2}['\"`]+")),
    ("operator", re.compile(r"[=+\-*/%<>!&|^~@]+")),
    ("punct", re.compile(r"[.,:;?\\#$]+")),
]


def token_class(text: str, special: bool) -> int:
    if special:
        return CLASS_INDEX["special"]
    core = text.strip()
    if not core:
        return CLASS_INDEX["newline" if "\n" in text else "space"]
    for name, pattern in _PATTERNS:
        if pattern.fullmatch(core):
            return CLASS_INDEX[name]
    return CLASS_INDEX["non_ascii" if not core.isascii() else "other"]


@dataclass(frozen=True)
class Vocabulary:
    """Per-token-id facts the rules need, computed once per index."""

    texts: list[str]
    classes: np.ndarray  # [V] int64
    newline: np.ndarray  # [V] bool: the token contains a line break
    blank: np.ndarray  # [V] bool: whitespace only

    @classmethod
    def build(cls, vocab: list[bytes], special_ids: list[int]) -> Vocabulary:
        texts = [single_token_text(i, vocab) for i in range(len(vocab))]
        special = set(special_ids)
        return cls(
            texts,
            np.array([token_class(t, i in special) for i, t in enumerate(texts)], dtype=np.int64),
            np.array(["\n" in t for t in texts], dtype=bool),
            np.array([t.strip() == "" and i not in special for i, t in enumerate(texts)], dtype=bool),
        )

    @property
    def size(self) -> int:
        return len(self.texts)


@dataclass(frozen=True)
class Positions:
    """The parts keys are made of, for every position of a [n, width] token matrix (-1 = padding)."""

    cur: np.ndarray
    prev: np.ndarray  # token before, START or UNKNOWN
    cur_class: np.ndarray
    prev_class: np.ndarray
    head: np.ndarray  # first non-blank token of the position's line, UNKNOWN if the line starts off-window
    valid: np.ndarray  # a real token (not padding)
    V: int  # token ids + START + UNKNOWN
    C: int  # classes + START + UNKNOWN

    @classmethod
    def of(cls, tokens: np.ndarray, vocab: Vocabulary, opens_context: np.ndarray) -> Positions:
        """`opens_context[i]`: row i's first column is the first token of a context (else its left is unknown)."""
        n_vocab, n_classes = vocab.size, len(CLASSES)
        start, unknown = n_vocab, n_vocab + 1
        valid = tokens >= 0
        safe = np.where(valid, tokens, 0)
        prev = np.empty_like(tokens)
        prev[:, 1:] = tokens[:, :-1]
        prev[:, 0] = np.where(opens_context, start, unknown)
        cur_class = np.where(valid, vocab.classes[safe], -1)
        prev_class = np.where(prev == start, n_classes, np.where(prev == unknown, n_classes + 1, 0))
        inside = (prev >= 0) & (prev < n_vocab)
        prev_class = np.where(inside, vocab.classes[np.where(inside, prev, 0)], prev_class)
        return cls(tokens, prev, cur_class, prev_class, _line_heads(safe, valid, vocab, unknown), valid,
                   n_vocab + 2, n_classes + 2)


def _line_heads(tokens: np.ndarray, valid: np.ndarray, vocab: Vocabulary, unknown: int) -> np.ndarray:
    """The first non-blank token after the last line break at or before each position (vectorised scans)."""
    n, width = tokens.shape
    cols = np.broadcast_to(np.arange(width), (n, width))
    breaks = valid & vocab.newline[tokens]
    last_break = np.maximum.accumulate(np.where(breaks, cols, -1), axis=1)
    # a token holding text and a line break (e.g. "):\n") ends its line: the head comes after it
    solid = valid & ~vocab.blank[tokens] & ~breaks
    next_solid = np.minimum.accumulate(np.where(solid, cols, width)[:, ::-1], axis=1)[:, ::-1]
    after = np.minimum(last_break + 1, width - 1)
    head_col = np.take_along_axis(next_solid, after, axis=1)
    known = (last_break >= 0) & (head_col <= cols)
    head = np.take_along_axis(tokens, np.minimum(head_col, width - 1), axis=1)
    return np.where(known, head, unknown)


@dataclass(frozen=True)
class Family:
    name: str
    connector: str  # how the context part reads: "after", "on a line starting with"
    max_keys: int = 3  # "a number, punctuation or a lower-case word" says nothing: classes go one at a time


FAMILIES: list[Family] = [  # simplest first: a later family must beat an earlier one clearly to be chosen
    Family("token", ""),
    Family("class", "", max_keys=1),
    Family("prev_token", "after"),
    Family("bigram", "after"),
    Family("prev_class_token", "after"),
    Family("prev_token_class", "after"),
    Family("head_token", "on a line starting with"),
    Family("head_class", "on a line starting with"),
]


def family_keys(family: str, p: Positions) -> np.ndarray:
    """int64 key per position; -1 where the family has nothing to say (padding, unknown context)."""
    cur, prev, head = p.cur.astype(np.int64), p.prev.astype(np.int64), p.head.astype(np.int64)
    unknown_tok, unknown_cls = p.V - 1, p.C - 1
    if family == "token":
        key, bad = cur, np.zeros_like(p.valid)
    elif family == "class":
        key, bad = p.cur_class.astype(np.int64), np.zeros_like(p.valid)
    elif family == "prev_token":
        key, bad = prev, prev == unknown_tok
    elif family == "bigram":
        key, bad = prev * p.V + cur, prev == unknown_tok
    elif family == "prev_class_token":
        key, bad = p.prev_class * p.V + cur, p.prev_class == unknown_cls
    elif family == "prev_token_class":
        key, bad = prev * p.C + p.cur_class, prev == unknown_tok
    elif family == "head_token":
        key, bad = head * p.V + cur, head == unknown_tok
    elif family == "head_class":
        key, bad = head * p.C + p.cur_class, head == unknown_tok
    else:
        raise ValueError(family)
    return np.where(p.valid & ~bad, key, -1)


def key_space(family: str, p: Positions) -> int:
    """One more than the largest key a family can produce (to pack (feature, key) into one int64)."""
    return {"token": p.V, "class": p.C, "prev_token": p.V, "bigram": p.V * p.V, "prev_class_token": p.C * p.V,
            "prev_token_class": p.V * p.C, "head_token": p.V * p.V, "head_class": p.V * p.C}[family]


# ---- text --------------------------------------------------------------------------------------------

def show_token(token_id: int, vocab: Vocabulary) -> str:
    if token_id == vocab.size:
        return "the start of a context"
    text = vocab.texts[token_id]
    core = text.strip()
    shown = core if core else visible_whitespace(text)
    return f"`{shown}`"


def show_class(class_id: int) -> str:
    return "the start of a context" if class_id >= len(CLASSES) else CLASSES[class_id][1]


def _parts(family: str, key: int, vocab: Vocabulary) -> tuple[str, str]:
    """(what, context) of one key, in words."""
    V, C = vocab.size + 2, len(CLASSES) + 2
    if family == "token":
        return show_token(key, vocab), ""
    if family == "class":
        return show_class(key), ""
    if family == "prev_token":
        return "any token", show_token(key, vocab)
    if family in ("bigram", "head_token"):
        return show_token(key % V, vocab), show_token(key // V, vocab)
    if family == "prev_class_token":
        return show_token(key % V, vocab), show_class(key // V)
    return show_class(key % C), show_token(key // C, vocab)  # prev_token_class, head_class


def _join(items: list[str]) -> str:
    items = list(dict.fromkeys(items))  # " except" and "except" read the same
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def describe(family: str, keys: list[int], vocab: Vocabulary) -> str:
    """A rule in words, e.g. "`except` after a line break", "a number after `0x`"."""
    connector = next(f.connector for f in FAMILIES if f.name == family)
    parts = [_parts(family, k, vocab) for k in keys]
    whats, contexts = [w for w, _ in parts], [c for _, c in parts]
    if not connector:
        return _join(whats)
    if family == "prev_token" and contexts[0] != "the start of a context":
        return f"the token after {_join(contexts)}"
    if len(set(contexts)) == 1:
        return f"{_join(whats)} {connector} {contexts[0]}"
    if len(set(whats)) == 1:
        return f"{whats[0]} {connector} {_join(contexts)}"
    return ", or ".join(f"{w} {connector} {c}" for w, c in parts)
