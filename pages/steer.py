"""Steer: generate from a prompt with and without adding (clamping, ablating) features, side by side, and
check that the steered features really fired more on the steered text."""

from __future__ import annotations

import streamlit as st

from backend.inference.schemas import SteerFeature, SteerRequest
from ui import live, steer_view, url_state
from ui.feedback import reported_errors
from ui.frame import page_frame
from ui.navigation import STEER, page_header, share_box
from ui.steer_view import SteerTarget

SCOPE = "steer"
MODES = {"add": "Add", "clamp": "Clamp", "ablate": "Ablate"}
POSITIONS = {"all": "Every token", "generated": "Generated tokens only"}


def request_field(name: str) -> url_state.FieldBounds:
    return url_state.field_bounds(SteerRequest, name)


ctx = page_frame(STEER)
share_slot = page_header("Steer", "Add a feature's decoder direction while generating (or clamp it, or ablate it) "
                         "and compare with the unsteered text. Strengths are in activation units; leave one empty "
                         "to use the index's calibrated strength (the smallest that made steered text evoke the "
                         "feature 3x), or its max activation when it has none.")

targets: list[SteerTarget] = url_state.lenient(lambda: steer_view.parse_targets(url_state.get_str("f")), [])
labels = ctx.catalog.labels_for([t.feature_id for t in targets])

steer_view.feature_finder(ctx, targets)

# ---- the request ---------------------------------------------------------------------------------------
with st.form("steer_form", border=False):
    prompt = url_state.url_text(SCOPE, "prompt", st.text_area, "Prompt", height=90, placeholder="Text to continue")
    editor_col, settings_col = st.columns([3, 2], gap="large")
    with editor_col:
        edited_targets = steer_view.targets_editor(targets, labels, ctx.info.d_sae,
                                                   key=f"steer.features.{url_state.get_str('f')}")
    with settings_col:
        # defaults and bounds come from SteerRequest, so the form offers exactly what the engine accepts
        mode = url_state.url_choice(SCOPE, "mode", "Mode", MODES, request_field("mode").default, st.segmented_control,
                                    help="add: + strength × decoder direction; clamp: set the activation to strength; "
                                         "ablate: set it to 0.")
        positions = url_state.url_choice(SCOPE, "at", "Positions", POSITIONS, request_field("positions").default,
                                         st.segmented_control)
        tokens_col, temp_col, seed_col = st.columns(3)
        with tokens_col:
            new_tokens = url_state.url_number(SCOPE, "n", "New tokens", *request_field("max_new_tokens"), step=8)
        with temp_col:
            temperature = url_state.url_number(SCOPE, "temp", "Temperature", *request_field("temperature"), step=0.1,
                                               format="%g", help="0 = greedy")
        with seed_col:
            seed = url_state.url_number(SCOPE, "seed", "Seed", *request_field("seed"), step=1)
        with st.expander("More sampling settings"):
            top_p_field = request_field("top_p")  # gt=0: the form's floor is one step above it
            top_p = url_state.url_number(SCOPE, "top_p", "Top-p", top_p_field.default, 0.01, top_p_field.hi, step=0.05,
                                         format="%g")
            freq_penalty = url_state.url_number(SCOPE, "fp", "Frequency penalty", *request_field("freq_penalty"),
                                                step=0.1, format="%g")
            multiplier = url_state.url_number(SCOPE, "mult", "Strength multiplier",
                                              *request_field("strength_multiplier"), step=0.5, format="%g")
    submitted = st.form_submit_button("Steer", icon=":material/play_arrow:", type="primary")

if submitted:  # the editor's rows become the URL's `f`, so the link reproduces them
    encoded = steer_view.encode_targets(edited_targets)
    if encoded != url_state.get_str("f"):
        url_state.put("f", encoded)
        st.rerun()

if not prompt.strip() or not targets:
    st.info("Enter a prompt, add at least one feature, and press Steer.", icon=":material/tune:")
else:
    with reported_errors():
        request = SteerRequest(
            prompt=prompt, features=[SteerFeature(feature_id=t.feature_id, strength=t.strength) for t in targets],
            mode=mode, positions=positions, max_new_tokens=new_tokens, temperature=temperature, seed=seed,
            top_p=top_p, freq_penalty=freq_penalty, strength_multiplier=multiplier,
        )
        result = live.steer(ctx, request)
        steer_view.continuations_panel(result)
        st.markdown("**Did the features fire more?**")
        steer_view.evidence_table(result, labels)
        if hint := steer_view.steering_hint(result):
            st.info(hint, icon=":material/tips_and_updates:")
        steer_view.activation_chart(result, labels)

share_box(share_slot)
