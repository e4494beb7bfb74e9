"""Typed payloads the query layer returns and the pages render. They are the contract
between backend/store.py and pages/: a page never sees a row, a tuple or SQL."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, Field


class SourceInfo(BaseModel):
    """What a loaded source is, in plain values (backend/sources.py): the index's meta records it and /health
    reports it. Here, not in sources.py, so that the query layer reads it without importing torch."""

    source: str
    model: str
    hook: str
    d_model: int
    d_in: int  # the SAE's input width: d_model for residual hooks, d_mlp or n_heads x d_head for others
    d_sae: int
    n_layers: int
    device: str
    dtype: str
    architecture: str
    vocab_size: int


class IndexInfo(BaseModel):
    path: str
    source: str
    model: str
    hook: str
    d_model: int
    d_in: int = Field(description="the SAE's input width, which concept vectors must have")
    d_sae: int
    dataset: str
    tokens_processed: int
    tokens_counted: int = Field(description="tokens that count for statistics (special tokens excluded)")
    context_size: int
    alive_features: int
    dead_features: int
    logits_through_final_ln: bool
    built_at: str
    build_seconds: float
    sae_weights_sha256: str | None = Field(None, description="the SAE weights file it was built from (sources on "
                                                               "disk only; older indexes lack it)")
    schema_version: int


class FeatureRow(BaseModel):
    """One line of the feature table."""

    feature_id: int
    label: str
    top_token: str
    density: float
    max_act: float
    mean_act: float
    dead: bool
    cluster: int
    output_score: float | None = Field(None, description="steerability: how much adding the feature raises its own "
                                                         "top logit tokens (Arad et al. 2025); None = not measured")
    input_score: float | None = Field(None, description="fraction of top examples peaking on a token the feature "
                                                        "promotes (Arad et al. 2025)")
    calibrated_strength: float | None = Field(None, description="smallest add strength (a multiple of max act) at "
                                                                "which steered text evokes the feature >= 3x default")


class FeatureQuery(BaseModel):
    """Filters and order for the feature table; every field travels in the URL."""

    search: str = ""
    min_density: float = 0.0
    max_density: float = 1.0
    hide_dead: bool = True
    sort: str = Field("feature_id", pattern="^(feature_id|density|max_act|mean_act|label|top_token|label_score|"
                                            "output_score|input_score|calibrated_strength)$")
    descending: bool = False
    min_label_score: float = Field(0.0, ge=0.0, le=1.0, description="best explanation F1 at least this (0 = any)")
    min_output_score: float = Field(0.0, ge=0.0, le=1.0, description="steerability output score at least this")
    steerable_only: bool = Field(False, description="only features with a calibrated strength")
    limit: int = Field(200, ge=1, le=5000)
    offset: int = Field(0, ge=0)


class FeatureTable(BaseModel):
    total: int
    rows: list[FeatureRow]


class TokenCell(BaseModel):
    text: str  # decoded for display (multi-byte characters complete on their last token)
    token_id: int
    act: float


class Example(BaseModel):
    value: float
    row_id: int
    pos: int
    center: int = Field(description="index in `tokens` of the token the example is about")
    tokens: list[TokenCell]
    interval: int | None = None


class IntervalGroup(BaseModel):
    index: int
    lo: float
    hi: float
    activations_in_interval: int
    examples: list[Example]


class Histogram(BaseModel):
    lo: float
    hi: float
    counts: list[int]

    @property
    def edges(self) -> list[float]:
        width = (self.hi - self.lo) / max(len(self.counts), 1)
        return [self.lo + i * width for i in range(len(self.counts) + 1)]


class LogitEntry(BaseModel):
    token: str
    token_id: int
    value: float


class Neighbour(BaseModel):
    feature_id: int
    score: float
    label: str


class FeaturePage(BaseModel):
    """Everything the feature page shows, in one call."""

    row: FeatureRow
    fire_count: int
    top_examples: list[Example]
    intervals: list[IntervalGroup]
    activation_hist: Histogram
    logit_pos: list[LogitEntry]
    logit_neg: list[LogitEntry]
    logit_hist: Histogram
    logits_through_final_ln: bool
    cosine_neighbours: list[Neighbour]
    coactivation_neighbours: list[Neighbour]
    umap_x: float
    umap_y: float
    d_sae: int

    def summary(self) -> str:
        r = self.row
        tops = ", ".join(repr(e.token) for e in self.logit_pos[:5])
        return (
            f"feature {r.feature_id} [{r.label}]  density {r.density:.3g}  max {r.max_act:.3g}  "
            f"mean {r.mean_act:.3g}{'  DEAD' if r.dead else ''}\n  promotes: {tops}\n"
            f"  top example: {''.join(t.text for t in self.top_examples[0].tokens) if self.top_examples else '-'}"
        )


@dataclass(frozen=True)
class MapPoints:
    """Numpy columns, in feature-id order: 1M points are ~40 MB this way, and plotly takes arrays whole
    (lists it validates item by item)."""

    feature_id: np.ndarray  # int64
    x: np.ndarray  # float32
    y: np.ndarray
    cluster: np.ndarray  # int64
    density: np.ndarray  # float64
    label: np.ndarray  # object (str)
    dead: np.ndarray  # bool

    def __len__(self) -> int:
        return len(self.feature_id)
