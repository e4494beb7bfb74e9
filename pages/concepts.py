"""Concepts: a direction at the SAE's hook from prompts with and without a concept (mean difference or
mean-centring), the SAE features it is made of, how much of it the top-k features reconstruct, and steering
side by side with the vector, its reconstruction and its best feature. Saved concepts open as `concepts?id=…`."""

from __future__ import annotations

import streamlit as st

from backend.concept_steering import SideBySideSettings
from backend.concepts import METHODS
from ui import concepts_view, identity, url_state
from ui.concepts_view import DRAFT_KEY, ConceptForm
from ui.feedback import flash, reported_errors
from ui.frame import page_frame
from ui.html import md_escape
from ui.navigation import CONCEPTS, page_header, share_box

SCOPE = "concepts"

ctx = page_frame(CONCEPTS)
share_slot = page_header("Concepts", "Two sets of prompts, with and without a concept, give a direction at the SAE's "
                         "hook: the mean difference of their activations (CAA), or the concept's mean minus the "
                         "dataset's mean (mean-centring). See which features it is made of, and steer with it.")
store = concepts_view.store_for(ctx)
concept_id = url_state.lenient(lambda: url_state.get_int("id", None, lo=1), None)
saved = None
if concept_id is not None:
    with reported_errors():
        saved = store.get(concept_id)
draft = st.session_state.get(DRAFT_KEY)
seed = saved or draft

with st.form("concept_form", border=False):
    suffix = concept_id or "new"  # a saved concept seeds fresh widgets
    name = st.text_input("Name", value=seed.name if seed else "", max_chars=100, key=f"concepts.name.{suffix}")
    with_col, without_col = st.columns(2)
    with_text = with_col.text_area("Prompts with the concept (one per line, \\n for a line break)", height=150,
                                   value=concepts_view.as_lines(seed.with_concept if seed else []),
                                   key=f"concepts.with.{suffix}")
    without_text = without_col.text_area("Prompts without the concept (CAA only)", height=150,
                                         value=concepts_view.as_lines(seed.without_concept if seed else []),
                                         key=f"concepts.without.{suffix}")
    upload = st.file_uploader("…or a .jsonl file instead", type=["jsonl"], key=f"concepts.upload.{suffix}",
                              help='One prompt a line: {"text": "...", "concept": true} (false: without).')
    method = st.segmented_control("Method", list(METHODS), format_func=METHODS.get, key=f"concepts.method.{suffix}",
                                  default=seed.method if seed else "caa") or "caa"
    submitted = st.form_submit_button("Compute", icon=":material/calculate:", type="primary")

if submitted:
    with reported_errors():
        form = ConceptForm(name, with_text, without_text, upload.getvalue() if upload else None, method)
        draft = concepts_view.compute(ctx, form, identity.author_name())
        st.session_state[DRAFT_KEY] = draft
        saved = None
        url_state.put("id", None)

current = saved if saved is not None else (draft if concept_id is None else None)
if current is None:
    st.info("Enter prompts with and without a concept, pick a method, and press Compute.", icon=":material/explore:")
else:
    with reported_errors():
        dec = concepts_view.decomposition(ctx, current)
        concepts_view.summary(current, dec)
        save_col, export_col, _ = st.columns([1, 1, 3], vertical_alignment="bottom")
        if current.concept_id is None:
            if save_col.button("Save for the team", icon=":material/save:"):
                stored = store.save(current)
                st.session_state.pop(DRAFT_KEY, None)
                url_state.put("id", str(stored.concept_id))
                flash(f"Saved '{md_escape(stored.name)}' as concept {stored.concept_id}.")
                st.rerun()
        else:
            save_col.caption(f"Saved concept {current.concept_id}" + (f" by {md_escape(current.author)}"
                                                                     if current.author else ""))
        with export_col:
            concepts_view.download_button(current)

        st.markdown("#### Which features it is made of")
        concepts_view.decomposition_tables(ctx, dec)
        st.markdown("#### How much of it the top-k features reconstruct")
        concepts_view.reconstruction_table(dec)

        st.markdown("#### Steer side by side")
        with st.form("concept_steer", border=False):
            prompt = url_state.url_text(SCOPE, "prompt", st.text_area, "Prompt", height=70,
                                        placeholder="Text to continue")
            s_col, k_col, n_col = st.columns(3)
            with s_col:
                strength = url_state.url_number(SCOPE, "s", "Strength (× the vector)", 4.0, -100.0, 100.0, step=0.5,
                                                format="%g")
            with k_col:
                k = url_state.url_number(SCOPE, "k", "Features in the reconstruction", 5, 1, 20, step=1)
            with n_col:
                new_tokens = url_state.url_number(SCOPE, "n", "New tokens", 24, 1, 128, step=8)
            st.form_submit_button("Steer", icon=":material/play_arrow:")
        if prompt.strip():
            result = concepts_view.side_by_side(ctx, current, dec, SideBySideSettings(prompt, strength, k, new_tokens))
            concepts_view.side_by_side_panel(result)
            concepts_view.effect_table(result)
        else:
            st.caption("Enter a prompt to steer with the vector, its top-k reconstruction and its best feature.")

st.markdown("#### Saved concepts")
with reported_errors():
    concepts_view.saved_table(store.summaries())

share_box(share_slot)
