"""Page state lives in the URL (`st.query_params`), so a copied link restores exactly what its sender saw.

Readers parse one parameter each and raise a one-sentence `UserError` when it is malformed. Widgets are
seeded from the URL and write their value back after each run (`url_widget`); a widget whose URL value
changed under it (a link, the back button) is reset to the URL's value."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

import streamlit as st
from pydantic import BaseModel

from backend.errors import UserError
from ui.html import md_escape

T = TypeVar("T")


def get_str(name: str, default: str = "") -> str:
    value = st.query_params.get(name)
    return default if value is None else value


def get_int(name: str, default: int | None = None, lo: int | None = None, hi: int | None = None) -> int | None:
    return _get_number(name, default, lo, hi, int, "a whole number")


def get_float(
    name: str, default: float | None = None, lo: float | None = None, hi: float | None = None
) -> float | None:
    return _get_number(name, default, lo, hi, float, "a number")


def _get_number(name: str, default: T | None, lo: float | None, hi: float | None, parse: Callable[[str], T],
                kind: str) -> T | None:
    raw = st.query_params.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = parse(raw.strip())
    except ValueError:
        raise UserError(f"The link's '{name}' must be {kind}, not '{raw}'.") from None
    if not math.isfinite(value):
        raise UserError(f"The link's '{name}' must be a finite number, not '{raw}'.")
    _check_range(name, value, lo, hi)
    return value


def get_bool(name: str, default: bool) -> bool:
    raw = st.query_params.get(name)
    if raw is None:
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise UserError(f"The link's '{name}' must be 1 or 0, not '{raw}'.")


def get_choice(name: str, choices: Sequence[str], default: str) -> str:
    raw = st.query_params.get(name)
    if raw is None:
        return default
    if raw not in choices:
        raise UserError(f"The link's '{name}' must be one of {', '.join(choices)}, not '{raw}'.")
    return raw


def _check_range(name: str, value: float, lo: float | None, hi: float | None) -> None:
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        bounds = f"between {lo} and {hi}" if lo is not None and hi is not None else (
            f"at least {lo}" if lo is not None else f"at most {hi}"
        )
        raise UserError(f"The link's '{name}' must be {bounds}, not {value:g}.")


def put(name: str, value: str | None) -> None:
    """Set a URL parameter (None or '' removes it); untouched when unchanged, so the URL does not churn."""
    if value is None or value == "":
        if name in st.query_params:
            del st.query_params[name]
    elif st.query_params.get(name) != value:
        st.query_params[name] = value


def encode_number(value: float | int) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def encode_bool(value: bool) -> str:
    return "1" if value else "0"


def lenient(read: Callable[[], T], fallback: T) -> T:
    """Read a parameter; if it is malformed, say so and carry on with the fallback (filters, not identities)."""
    try:
        return read()
    except UserError as exc:
        st.error(md_escape(str(exc)), icon=":material/link_off:")
        return fallback


def url_widget(
    scope: str,
    name: str,
    url_value: T,
    default: T,
    render: Callable[[str], T],
    encode: Callable[[T], str] = str,
) -> T:
    """Render a widget bound to URL parameter `name`: seeded from `url_value`, its value written back
    (removed from the URL when it equals `default`, keeping links short)."""
    key = f"{scope}.{name}"
    seen = f"_url_seen.{key}"
    if key not in st.session_state or st.session_state.get(seen) != url_value:
        st.session_state[key] = url_value
    st.session_state[seen] = url_value
    value = render(key)
    put(name, None if value == default or value is None else encode(value))
    return value


# ---- typed URL-bound widgets: the link check and the widget share one default and one set of bounds ----

N = TypeVar("N", int, float)


class FieldBounds(NamedTuple):
    default: Any
    lo: float | None
    hi: float | None


def field_bounds(model: type[BaseModel], name: str) -> FieldBounds:
    """A request field's default and inclusive bounds (ge / le), so a widget offers exactly what the API accepts."""
    info = model.model_fields[name]
    lo = next((m.ge for m in info.metadata if hasattr(m, "ge")), None)
    hi = next((m.le for m in info.metadata if hasattr(m, "le")), None)
    return FieldBounds(info.default, lo, hi)


def url_number(scope: str, name: str, label: str, default: N, lo: N | None = None, hi: N | None = None,
               **widget: Any) -> N:
    """`st.number_input` bound to URL parameter `name`; whole numbers when `default` is an int. A malformed or
    out-of-range link value says so in one sentence and falls back to `default`."""
    kind = int if isinstance(default, int) else float
    get = get_int if kind is int else get_float
    # Streamlit refuses mixed int/float bounds; schema bounds are often written as ints (le=5)
    lo, hi = (None if b is None else kind(b) for b in (lo, hi))
    url_value = lenient(lambda: get(name, default, lo, hi), default)
    return url_widget(scope, name, url_value, default,
                      lambda key: st.number_input(label, lo, hi, key=key, **widget), encode_number)


def url_choice(scope: str, name: str, label: str, options: Mapping[str, str], default: str,
               widget: Callable[..., str | None] = st.selectbox, **kwargs: Any) -> str:
    """A choice among `options` (URL value -> shown name) bound to URL parameter `name`; an unselected
    segmented control reads as `default`."""
    url_value = lenient(lambda: get_choice(name, list(options), default), default)
    return url_widget(scope, name, url_value, default, lambda key: widget(
        label, list(options), key=key, format_func=options.get, **kwargs)) or default


def url_toggle(scope: str, name: str, label: str, default: bool = False, **kwargs: Any) -> bool:
    url_value = lenient(lambda: get_bool(name, default), default)
    return url_widget(scope, name, url_value, default, lambda key: st.toggle(label, key=key, **kwargs), encode_bool)


def url_text(scope: str, name: str, widget: Callable[..., str], label: str, **kwargs: Any) -> str:
    """A text widget (`st.text_input`, `st.text_area`) bound to URL parameter `name`."""
    return url_widget(scope, name, get_str(name), "", lambda key: widget(label, key=key, **kwargs))
