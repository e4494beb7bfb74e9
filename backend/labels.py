"""Which label a feature shows: one rule, used by every page.

    team label  >  best-scored explanation  >  automatic tokens

A team label is what people decided, so it always wins. Otherwise the explanation with the highest
detection F1 on held-out tokens (offline rules or an LLM's, backend/explain/) wins, however low: its score
is shown beside it, so a vague one reads as vague. Explanations without a score (not enough data, failed)
never win. Otherwise the automatic label: the tokens it peaks on, joined by "|". The source, and the score
when there is one, always travel with the text."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from backend.explain.models import Explanation
from backend.team import TeamLabel

LabelSource = Literal["team", "explanation", "automatic"]


class ShownLabel(BaseModel):
    text: str
    source: LabelSource
    score: float | None = None  # detection F1 of the explanation shown
    method: str = ""  # the explanation's method ("rules", "llm") or "" for the others
    model: str = ""
    author: str = ""  # the team label's author

    @property
    def source_text(self) -> str:
        """Short words for the source, for a table cell or a caption: "team", "rules · F1 0.82", "top tokens"."""
        if self.source == "team":
            return "team" + (f" ({self.author})" if self.author else "")
        if self.source == "explanation":
            name = f"{self.method}:{self.model}" if self.model else self.method
            return f"{name} · F1 {self.score:.2f}"
        return "top tokens"


def shown_label(automatic: str, team: TeamLabel | None, best: Explanation | None) -> ShownLabel:
    if team is not None:
        return ShownLabel(text=team.text, source="team", author=team.author)
    if best is not None and best.score is not None and best.text:
        return ShownLabel(text=best.text, source="explanation", score=best.score, method=best.method,
                          model=best.model)
    return ShownLabel(text=automatic, source="automatic")
