"""Who is editing: the name recorded with team labels, list entries and notes, and sign-in in team mode.

Off team mode (the default, loopback only) it is a free-text name kept per browser session (never in the URL:
a shared link must not sign the receiver's edits with the sender's name); `SAE_EXPLORER_USER` seeds it.
In team mode (`backend/access.py`) every page first requires sign-in, and the name is the signed-in identity:
the OIDC user's e-mail (Streamlit's `st.login`, when `[auth]` is in the secrets), or the name given with the
team's passphrase. The sidebar then shows that identity instead of a name box."""

from __future__ import annotations

import os

import streamlit as st

from backend import access
from ui.html import md_escape

_KEY = "author_name"
_SIGNED_IN = "_signed_in_as"
_BACKOFF = "_sign_in_backoff"
MAX_NAME = 60


def _secret(key: str) -> object | None:
    try:
        return st.secrets.get(key)
    except Exception:  # no secrets file at all: Streamlit raises instead of answering "absent"
        return None


def oidc_configured() -> bool:
    return bool(_secret("auth"))


def configured_passphrase() -> str:
    return str(_secret(access.PASSPHRASE_SECRET) or os.environ.get(access.PASSPHRASE_ENV, ""))


def _oidc_identity() -> str | None:
    if not st.user.get("is_logged_in", False):  # absent when Streamlit itself sees no [auth] section
        return None
    return str(st.user.get("email") or st.user.get("name") or st.user.get("sub") or "")[:MAX_NAME] or None


def author_name() -> str:
    if access.team_mode():
        return (_oidc_identity() if oidc_configured() else st.session_state.get(_SIGNED_IN)) or ""
    return st.session_state.get(_KEY, os.environ.get("SAE_EXPLORER_USER", "")).strip()[:MAX_NAME]


def require_sign_in() -> None:
    """In team mode, stop the page with a sign-in form until this session has signed in."""
    if not access.team_mode():
        return
    if oidc_configured():
        if _oidc_identity() is None:
            st.subheader("Sign in", anchor=False)
            st.caption("This dashboard is shared with a team; sign in to browse and edit.")
            if st.button("Sign in", icon=":material/login:", type="primary", key="oidc_login"):
                try:
                    st.login()
                except Exception as exc:  # e.g. Authlib missing, or an [auth] section Streamlit rejects
                    st.error(f"Sign-in is configured but cannot start: {md_escape(str(exc).splitlines()[0])}")
            st.stop()
        return
    expected = configured_passphrase()
    if len(expected) < access.MIN_PASSPHRASE_CHARS:
        st.error(f"Team mode needs sign-in, and none is configured: set {access.PASSPHRASE_ENV} (at least "
                 f"{access.MIN_PASSPHRASE_CHARS} characters) or '{access.PASSPHRASE_SECRET}' or an [auth] section "
                 "in .streamlit/secrets.toml.", icon=":material/lock:")
        st.stop()
    if st.session_state.get(_SIGNED_IN):
        return
    backoff = st.session_state.setdefault(_BACKOFF, access.session_backoff())
    st.subheader("Sign in", anchor=False)
    with st.form("sign_in", border=True):
        name = st.text_input("Your name (signs your labels and notes)", max_chars=MAX_NAME, key="sign_in_name")
        given = st.text_input("Team passphrase", type="password", max_chars=access.MAX_INPUT_CHARS,
                              key="sign_in_passphrase")
        submitted = st.form_submit_button("Sign in", icon=":material/login:", type="primary")
    if submitted:
        who = access.clean_name(name)
        attempt = access.check_passphrase(given, expected, backoff)
        if not attempt.ok:
            st.error(attempt.message, icon=":material/lock:")
        elif not who:
            st.error("Type your name: it is recorded with what you edit.")
        else:
            st.session_state[_SIGNED_IN] = who
            st.rerun()
    st.stop()


def sidebar_author_input() -> None:
    """Off team mode a 'your name' box (its value outlives page switches); in team mode who is signed in."""
    if access.team_mode():
        st.sidebar.caption(f"Signed in as **{md_escape(author_name())}**")
        if st.sidebar.button("Sign out", icon=":material/logout:", key="sign_out"):
            st.session_state.pop(_SIGNED_IN, None)
            if oidc_configured():
                st.logout()
            st.rerun()
        return

    def remember() -> None:
        st.session_state[_KEY] = st.session_state[f"_{_KEY}_widget"]

    st.sidebar.text_input("Your name (signs labels and notes)", value=author_name(), max_chars=MAX_NAME,
                          key=f"_{_KEY}_widget", on_change=remember, placeholder="anonymous")
