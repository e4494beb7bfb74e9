"""The feature page's explanations panel: every explanation of the feature with its source and scores."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from backend.explain.models import Explanation
from backend.labels import ShownLabel

_STATUS = {"ok": "scored", "not_enough_data": "not enough data", "failed": "failed"}


def explanations_table(items: list[Explanation]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "source": [e.source_name for e in items],
            "explanation": [e.text or "—" for e in items],
            "F1": [e.detection.f1 if e.status == "ok" and e.detection else None for e in items],
            "precision": [e.detection.precision if e.status == "ok" and e.detection else None for e in items],
            "recall": [e.detection.recall if e.status == "ok" and e.detection else None for e in items],
            "fuzzing F1": [e.fuzzing.f1 if e.status == "ok" and e.fuzzing else None for e in items],
            "status": [_STATUS[e.status] + (f": {e.reason}" if e.reason else "") for e in items],
        }
    )


def explanations_panel(items: list[Explanation], shown: ShownLabel) -> None:
    title = f"Explanations ({len(items)})" if items else "Explanations (none yet)"
    with st.expander(f"{title} · label shown: {shown.source_text}"):
        if not items:
            st.caption("Build them with `python -m backend explain --offline` (rules from this index) or with "
                       "`--explainer-url` (an LLM endpoint); see the README.")
            return
        number = lambda name: st.column_config.NumberColumn(name, format="%.2f", width="small")  # noqa: E731
        st.dataframe(
            explanations_table(items), hide_index=True, width="stretch",
            column_config={"explanation": st.column_config.TextColumn("explanation", width="large"),
                           "F1": number("F1"), "precision": number("precision"), "recall": number("recall"),
                           "fuzzing F1": number("fuzzing F1")},
        )
        st.caption("Scores are measured on held-out tokens the explainer never saw, balanced between tokens where "
                   "the feature fires and where it does not (delphi's detection framing; fuzzing for LLM judges). "
                   "Which label shows: team label > best-scored explanation > top tokens.")
