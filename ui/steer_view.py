"""Steering page pieces: the features-and-strengths URL parameter, the token diff between the default
and steered continuations, and the panels that show them."""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass

import pandas as pd
import streamlit as st

from backend.errors import UserError
from backend.inference.schemas import MAX_STEER_FEATURES, Generation, SteerResponse, TokenInfo
from backend.payloads import FeatureQuery
from ui import charts, url_state
from ui.charts import ActivationSeries
from ui.html import diff_strip, esc, visible_token
from ui.resources import IndexContext

STRENGTH_BASIS = {"request": "you", "calibrated": "index (calibrated)", "max_activation": "index (max act)"}


@dataclass(frozen=True)
class SteerTarget:
    feature_id: int
    strength: float | None  # None: the index's default (calibrated add strength, else max activation)


def parse_targets(text: str) -> list[SteerTarget]:
    """`12:4.5,30` -> feature 12 at strength 4.5 and feature 30 at its default strength."""
    targets: list[SteerTarget] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        fid, _, strength = part.partition(":")
        try:
            target = SteerTarget(int(fid), float(strength) if strength.strip() else None)
        except ValueError:
            raise UserError(f"The link's steering feature '{part}' should look like 12 or 12:4.5.") from None
        if target.feature_id < 0 or (target.strength is not None and not math.isfinite(target.strength)):
            raise UserError(f"The link's steering feature '{part}' needs an id ≥ 0 and a finite strength.")
        if target.feature_id not in {t.feature_id for t in targets}:
            targets.append(target)
    if len(targets) > MAX_STEER_FEATURES:
        raise UserError(f"At most {MAX_STEER_FEATURES} features can be steered at once; the link has {len(targets)}.")
    return targets


def encode_targets(targets: list[SteerTarget]) -> str:
    return ",".join(f"{t.feature_id}" + ("" if t.strength is None else f":{t.strength:g}") for t in targets)


def targets_from_editor(frame: pd.DataFrame) -> list[SteerTarget]:
    """Rows of the features editor -> targets (rows without an id are ignored, repeats kept once)."""
    targets: list[SteerTarget] = []
    for fid, strength in zip(frame["feature"], frame["strength"], strict=True):
        if fid is None or pd.isna(fid):
            continue
        value = None if strength is None or pd.isna(strength) else float(strength)
        if int(fid) not in {t.feature_id for t in targets}:
            targets.append(SteerTarget(int(fid), value))
    return targets


def targets_editor(targets: list[SteerTarget], labels: dict[int, str], d_sae: int, key: str) -> list[SteerTarget]:
    """The features editor, filled from the link's targets; returns the targets its rows hold now."""
    frame = pd.DataFrame({
        "feature": pd.Series([t.feature_id for t in targets], dtype="Int64"),
        "label": [labels.get(t.feature_id, "") for t in targets],
        "strength": pd.Series([t.strength for t in targets], dtype="Float64"),
    })
    edited = st.data_editor(
        frame, num_rows="dynamic", hide_index=True, width="stretch", key=key,
        column_config={
            "feature": st.column_config.NumberColumn("feature id", min_value=0, max_value=d_sae - 1, step=1,
                                                     format="%d", required=True),
            "label": st.column_config.TextColumn("label", disabled=True),
            "strength": st.column_config.NumberColumn("strength (empty = index default)", format="%.2f"),
        },
    )
    return targets_from_editor(edited)


def feature_finder(ctx: IndexContext, targets: list[SteerTarget]) -> None:
    """Add a feature by id or by words of its label; outside the form, as it changes the editor's rows."""
    find_col, match_col, add_col = st.columns([2, 3, 1], vertical_alignment="bottom")
    find = find_col.text_input("Add a feature", placeholder="id, or words from a label or token", key="steer.find")
    query = FeatureQuery(search=find, limit=25, sort="max_act", descending=True)
    matches = ctx.catalog.list_features(query).features if find.strip() else []
    picked = match_col.selectbox("Matches", matches, format_func=lambda f: f"#{f.feature_id} · {f.label}",
                                 disabled=not matches, placeholder="no match" if find.strip() else "type to search")
    if add_col.button("Add", icon=":material/add:", disabled=picked is None, width="stretch") and picked is not None:
        if picked.feature_id not in {t.feature_id for t in targets}:
            url_state.put("f", encode_targets([*targets, SteerTarget(picked.feature_id, None)]))
        st.rerun()


@dataclass(frozen=True)
class DiffMarks:
    default_changed: list[bool]
    steered_changed: list[bool]


def diff_marks(default: list[str], steered: list[str]) -> DiffMarks:
    """Which tokens of each continuation the other does not share (difflib on token texts)."""
    a_changed, b_changed = [False] * len(default), [False] * len(steered)
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, default, steered, autojunk=False).get_opcodes():
        if tag in ("replace", "delete"):
            a_changed[i1:i2] = [True] * (i2 - i1)
        if tag in ("replace", "insert"):
            b_changed[j1:j2] = [True] * (j2 - j1)
    return DiffMarks(a_changed, b_changed)


