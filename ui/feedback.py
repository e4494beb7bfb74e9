"""Problems the reader can fix are shown as one sentence in a red box, never as a traceback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st
from pydantic import ValidationError

from backend.errors import UserError
from ui.html import md_escape


def one_sentence(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "__root__")
        message = str(first.get("msg", "is not valid")).removeprefix("Value error, ")
        return f"{where}: {message}" if where else message
    return str(exc)


@contextmanager
def reported_errors() -> Iterator[None]:
    """Run a block; a UserError or a refused request inside it becomes an st.error and the page goes on."""
    try:
        yield
    except (UserError, ValidationError) as exc:
        st.error(md_escape(one_sentence(exc)), icon=":material/error:")


_FLASH_KEY = "_flash_message"


def flash(message: str) -> None:
    """A confirmation to show after the st.rerun() that follows a save."""
    st.session_state[_FLASH_KEY] = message


def show_flash() -> None:
    message = st.session_state.pop(_FLASH_KEY, None)
    if message:
        st.toast(message, icon=":material/check_circle:")
