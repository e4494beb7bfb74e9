"""Concepts page pieces: computing a concept vector from two prompt sets, its decomposition into SAE features,
side-by-side steering with it, its reconstruction and its best feature, and the saved concepts.

The vector is computed in this process on the index's own source (the steering goes through the page's
inference engine, in-process or HTTP alike). Decompositions and steering results are cached on the vector."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import streamlit as st
import torch

from backend.concept_steering import SideBySide, SideBySideSettings, steer_side_by_side
from backend.concepts import (
    METHODS,
    Baseline,
    Decomposition,
    Method,
    PromptSets,
    concept_vector,
    dataset_baseline,
    decompose,
    prompts_from_jsonl,
    prompts_from_lines,
    sae_reconstruction,
)
from backend.concepts_store import ConceptStore, ConceptSummary, SavedConcept, concept_safetensors
from backend.inference import Inference
from backend.sources import LoadedSource, load_source
from ui.navigation import CONCEPTS, FEATURE_LINK_COLUMN, feature_links, relative_url
from ui.resources import IndexContext, inference_for

DRAFT_KEY = "concepts.draft"  # the last computed, not yet saved, concept of this session


@st.cache_resource(show_spinner=False, max_entries=4)
def _source(spec: str) -> LoadedSource:
    return load_source(spec)


def source_for(ctx: IndexContext) -> LoadedSource:
    with st.spinner(f"Loading {ctx.info.model} and its SAE (first time only)…"):
        return _source(ctx.info.source)


@st.cache_resource(show_spinner=False, max_entries=8)
def _store(index_path: str, d_in: int) -> ConceptStore:
    return ConceptStore.for_index(index_path, d_in)


def store_for(ctx: IndexContext) -> ConceptStore:
    return _store(str(ctx.path), int(source_for(ctx).sae.W_dec.shape[1]))


def _baseline(ctx: IndexContext) -> Baseline:
    with st.spinner("Averaging the dataset's activations at the hook (first time only)…"):
        return dataset_baseline(source_for(ctx), ctx.info.dataset)


# ---- computing -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ConceptForm:
    name: str
    with_text: str
    without_text: str
    upload: bytes | None
    method: Method


def as_lines(prompts: list[str]) -> str:
    """Prompts back into the text area's form (the inverse of prompts_from_lines)."""
    return "\n".join(p.replace("\n", "\\n") for p in prompts)


def prompt_sets(form: ConceptForm) -> PromptSets:
    """An uploaded .jsonl wins over the text areas."""
    if form.upload is not None:
        return prompts_from_jsonl(form.upload)
    return PromptSets(prompts_from_lines(form.with_text), prompts_from_lines(form.without_text))


def compute(ctx: IndexContext, form: ConceptForm, author: str) -> SavedConcept:
    """Raises a one-sentence ConceptInputError for sets it cannot use."""
    source = source_for(ctx)
    sets = prompt_sets(form)
    baseline = _baseline(ctx) if form.method == "mean_centring" else None
    with st.spinner("Running the prompts to the SAE's hook…"):
        result = concept_vector(source, sets, form.method, baseline)
    kept_without = sets.without_concept if form.method == "caa" else []
    return SavedConcept(name=form.name.strip() or "untitled concept", method=form.method, hook_name=source.hook_name,
                        layer=source.hook_layer, model=ctx.info.model, with_concept=sets.with_concept,
                        without_concept=kept_without, vector=result.vector.tolist(), author=author)


# arguments starting with _ are not hashed: the cache is keyed on the index and the vector
@st.cache_data(show_spinner=False, max_entries=32)
def _decomposition(_source: LoadedSource, _baseline: Baseline, index_key: str,
                   vector: tuple[float, ...]) -> Decomposition:
    return decompose(_source, list(vector), _baseline)


def decomposition(ctx: IndexContext, concept: SavedConcept) -> Decomposition:
    source, baseline = source_for(ctx), _baseline(ctx)
    with st.spinner("Decomposing the vector into SAE features…"):
        return _decomposition(source, baseline, ctx.key, tuple(concept.vector))


@st.cache_data(show_spinner=False, max_entries=32)
def _side_by_side(_source: LoadedSource, _inference: Inference, _dec: Decomposition, index_key: str,
                  vector: tuple[float, ...], settings: SideBySideSettings) -> SideBySide:
    return steer_side_by_side(_inference, torch.tensor(vector), _dec, sae_reconstruction(_source, _dec, settings.k),
                              settings)


def side_by_side(ctx: IndexContext, concept: SavedConcept, dec: Decomposition,
                 settings: SideBySideSettings) -> SideBySide:
    source, inference = source_for(ctx), inference_for(ctx)
    with st.spinner(f"Generating {settings.max_new_tokens} tokens four times (default and three steered)…"):
        return _side_by_side(source, inference, dec, ctx.key, tuple(concept.vector), settings)


# ---- showing ---------------------------------------------------------------------------------------------

def summary(concept: SavedConcept, dec: Decomposition) -> None:
    cols = st.columns(5)
    cols[0].metric("Norm", f"{dec.norm:.3f}")
    cols[1].metric("Method", METHODS[concept.method])
    cols[2].metric("Hook", concept.hook_name)
    cols[3].metric("Prompts with / without", f"{len(concept.with_concept)} / {len(concept.without_concept)}")
    cols[4].metric("Closest feature", f"#{dec.best_feature.feature_id}", f"cosine {dec.best_feature.cosine:.2f}",
                   delta_color="off")


