"""Who is editing: the name recorded with team labels and list entries.

Kept per browser session (never in the URL: a shared link must not sign the receiver's edits with the
sender's name). `SAE_EXPLORER_USER` seeds it, e.g. for a team server started per person."""

from __future__ import annotations

import os

import streamlit as st

_KEY = "author_name"
MAX_NAME = 60


def author_name() -> str:
    return st.session_state.get(_KEY, os.environ.get("SAE_EXPLORER_USER", "")).strip()[:MAX_NAME]


def sidebar_author_input() -> None:
    """A 'your name' box in the sidebar; its value outlives page switches in this session."""
    def remember() -> None:
        st.session_state[_KEY] = st.session_state[f"_{_KEY}_widget"]

    st.sidebar.text_input("Your name (signs labels and notes)", value=author_name(), max_chars=MAX_NAME,
                          key=f"_{_KEY}_widget", on_change=remember, placeholder="anonymous")
