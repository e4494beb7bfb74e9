"""What the UI relies on: one `Inference` interface (in-process engine or HTTP client alike), and the
`IndexFeatureLookup` an index provides for default strengths and density filters."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from backend.inference.schemas import (
    HealthResponse,
    SteerRequest,
    SteerResponse,
    TokenizeRequest,
    TokenizeResponse,
    TraceRequest,
    TraceResponse,
)


@runtime_checkable
class Inference(Protocol):
    def health(self) -> HealthResponse: ...

    def tokenize(self, request: TokenizeRequest) -> TokenizeResponse: ...

    def trace(self, request: TraceRequest) -> TraceResponse: ...

    def steer(self, request: SteerRequest) -> SteerResponse: ...


@runtime_checkable
class IndexFeatureLookup(Protocol):
    """Per-feature statistics from an index (`backend.store.IndexStore` implements it).
    Ids missing from a returned dict are unknown to the index."""

    def max_activation(self, ids: list[int]) -> dict[int, float]: ...

    def density(self, ids: list[int]) -> dict[int, float]: ...

    def calibrated_strength(self, ids: list[int]) -> dict[int, float]: ...