def _feature_table(ctx: IndexContext, weights, key: str) -> None:
    labels = ctx.catalog.labels_for([w.feature_id for w in weights])
    frame = pd.DataFrame({
        "open": feature_links(w.feature_id for w in weights),
        "feature": [w.feature_id for w in weights],
        "label": [labels.get(w.feature_id, "") for w in weights],
        "cosine": [w.cosine for w in weights],
        "encoding Δ": [w.encoding_delta for w in weights],
    })
    st.dataframe(frame, hide_index=True, width="stretch", key=key, column_config={
        "open": FEATURE_LINK_COLUMN,
        "feature": st.column_config.NumberColumn(format="%d", width="small"),
        "cosine": st.column_config.NumberColumn(format="%.3f", help="Cosine of the vector with the feature's "
                                                                    "decoder row."),
        "encoding Δ": st.column_config.NumberColumn(format="%.3f", help="Mean over typical activations x of the "
                                                                        "SAE's encoding of x + vector minus that "
                                                                        "of x."),
    })


def decomposition_tables(ctx: IndexContext, dec: Decomposition) -> None:
    left, right = st.columns(2, gap="medium")
    with left:
        st.markdown("**By cosine with the decoder**")
        _feature_table(ctx, dec.by_cosine, "concepts.by_cosine")
    with right:
        st.markdown("**By the SAE's own encoding**")
        _feature_table(ctx, dec.by_encoding, "concepts.by_encoding")
    st.caption(f"Encoding Δ is averaged over {dec.baseline_tokens} token activations drawn from the index's dataset "
               "(the typical inputs the vector is added to).")


def reconstruction_table(dec: Decomposition) -> None:
    frame = pd.DataFrame([{"features (k)": r.k, "chosen by": r.selection, "cosine": r.cosine,
                           "norm ratio": r.norm_ratio, "features": ", ".join(f"#{f}" for f in r.feature_ids)}
                          for r in dec.reconstructions])
    st.dataframe(frame, hide_index=True, width="stretch", key="concepts.reconstruction", column_config={
        "cosine": st.column_config.NumberColumn(format="%.3f"),
        "norm ratio": st.column_config.NumberColumn(format="%.3f", help="|reconstruction| / |vector|"),
    })
    st.caption("Decoder cosine: the k closest decoder rows, weighted by least squares (the best they can do "
               "together, so its norm ratio equals its cosine). SAE encoding: the k largest encoding Δ, each "
               "weighted by its Δ (what the SAE itself reads of the vector).")


def side_by_side_panel(result: SideBySide) -> None:
    st.markdown("**Default** (no steering)")
    st.code(result.default_text or "∅", language=None, wrap_lines=True)
    columns = st.columns(len(result.arms), gap="medium")
    for column, arm in zip(columns, result.arms, strict=True):
        with column:
            st.markdown(f"**{arm.kind.capitalize()}**")
            st.caption(arm.description)
            st.code(arm.response.steered.text or "∅", language=None, wrap_lines=True)
            st.metric("Projection on the concept", f"{arm.projection_steered:.3f}",
                      f"{arm.effect:+.3f} vs default {arm.projection_default:.3f}")
    for note in result.notes:
        st.info(note, icon=":material/info:")
    st.caption("Each direction is added with the same norm (strength × the vector's norm) at every token, so they "
               "differ only in direction. The projection is the mean, over the generated tokens, of their activation "
               "at the hook (before the edit: what the text itself carries) on the unit concept vector.")


def effect_table(result: SideBySide) -> None:
    frame = pd.DataFrame([{"steered with": a.kind, "added norm": a.added_norm, "projection default":
                           a.projection_default, "projection steered": a.projection_steered, "effect": a.effect}
                          for a in result.arms])
    number = st.column_config.NumberColumn(format="%.3f")
    st.dataframe(frame, hide_index=True, width="stretch", key="concepts.effects",
                 column_config={c: number for c in frame.columns if c != "steered with"})


def saved_table(concepts: list[ConceptSummary]) -> None:
    if not concepts:
        st.caption("No saved concepts yet.")
        return
    frame = pd.DataFrame({
        "open": [relative_url(CONCEPTS, {"id": c.concept_id}) for c in concepts],
        "name": [c.name for c in concepts], "method": [METHODS[c.method] for c in concepts],
        "hook": [c.hook_name for c in concepts], "norm": [c.norm for c in concepts],
        "by": [c.author for c in concepts], "saved (UTC)": [c.created_at.replace("T", " ")[:16] for c in concepts],
    })
    st.dataframe(frame, hide_index=True, width="stretch", key="concepts.saved", column_config={
        "open": st.column_config.LinkColumn("", display_text="open ↗", width="small"),
        "norm": st.column_config.NumberColumn(format="%.3f"),
    })


def download_button(concept: SavedConcept) -> None:
    slug = "".join(c if c.isalnum() else "-" for c in concept.name).strip("-") or "concept"
    st.download_button("Export safetensors", lambda: concept_safetensors(concept), f"{slug}.safetensors",
                       "application/octet-stream", icon=":material/download:",
                       help=f"One tensor 'vector'; the metadata names the hook ({concept.hook_name}).")
