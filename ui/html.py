"""Safe HTML and Markdown for untrusted text (token strings, labels, notes), and shaded token strips.

Every token and label shown as HTML goes through `esc`, every one shown as Markdown through `md_escape`,
so `<script>` or `"><img onerror=…>` shows as text. Whitespace is made visible (· for a space, ↵ for a
newline, → for a tab) because a feature that fires on a space must be seen firing on something."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from backend.tokens import visible_whitespace

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]#|~$])")
_MD_LINE_START = re.compile(r"^(\s*\d*)([-+.)])(?=\s|$)")


def esc(text: str) -> str:
    return html.escape(text, quote=True)


def md_escape(text: str) -> str:
    """Text that Markdown shows verbatim: HTML as entities, inline Markdown punctuation backslash-escaped
    (`$` too, so no LaTeX), a leading list marker escaped; newlines become spaces."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\n", " ")
    text = _MD_SPECIAL.sub(r"\\\1", text)
    return _MD_LINE_START.sub(r"\1\\\2", text)


def md_code(text: str) -> str:
    """Inline code span: Markdown and HTML are inert inside it; only backticks could end it early."""
    return "`" + text.replace("`", "'").replace("\n", " ") + "`"


def plain_token(text: str) -> str:
    """Token text for plain-text places (tables, menus): whitespace made visible, a partial character as ⋯."""
    return visible_whitespace(text) if text else "⋯"


def visible_token(text: str) -> str:
    """Escaped token text with whitespace drawn as faint symbols; an empty piece (the leading bytes of a
    character that a later token completes) as a faint dotted box."""
    if text == "":
        return '<span class="ws">⋯</span>'
    out = []
    for ch in text:
        if ch == " ":
            out.append('<span class="ws">·</span>')
        elif ch == "\n":
            out.append('<span class="ws">↵</span>')
        elif ch == "\t":
            out.append('<span class="ws">→</span>')
        elif ch == "\r":
            out.append('<span class="ws">␍</span>')
        else:
            out.append(esc(ch))
    return "".join(out)


@dataclass(frozen=True)
class StripToken:
    text: str
    value: float  # what the shade shows (an activation)
    note: str = ""  # extra hover text (position, logprob, …)


@dataclass(frozen=True)
class Shade:
    """How values map to colour: `scale` is the value drawn at full strength."""

    scale: float
    rgb: tuple[int, int, int] = (255, 127, 14)  # orange reads on light and dark backgrounds alike

    def background(self, value: float) -> str:
        if self.scale <= 0 or value <= 0:
            return "transparent"
        alpha = 0.12 + 0.73 * min(value / self.scale, 1.0)
        r, g, b = self.rgb
        return f"rgba({r},{g},{b},{alpha:.2f})"


def token_strip(
    tokens: list[StripToken],
    shade: Shade,
    outline: int | None = None,
    wrap_lines: bool = False,
    css_class: str = "",
) -> str:
    """One line (or wrapped text when `wrap_lines`) of tokens, each shaded by its value, its value on hover,
    the token at `outline` framed."""
    parts = []
    for i, tok in enumerate(tokens):
        parts.append(_token_span(tok, shade, i == outline))
        if wrap_lines and "\n" in tok.text:
            parts.append("<br>")
    return f'<div class="strip {css_class}">{"".join(parts)}</div>'


def _token_span(tok: StripToken, shade: Shade, framed: bool) -> str:
    title = f"{tok.text!r}  {tok.value:.3f}" + (f"  {tok.note}" if tok.note else "")
    classes = "tok" + (" tok-max" if framed else "")
    return (f'<span class="{classes}" style="background:{shade.background(tok.value)}" title="{esc(title)}">'
            f"{visible_token(tok.text)}</span>")


def centred_strip(tokens: list[StripToken], shade: Shade, centre: int) -> str:
    """One line of tokens with the token at `centre` framed and drawn at the middle of the row at any width:
    the context before it is right-aligned in the left half, the context after it left-aligned in the right
    half, each half clipped at its outer edge (scrollable sideways) so the framed token is never cut off."""
    centre = min(max(centre, 0), len(tokens) - 1) if tokens else 0
    before = "".join(_token_span(t, shade, False) for t in tokens[:centre])
    after = "".join(_token_span(t, shade, False) for t in tokens[centre + 1:])
    framed = _token_span(tokens[centre], shade, True) if tokens else ""
    return (f'<div class="strip centred"><div class="ctx-before"><span class="ctx-in">{before}</span></div>'
            f'<div class="ctx-mid">{framed}</div>'
            f'<div class="ctx-after"><span class="ctx-in">{after}</span></div></div>')


def value_badge(value: float, shade: Shade) -> str:
    return f'<span class="badge" style="background:{shade.background(value)}">{value:.2f}</span>'


def chip(text: str, extra_class: str = "", title: str = "") -> str:
    """A token shown on its own (logit tables, predictions)."""
    title_attr = f' title="{esc(title)}"' if title else ""
    return f'<span class="chip {extra_class}"{title_attr}>{visible_token(text)}</span>'


def diff_strip(texts: list[str], changed: list[bool], titles: list[str], kind: str) -> str:
    """Generated text with the tokens that differ from the other run marked (`kind`: added or removed)."""
    parts = []
    for text, is_changed, title in zip(texts, changed, titles, strict=True):
        cls = f"tok diff-{kind}" if is_changed else "tok"
        parts.append(f'<span class="{cls}" title="{esc(title)}">{visible_token(text)}</span>')
        if "\n" in text:
            parts.append("<br>")
    return f'<div class="strip wrap">{"".join(parts)}</div>'
