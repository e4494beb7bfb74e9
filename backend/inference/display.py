"""Token ids -> `TokenInfo` (readable text, special and partial-character flags).

Uses the same byte-level decoding as the index (backend.tokens), so a token reads the same on a
feature page and in a live trace, and multi-byte characters are never shown as garbage."""

from __future__ import annotations

from backend.inference.schemas import TokenInfo
from backend.tokens import display_pieces, single_token, token_bytes_table


class TokenRenderer:
    def __init__(self, tokenizer, special_ids: list[int]):
        self._bytes = token_bytes_table(tokenizer)
        self._special = set(special_ids)

    def render(self, ids: list[int]) -> list[TokenInfo]:
        """Render a whole sequence at once: a character split across tokens needs its neighbours."""
        pieces = display_pieces(ids, self._bytes)
        return [TokenInfo(id=i, text=text, special=i in self._special, partial=text == "" and self._has_bytes(i))
                for i, text in zip(ids, pieces, strict=True)]

    def render_one(self, token_id: int) -> TokenInfo:
        """A token on its own (a prediction, an alternative): bytes that are not a whole character
        are shown as <0xNN> escapes rather than as nothing."""
        token = single_token(token_id, self._bytes)
        return TokenInfo(id=token_id, text=token.text, special=token_id in self._special, partial=token.partial)

    def _has_bytes(self, token_id: int) -> bool:
        return 0 <= token_id < len(self._bytes) and len(self._bytes[token_id]) > 0
