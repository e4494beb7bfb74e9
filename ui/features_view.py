"""The Features page's table: one page of the catalog's listing, one row a feature, a click opens it."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from backend.catalog import FeatureListing
from ui.html import plain_token
from ui.navigation import FEATURE_LINK_COLUMN, feature_links

PAGE_SIZE = 200
SORTS = {"feature_id": "Id", "density": "Density", "max_act": "Max activation", "mean_act": "Mean activation",
         "label": "Label", "top_token": "Top token", "label_score": "Explanation F1", "output_score": "Output score",
         "input_score": "Input score", "calibrated_strength": "Calibrated strength"}


def page_count(listing: FeatureListing) -> int:
    return max(1, -(-listing.total // PAGE_SIZE))


def features_frame(listing: FeatureListing) -> pd.DataFrame:
    features = listing.features
    return pd.DataFrame(
        {
            "open": feature_links(f.feature_id for f in features),
            "id": [f.feature_id for f in features],
            "label": [("✎ " if f.by_team else "") + f.label for f in features],
            "label source": [f.shown.source_text for f in features],
            "explanation F1": [f.explanation_score for f in features],
            "top token": [plain_token(f.row.top_token) for f in features],
            "density": [f.row.density for f in features],
            "max act": [f.row.max_act for f in features],
            "mean act": [f.row.mean_act for f in features],
            "output score": [f.row.output_score for f in features],
            "input score": [f.row.input_score for f in features],
            "calibrated strength": [f.row.calibrated_strength for f in features],
            "cluster": [f.row.cluster for f in features],
            "dead": [f.row.dead for f in features],
        }
    )


def _column_config(max_act: float) -> dict[str, object]:
    def number(name: str, fmt: str, **kwargs) -> object:
        return st.column_config.NumberColumn(name, format=fmt, width="small", **kwargs)

    return {
        "open": FEATURE_LINK_COLUMN,
        "id": number("id", "%d"),
        "label": st.column_config.TextColumn("label", width="large"),
        "label source": st.column_config.TextColumn(
            "label source", width="small",
            help="team label > best-scored explanation (its F1 on held-out tokens) > top tokens"),
        "explanation F1": number("explanation F1", "%.2f"),
        "top token": st.column_config.TextColumn("top token", width="small"),
        "density": number("density", "%.2e"),
        "max act": st.column_config.ProgressColumn("max act", format="%.2f", min_value=0.0, max_value=max_act),
        "mean act": number("mean act", "%.2f"),
        "output score": number("output score", "%.4f"),
        "input score": number("input score", "%.2f"),
        "calibrated strength": number(
            "calibrated strength", "%.2f",
            help="The Steer page's default add strength; empty: no rung of the ladder evoked the feature."),
        "cluster": number("cluster", "%d"),
        "dead": st.column_config.CheckboxColumn("dead", width="small"),
    }


def features_table(listing: FeatureListing, page_number: int, caption_slot, key: str) -> int | None:
    """Draw the table (its caption in `caption_slot`); the id of the row the reader selected, if any. `key`
    names the filters, so a new filter starts with no row selected."""
    pages = page_count(listing)
    caption_slot.caption(
        f"{listing.total:,} matching · page {page_number} of {pages} · select a row to open it "
        "(✎ = label set by the team; otherwise the best-scored explanation, else the top tokens)"
    )
    if page_number > pages:
        st.info(f"There are only {pages} pages of results.")
    frame = features_frame(listing)
    max_act = max([f.row.max_act for f in listing.features], default=1.0) or 1.0
    event = st.dataframe(
        frame, hide_index=True, width="stretch", height=min(36 + 35 * len(frame), 640), on_select="rerun",
        selection_mode="single-row", key=key, column_config=_column_config(max_act),
    )
    if event.selection.rows:
        return int(frame.iloc[event.selection.rows[0]]["id"])
    return None
