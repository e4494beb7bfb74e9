"""The look shared by every page: token strips, chips, badges and diff marks. Colours are translucent
overlays or theme variables, so the same CSS reads on Streamlit's light and dark themes."""

from __future__ import annotations

import streamlit as st

_CSS = """
<style>
.strip { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 0.84rem;
         line-height: 1.9; white-space: nowrap; overflow-x: auto; padding: 1px 0; }
.strip.wrap { white-space: normal; overflow-wrap: anywhere; }
.tok { border-radius: 3px; padding: 1px 1px; white-space: pre; }
.tok-max { outline: 2px solid #d6336c; outline-offset: -1px; }
.ws { opacity: 0.38; }
.badge { display: inline-block; min-width: 3.2em; text-align: right; border-radius: 4px; padding: 0 6px;
         margin-right: 8px; font-family: ui-monospace, monospace; font-size: 0.78rem; }
.ex-row { display: flex; align-items: center; gap: 2px; border-bottom: 1px solid rgba(128,128,128,0.15); }
.ex-row .strip { flex: 1; min-width: 0; }
/* example rows: the framed token at the middle, context clipped at the outer edges (scrollable sideways;
   the left half is right-to-left so it starts scrolled to its end, next to the framed token) */
.strip.centred { display: flex; overflow: hidden; }
.ctx-before, .ctx-after { flex: 1 1 0; min-width: 0; overflow-x: auto; scrollbar-width: none; }
.ctx-before { direction: rtl; text-align: right;
              mask-image: linear-gradient(to right, transparent 0, #000 2.5em); }
.ctx-after { mask-image: linear-gradient(to left, transparent 0, #000 2.5em); }
.ctx-in { direction: ltr; unicode-bidi: isolate; display: inline-block; white-space: nowrap; }
.ctx-mid { flex: none; white-space: nowrap; }
.chip { display: inline-block; font-family: ui-monospace, monospace; font-size: 0.8rem; border-radius: 4px;
        padding: 0 5px; margin: 2px 3px 2px 0; background: rgba(128,128,128,0.14); white-space: pre; }
.chip.pos { background: rgba(31,119,180,0.22); }
.chip.neg { background: rgba(214,39,40,0.20); }
.logit-table { width: 100%; border-collapse: collapse; font-size: 0.82rem; }
.logit-table td { padding: 1px 4px; border-bottom: 1px solid rgba(128,128,128,0.12); }
.logit-table td.num { text-align: right; font-family: ui-monospace, monospace; opacity: 0.8; }
.interval-head { font-size: 0.8rem; opacity: 0.75; margin: 10px 0 2px 0; }
.diff-added { background: rgba(44,160,44,0.30); }
.diff-removed { background: rgba(214,39,40,0.25); text-decoration: line-through;
                text-decoration-color: rgba(214,39,40,0.7); }
.prompt-faint { opacity: 0.55; }
.feature-title { font-size: 1.55rem; font-weight: 650; margin: 0; }
.feature-title .fid { opacity: 0.55; font-weight: 500; margin-right: 0.4em; }
.label-source { font-size: 0.75rem; opacity: 0.6; margin-left: 0.6em; }
.label-source .stale { color: #d6336c; }
.hist-box { margin: 0 0 10px 0; }
.hist-title { font-size: 0.85rem; font-weight: 600; margin: 0 0 4px 0; }
.hist-frame { display: flex; gap: 4px; font-size: 0.7rem; }
.hist-y { display: flex; flex-direction: column; justify-content: space-between; text-align: right; opacity: 0.7;
          height: 140px; }
.hist-main { flex: 1; min-width: 0; }
.hist { display: flex; align-items: flex-end; gap: 1px; height: 140px;
        border-bottom: 1px solid rgba(128,128,128,0.35); }
.hist .bar { flex: 1 1 0; min-width: 0; }
.hist .bar:hover { opacity: 0.7; }
.hist-x { position: relative; display: flex; justify-content: space-between; opacity: 0.7; }
.hist-x .zero { position: absolute; transform: translateX(-50%); }
.hist-x-title { text-align: center; opacity: 0.7; }
[data-testid="stMetricValue"] { font-size: 1.55rem; }
[data-testid="stMetric"] { padding: 0; }
</style>
"""


def inject() -> None:
    st.html(_CSS)
