"""Histograms as plain HTML bars: the feature page's two histograms without Plotly.

benchmarks/bench_browser.py found Plotly's 4.7 MB bundle costs a fresh page load about 2 s on its own (a bare
page with one Plotly chart against the bare page), the largest share of the feature page's extra time; a
50-bar histogram needs none of it. Divs, not <svg>: Streamlit's HTML sanitizer removes inline SVG. Each bar has its
range and count on hover; text takes the theme's colour."""

from __future__ import annotations

from dataclasses import dataclass

from backend.payloads import Histogram
from ui.html import esc


@dataclass(frozen=True)
class HistogramStyle:
    title: str
    x_title: str
    unit: str  # what a count counts, for the hover text
    positive: str  # colour of bars right of zero (all bars when `negative` is empty)
    negative: str = ""


def _num(value: float) -> str:
    return f"{value:.3g}" if value else "0"


def histogram_html(hist: Histogram, style: HistogramStyle) -> str:
    """Bars as flex items of one row (Streamlit's HTML sanitizer drops <svg>); every bin keeps its slot."""
    counts, edges = hist.counts, hist.edges
    top = max(counts, default=0) or 1
    bars = []
    for count, lo, hi in zip(counts, edges[:-1], edges[1:], strict=True):
        colour = style.negative if style.negative and hi <= 0 else style.positive
        hover = f"{_num(lo)} to {_num(hi)}: {count:,} {style.unit}"
        bars.append(f'<div class="bar" style="height:{100 * count / top:.2f}%;background:{colour}" '
                    f'title="{esc(hover)}"></div>')
    span = (hist.hi - hist.lo) or 1.0
    zero = (f'<span class="zero" style="left:{100 * (0 - hist.lo) / span:.2f}%">0</span>'
            if hist.lo < 0 < hist.hi else "")
    return (f'<div class="hist-box"><p class="hist-title">{esc(style.title)}</p>'
            f'<div class="hist-frame"><div class="hist-y"><span>{top:,}</span><span>0</span></div>'
            f'<div class="hist-main"><div class="hist" role="img" aria-label="{esc(style.title)}">{"".join(bars)}</div>'
            f'<div class="hist-x"><span>{_num(hist.lo)}</span>{zero}<span>{_num(hist.hi)}</span></div>'
            f'<div class="hist-x-title">{esc(style.x_title)}</div></div></div></div>')
