"""The panels of the feature page, each rendered from the typed FeaturePage payload."""

from __future__ import annotations

import streamlit as st

from backend.catalog import LabelDetail
from backend.errors import UserError
from backend.inference.schemas import TraceRequest
from backend.labels import ShownLabel
from backend.payloads import Example, FeaturePage, FeatureQuery, FeatureRow, IntervalGroup, LogitEntry, Neighbour
from ui import live, url_state
from ui.charts import BLUE, ORANGE, RED
from ui.feedback import flash, reported_errors
from ui.histogram_html import HistogramStyle, histogram_html
from ui.html import Shade, StripToken, centred_strip, chip, esc, md_escape, token_strip, value_badge
from ui.identity import author_name
from ui.navigation import FEATURE, link
from ui.resources import IndexContext


def title_html(feature_id: int, detail: LabelDetail, dead: bool, sae_sha256: str | None = None) -> str:
    shown, team = detail.shown, detail.team
    source = "automatic label (top tokens)"
    if shown.source == "explanation":
        source = f"explanation ({esc(shown.method)}{':' + esc(shown.model) if shown.model else ''}) · " \
                 f"F1 {shown.score:.2f} on held-out tokens"
    if team is not None:
        source = "team label" + (f" by {esc(team.author)}" if team.author else "")
        source += f" · {team.updated_at[:10]}"
        if team.possibly_stale(sae_sha256):
            source += (' · <b class="stale" title="The SAE weights behind this index changed after the label was '
                       'written: check it still fits.">possibly stale</b>')
    dead_mark = ' <span class="label-source">· dead</span>' if dead else ""
    return (
        f'<p class="feature-title"><span class="fid">#{feature_id}</span>{esc(shown.text) or "(no label)"}'
        f'<span class="label-source">{source}</span>{dead_mark}</p>'
    )


def open_feature(ctx: IndexContext) -> FeaturePage:
    """The feature the URL's `id` names (the first live one without an id); a bad id stops the page with a
    sentence and a way on."""
    try:
        feature_id = url_state.get_int("id")
        if feature_id is None:
            first = ctx.store.list_features(FeatureQuery(limit=1)).rows
            feature_id = first[0].feature_id if first else 0
        page = ctx.store.feature_page(feature_id)
    except UserError as exc:
        st.error(md_escape(str(exc)), icon=":material/link_off:")
        link(FEATURE, "Open the first feature", {"id": 0}, icon=":material/arrow_forward:")
        st.stop()
    url_state.put("id", str(feature_id))
    return page


def title_row(ctx: IndexContext, page: FeaturePage, detail: LabelDetail):
    """Title, previous / next / random feature, and a slot for the "copy link" box, which it returns."""
    feature_id = page.row.feature_id
    # one row that sizes each control to its label: fixed-ratio columns wrapped "Copy link" at 1280 px
    with st.container(horizontal=True, vertical_alignment="center", gap="small"):
        st.html(title_html(feature_id, detail, page.row.dead, ctx.info.sae_weights_sha256), width="stretch")
        if feature_id > 0:
            link(FEATURE, f"#{feature_id - 1}", {"id": feature_id - 1}, icon=":material/chevron_left:",
                 help="Previous feature")
        if feature_id < page.d_sae - 1:
            link(FEATURE, f"#{feature_id + 1}", {"id": feature_id + 1}, icon=":material/chevron_right:",
                 icon_position="right", help="Next feature")
        if st.button("", icon=":material/casino:", help="Random live feature", key="random_feature"):
            url_state.put("id", str(ctx.store.random_feature_id()))
            url_state.put("text", None)
            st.rerun()
        return st.container(width="content")


