"""The typed records of explanations: what is stored, what pages read, what the runners produce."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from backend.explain.scoring import Score

RULES = "rules"  # the offline explainer's method name
LLM = "llm"

Status = Literal["ok", "not_enough_data", "failed"]


class RuleSpec(BaseModel):
    """An offline rule: the feature fires where the position's key in `family` is one of `keys`."""

    family: str
    keys: list[int]
    mining: Score = Field(description="its score on the mining half, where it was chosen")


class Judgment(BaseModel):
    """One held-out example an LLM judge saw, what is true about it and what the judge said."""

    task: Literal["detection", "fuzzing"]
    row: int = Field(description="held-out row")
    start: int = Field(description="first column of the window")
    width: int
    truth: bool
    said: bool


class Explanation(BaseModel):
    feature_id: int
    method: str = Field(description="'rules' (offline) or 'llm'")
    model: str = Field("", description="the LLM's model name; empty for the offline rules")
    status: Status
    text: str = ""
    reason: str = Field("", description="why it failed or has no score")
    detection: Score | None = Field(None, description="the headline score: rule or judge as a detector")
    fuzzing: Score | None = None
    rule: RuleSpec | None = None
    judgments: list[Judgment] = Field(default_factory=list)
    created_at: str = ""

    @property
    def score(self) -> float | None:
        """F1 as a detector, the number explanations are ranked by; None unless scored."""
        return self.detection.f1 if self.status == "ok" and self.detection is not None else None

    @property
    def source_name(self) -> str:
        return f"{self.method}:{self.model}" if self.model else self.method


class MethodSummary(BaseModel):
    method: str
    model: str
    scored: int
    not_enough_data: int
    failed: int
    median_f1: float | None
