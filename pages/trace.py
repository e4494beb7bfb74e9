"""Trace: run a prompt, see which features fire on each token, the prompt's top features, and which
features push the model toward its next-token prediction."""

from __future__ import annotations

import streamlit as st

from backend.inference.schemas import TraceRequest
from ui import trace_view, url_state
from ui.feedback import reported_errors
from ui.frame import page_frame
from ui.html import md_escape
from ui.navigation import TRACE, page_header, share_box

SCOPE = "trace"
PER_TOKEN = 10

ctx = page_frame(TRACE)
share_slot = page_header("Trace a prompt", "Which features fire on each token, which matter most over the prompt, "
                         "and which push the next-token prediction.")

with st.form("trace_form", border=False):
    prompt = url_state.url_text(SCOPE, "prompt", st.text_area, "Prompt", height=110,
                                placeholder="Type or paste text to trace")
    density_col, top_col, bos_col, run_col = st.columns([2, 2, 2, 1], vertical_alignment="bottom")
    with density_col:
        density = url_state.url_number(SCOPE, "density", "Hide features denser than (0 = off)", 0.0, 0.0, 1.0,
                                       step=0.01, format="%g",
                                       help="Dense features fire almost everywhere and say little.")
    with top_col:
        top_n = url_state.url_number(SCOPE, "n", "Features to rank", *url_state.field_bounds(TraceRequest, "top_n"),
                                     step=5)
    with bos_col:
        # bos=1 in a link has always meant "count them", so the toggle says the same (off by default)
        include_bos = url_state.url_toggle(SCOPE, "bos", "Rank BOS / special tokens too",
                                           help="Off: the prompt's rankings leave BOS and other special tokens out.")
    run_col.form_submit_button("Trace", icon=":material/play_arrow:", type="primary", width="stretch")

position = url_state.lenient(lambda: url_state.get_int("pos", None, lo=0), None)
highlight = url_state.lenient(lambda: url_state.get_int("hl", None, 0, ctx.info.d_sae - 1), None)
if prompt.strip():
    with reported_errors():
        # Without a chosen feature, the engine shades by the prompt's top feature in the same call.
        request = TraceRequest(prompt=prompt, top_k=PER_TOKEN, top_n=top_n, density_threshold=density or None,
                               ignore_bos=not include_bos, position=position,
                               feature_ids=[] if highlight is None else [highlight],
                               trace_top_feature=highlight is None)
        result = trace_view.trace_or_last_token(ctx, request)
        default_highlight = result.top_by_max[0].feature_id if result.top_by_max else None
        labels = trace_view.feature_labels(ctx, result)
        selected = result.prediction.position

        strip_col, pick_col = st.columns([3, 1], vertical_alignment="top")
        with pick_col:
            shown = highlight if highlight is not None else default_highlight
            picked = url_state.url_widget(
                SCOPE, "hl", shown, default_highlight,
                lambda key: st.selectbox(
                    "Shade tokens by", trace_view.highlight_choices(result, shown), key=key,
                    format_func=lambda i: f"#{i} {labels.get(i, '')}",
                ),
                url_state.encode_number,
            )
        if picked != shown:
            st.rerun()  # re-trace with the newly picked feature's per-token values
        strip_col.html(trace_view.prompt_strip(result, labels, selected))
        chosen = url_state.url_widget(
            SCOPE, "pos", selected, len(result.tokens) - 1,
            lambda key: st.pills("Token", list(range(len(result.tokens))), key=key,
                                 format_func=trace_view.token_pills_format(result), label_visibility="collapsed"),
            url_state.encode_number,
        )
        if chosen is not None and chosen != selected:
            st.rerun()  # re-trace so the prediction and direct effects follow the chosen token

        left, right = st.columns([1, 1], gap="large")
        with left:
            st.markdown(f"**Features at token {selected}** "
                        f"({md_escape(trace_view.token_label(result.tokens[selected]))})")
            trace_view.token_features_table(result.token_features[selected].features, labels)
        with right:
            st.markdown("**Next-token prediction**")
            trace_view.prediction_panel(result, labels)

        trace_view.prompt_features_panel(result, labels, density)
else:
    st.info("Enter a prompt and press Trace.", icon=":material/keyboard:")

share_box(share_slot)