def metrics_panel(page: FeaturePage) -> None:
    row = page.row
    cols = st.columns(5, border=True)
    cols[0].metric("Density", f"{row.density:.3%}" if row.density >= 1e-4 else f"{row.density:.2e}",
                   help="Fraction of indexed tokens (special tokens excluded) where it fires.")
    cols[1].metric("Max activation", f"{row.max_act:.3f}")
    cols[2].metric("Mean activation", f"{row.mean_act:.3f}", help="Mean over the tokens where it fires.")
    cols[3].metric("Fires on", f"{page.fire_count:,} tokens")
    cols[4].metric("Cluster", f"{row.cluster}", help="UMAP cluster of its decoder direction (see the map).")
    if not row.dead:
        steerability_panel(row)


def label_form(ctx: IndexContext, row: FeatureRow, shown: ShownLabel) -> None:
    """Set or reset the team label; it then shows everywhere, for everyone on this server."""
    feature_id = row.feature_id
    # a row that sizes its buttons to their labels (fixed-ratio columns cut "Save" to "S…" at 1400 px)
    with st.form(f"label_form.{feature_id}", border=False), \
            st.container(horizontal=True, vertical_alignment="bottom", gap="small"):
        new_label = st.text_input(
            "Label (shared with the team; overrides the automatic label everywhere)", value=shown.text,
            max_chars=200, key=f"label_text.{feature_id}",
        )
        save = st.form_submit_button("Save", icon=":material/save:", width="content")
        reset = st.form_submit_button("Auto", icon=":material/restart_alt:", width="content",
                                      help="Remove the team label: the best-scored explanation shows again, "
                                           f"else the automatic label {md_escape(row.label)}")
        if save or reset:
            with reported_errors():
                ctx.team.set_label(feature_id, "" if reset else new_label, author=author_name())
                flash("Label reset to the automatic one." if reset or not new_label.strip() else "Label saved.")
                st.rerun()


def example_rows_html(examples: list[Example], shade: Shade) -> str:
    rows = []
    for ex in examples:
        tokens = [StripToken(t.text, t.act, f"id {t.token_id}") for t in ex.tokens]
        strip = centred_strip(tokens, shade, ex.center)
        rows.append(f'<div class="ex-row">{value_badge(ex.value, shade)}{strip}</div>')
    return "".join(rows) or '<p class="interval-head">No examples.</p>'


def intervals_html(intervals: list[IntervalGroup], shade: Shade) -> str:
    parts = []
    for group in intervals:
        shown = f"{len(group.examples)} shown" if group.examples else "none sampled"
        parts.append(
            f'<p class="interval-head"><b>{group.lo:.3f} – {group.hi:.3f}</b> · '
            f"{group.activations_in_interval:,} activations in this range · {shown}</p>"
        )
        parts.append(example_rows_html(group.examples, shade) if group.examples else "")
    return "".join(parts)


def logit_table_html(entries: list[LogitEntry], kind: str) -> str:
    rows = "".join(
        f'<tr><td>{chip(e.token, kind, f"token id {e.token_id}")}</td><td class="num">{e.value:+.3f}</td></tr>'
        for e in entries
    )
    return f'<table class="logit-table">{rows}</table>'


def examples_panel(page: FeaturePage, shade: Shade) -> None:
    top_tab, interval_tab = st.tabs([f"Top activations ({len(page.top_examples)})", "By activation interval"])
    with top_tab:
        st.html(example_rows_html(page.top_examples, shade))
        st.caption("Framed: the token the example is about. Hover a token for its activation.")
    with interval_tab:
        st.html(intervals_html(page.intervals, shade))
        st.caption("Ranges split (0, max]; zero activations are not counted. Examples are sampled uniformly.")


def logits_panel(page: FeaturePage) -> None:
    norm = "through the final layer norm" if page.logits_through_final_ln else "without the final layer norm"
    st.markdown("**Output tokens** (decoder direction × unembedding)")
    pos_col, neg_col = st.columns(2)
    with pos_col:
        st.caption("Promoted")
        st.html(logit_table_html(page.logit_pos, "pos"))
    with neg_col:
        st.caption("Suppressed")
        st.html(logit_table_html(page.logit_neg, "neg"))
    st.caption(f"Logits computed {norm}.")