def _titles(generation: Generation, feature_ids: list[int]) -> list[str]:
    def one(feature_id: int, evoked: float, read: float) -> str:
        return f"#{feature_id} {evoked:.2f}" + (f" (model reads {read:.2f})" if abs(read - evoked) > 5e-3 else "")

    return [
        f"logprob {t.logprob:.2f} · " + " · ".join(
            one(f, a, b) for f, a, b in zip(feature_ids, t.feature_activations, t.feature_activations_after_edit,
                                            strict=True))
        for t in generation.tokens
    ]


def _prompt_html(tokens: list[TokenInfo]) -> str:
    return '<span class="prompt-faint">' + "".join(visible_token(t.text) for t in tokens if not t.special) + "</span>"


def continuations_panel(result: SteerResponse) -> None:
    steered_texts = [t.token.text for t in result.steered.tokens]
    default_texts = [t.token.text for t in result.default.tokens] if result.default else []
    marks = diff_marks(default_texts, steered_texts)
    prompt = _prompt_html(result.prompt_tokens)
    default_col, steered_col = st.columns(2, gap="medium")
    with default_col:
        st.markdown("**Default**")
        if result.default:
            titles = _titles(result.default, result.feature_ids)
            body = diff_strip(default_texts, marks.default_changed, titles, "removed")
            st.html(f'<div class="strip wrap">{prompt}</div>{body}')
        else:
            st.caption("Not generated.")
    with steered_col:
        st.markdown(f"**Steered** ({result.mode})")
        body = diff_strip(steered_texts, marks.steered_changed, _titles(result.steered, result.feature_ids), "added")
        st.html(f'<div class="strip wrap">{prompt}</div>{body}')
    changed = sum(marks.steered_changed)
    st.caption(f"Highlighted: tokens that differ between the runs ({changed} of {len(steered_texts)} steered tokens). "
               "Hover a token for its log-probability and the steered features' activations.")


def evidence_table(result: SteerResponse, labels: dict[int, str]) -> None:
    rows = [
        {"feature": s.feature_id, "label": labels.get(s.feature_id, ""), "strength": s.strength,
         "strength from": STRENGTH_BASIS[s.strength_basis],
         "mean act default": s.mean_default, "mean act steered (model reads)": s.mean_steered_after_edit,
         "mean act steered (text evokes)": s.mean_steered,
         "active default": s.active_fraction_default, "active steered": s.active_fraction_steered}
        for s in result.summary
    ]
    percent = st.column_config.NumberColumn(format="percent")
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", column_config={
        "feature": st.column_config.NumberColumn(format="%d", width="small"),
        "strength": st.column_config.NumberColumn(format="%.2f"),
        "mean act default": st.column_config.NumberColumn(format="%.3f"),
        "mean act steered (model reads)": st.column_config.NumberColumn(
            format="%.3f", help="Encoded from the residual after the steering edit: what the later layers see."),
        "mean act steered (text evokes)": st.column_config.NumberColumn(
            format="%.3f", help="Encoded from the residual before the edit: what the steered text itself evokes."),
        "active default": percent, "active steered": percent,
    })


def unregistered_features(result: SteerResponse) -> list[int]:
    """Features added with a positive strength that the SAE still never reads as active after the edit: the
    strength was too small to lift them into the SAE's top-k (some features read little of their own decoder
    direction). Clamp and ablate set the activation directly, so they are never listed."""
    return [s.feature_id for s in result.summary
            if result.mode == "add" and s.strength > 0 and s.mean_steered_after_edit == 0]


def steering_hint(result: SteerResponse) -> str | None:
    weak = unregistered_features(result)
    if not weak:
        return None
    ids = ", ".join(f"#{f}" for f in weak)
    return (f"{ids} never fired after the edit at this strength, so the rest of the model saw too little of "
            "the feature to act on; raise the strength multiplier (e.g. 2–4) under More sampling settings.")


def activation_chart(result: SteerResponse, labels: dict[int, str]) -> None:
    series = []
    for k, fid in enumerate(result.feature_ids):
        colour = charts.PALETTE[k % len(charts.PALETTE)]
        name = f"#{fid} {esc(labels.get(fid, '')[:24])}"
        runs = [("steered", result.steered, False)] + ([("default", result.default, True)] if result.default else [])
        for run_name, generation, dashed in runs:
            series.append(ActivationSeries(
                f"{name} ({run_name})", [esc(t.token.text) for t in generation.tokens],
                [t.feature_activations[k] for t in generation.tokens], dashed, colour,
            ))
    st.plotly_chart(charts.steered_activation_lines(series), width="stretch", config={"displayModeBar": False},
                    key="steer_lines")
