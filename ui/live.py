"""Live model calls for the pages, cached per request so reruns (and reopened links) do not recompute.

Results are cached on the request's JSON and the index path; the engine itself is cached per process."""

from __future__ import annotations

import streamlit as st

from backend.inference.schemas import SteerRequest, SteerResponse, TraceRequest, TraceResponse
from ui.resources import IndexContext, inference_for


@st.cache_data(show_spinner=False, max_entries=256)
def _trace(_ctx: IndexContext, index_key: str, request_json: str) -> TraceResponse:
    return inference_for(_ctx).trace(TraceRequest.model_validate_json(request_json))


@st.cache_data(show_spinner=False, max_entries=64)
def _steer(_ctx: IndexContext, index_key: str, request_json: str) -> SteerResponse:
    return inference_for(_ctx).steer(SteerRequest.model_validate_json(request_json))


def trace(ctx: IndexContext, request: TraceRequest) -> TraceResponse:
    inference_for(ctx)  # the first call shows its own "loading the model" spinner
    with st.spinner("Running the prompt through the model…"):
        return _trace(ctx, ctx.key, request.model_dump_json())


def steer(ctx: IndexContext, request: SteerRequest) -> SteerResponse:
    inference_for(ctx)
    with st.spinner(f"Generating {request.max_new_tokens} tokens, default and steered…"):
        return _steer(ctx, ctx.key, request.model_dump_json())