def histograms_panel(page: FeaturePage) -> None:
    # inline SVG, not Plotly: its bundle was the largest share of a fresh load (benchmarks/bench_browser.py)
    st.html(histogram_html(page.activation_hist, HistogramStyle(
        f"Activation histogram · {page.fire_count:,} firings", "activation (non-zero only)", "tokens", ORANGE)))
    st.html(histogram_html(page.logit_hist, HistogramStyle(
        "Logit-weight histogram", "W_dec[f] · W_U", "vocabulary tokens", BLUE, RED)))


def neighbour_links(neighbours: list[Neighbour], labels: dict[int, str], score_name: str) -> None:
    if not neighbours:
        st.caption("None recorded.")
        return
    for n in neighbours:
        name_col, score_col = st.columns([5, 1], vertical_alignment="center")
        with name_col:
            label = labels.get(n.feature_id, n.label)
            link(FEATURE, f"**#{n.feature_id}** {md_escape(label)}", {"id": n.feature_id},
                 help=f"{score_name} {n.score:.3f}")
        score_col.caption(f"{n.score:.2f}")


def neighbours_panel(page: FeaturePage, labels: dict[int, str]) -> None:
    cos_tab, co_tab = st.tabs(["Decoder cosine", "Co-activation"])
    with cos_tab:
        neighbour_links(page.cosine_neighbours, labels, "cosine similarity of decoder directions")
    with co_tab:
        neighbour_links(page.coactivation_neighbours, labels, "Jaccard index of the tokens both fire on")


def try_it_result(ctx: IndexContext, row: FeatureRow, text: str) -> None:
    """The feature's activation on every token of the reader's text, shaded on the same scale as the examples."""
    result = live.trace(ctx, TraceRequest(prompt=text, feature_ids=[row.feature_id], top_k=1, top_n=1))
    values = result.feature_traces[0].values
    peak = max(range(len(values)), key=values.__getitem__) if values else None
    strip = [StripToken(t.text, v, f"position {i}") for i, (t, v) in enumerate(zip(result.tokens, values, strict=True))]
    outline = peak if peak is not None and values[peak] > 0 else None
    st.html(token_strip(strip, Shade(max([row.max_act, *values]) or 1.0), outline, wrap_lines=True, css_class="wrap"))
    fired = sum(v > 0 for v in values)
    st.caption(f"Fires on {fired} of {len(values)} tokens · peak {max(values, default=0):.3f} "
               f"(index max {row.max_act:.3f})")


def steerability_panel(row: FeatureRow) -> None:
    """Output score, input score and calibrated strength (backend/index/steerability.py), or why they are missing."""
    if row.output_score is None:
        st.caption("Steerability was not measured for this feature (dead, or an index built without the stage: "
                   "`python -m backend steerability --index …`).")
        return
    cols = st.columns(3, border=True)
    cols[0].metric("Output score", f"{row.output_score:.4f}",
                   help="How much adding the feature (10x the largest activation, at the last token of neutral "
                        "prompts) raises the probability of the tokens it promotes: rank x probability of its best "
                        "logit-lens token (Arad et al. 2025). High output scores steer well.")
    cols[1].metric("Input score", "n/a" if row.input_score is None else f"{row.input_score:.2f}",
                   help="Fraction of its top examples whose peak token is one it promotes: high for features that "
                        "mirror their input (Arad et al. 2025).")
    if row.calibrated_strength is None:
        cols[2].metric("Calibrated strength", "none", help="No rung of the ladder (1-16x max act) made the steered "
                                                           "text evoke the feature 3x more than the default text.")
    else:
        multiplier = row.calibrated_strength / row.max_act if row.max_act else float("nan")
        cols[2].metric("Calibrated strength", f"{row.calibrated_strength:.2f}", f"{multiplier:g}x max act",
                       delta_color="off", help="The smallest strength of the ladder at which the steered text "
                                               "evokes the feature at least 3x more than the default text; the Steer "
                                               "page's default when adding.")
