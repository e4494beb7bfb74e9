"""The dashboard in a real headless Chromium against a bare one-title Streamlit page, in one run:

- fresh load: a new browser context opens `feature?id=N` and waits until the title, the examples and both
  histograms are drawn and the script run is over; the same for a bare `st.title` page;
- next feature: a click on "#N+1" until the new title is drawn and the run is over, against a click on a
  bare page's button until its rerun is drawn.

Also where the time goes: bytes of JavaScript the browser fetched (of which Plotly's bundle) and bytes of the
websocket messages the server sent for the page and for the click.

    .venv/bin/python benchmarks/bench_browser.py [--index cache/demo.duckdb] [--reps 5]

Without the index it builds the tests' tiny index in a temporary folder (seconds)."""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ROOT  # noqa: E402
from tests.support.tiny_source import streamlit_server  # noqa: E402

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
BARE_APP = """import streamlit as st
st.title("Bare page")
if "n" not in st.session_state:
    st.session_state.n = 0
if st.button("rerun"):
    st.session_state.n += 1
st.markdown(f"runs: {st.session_state.n}")
"""
IDLE = "!document.querySelector(\"[data-testid='stStatusWidgetRunningIcon']\")"
FEATURE_READY = (f"(id) => {IDLE} && document.querySelector('p.feature-title') && "
                 "document.querySelector('p.feature-title').innerText.startsWith('#' + id) && "
                 "document.querySelectorAll('.hist .bar').length >= 2 && "
                 "document.querySelector('.ex-row')")
BARE_READY = f"(n) => {IDLE} && document.body.innerText.includes('runs: ' + n)"
# the bare page plus one small Plotly chart: what Plotly alone costs a fresh load
PLOTLY_APP = """import plotly.graph_objects as go
import streamlit as st
st.title("Bare page")
st.plotly_chart(go.Figure(go.Bar(x=list(range(50)), y=list(range(50)))), config={"displayModeBar": False})
"""
PLOTLY_READY = f"(n) => {IDLE} && document.querySelectorAll('.js-plotly-plot .main-svg').length >= 1"


def tiny_index(folder: Path) -> Path:
    from backend.index.build import IndexConfig, build_index
    from backend.sources import SourceSpec
    from tests.support.tiny_source import TINY_TEXT, build_tiny_source

    dirs = build_tiny_source(folder / "source")
    data = folder / "corpus.txt"
    data.write_text("\n".join(TINY_TEXT * 40), encoding="utf-8")
    config = IndexConfig(tokens=6_000, batch_size=8, window_before=24, window_after=8, top_k=20, per_interval=5,
                         progress=False, dataset=str(data))
    return build_index(SourceSpec.parse(dirs.spec), config, folder / "tiny.duckdb")


class Load:
    def __init__(self, seconds: float, js_bytes: int, plotly_bytes: int, ws_bytes: int, ws_frames: int,
                 dom_s: float, ws_first_s: float, ws_last_s: float):
        self.seconds, self.js_bytes, self.plotly_bytes = seconds, js_bytes, plotly_bytes
        self.ws_bytes, self.ws_frames = ws_bytes, ws_frames
        # phases: HTML + JS bundle loaded and parsed; first message of the script run; last message sent
        self.dom_s, self.ws_first_s, self.ws_last_s = dom_s, ws_first_s, ws_last_s


def fresh_load(browser, url: str, ready: str, arg) -> tuple[Load, object]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    frames: list[int] = []
    stamps: list[float] = []

    def received(payload) -> None:
        frames.append(len(payload))
        stamps.append(time.perf_counter())

    page.on("websocket", lambda ws: ws.on("framereceived", received))
    start = time.perf_counter()
    page.goto(url)
    page.wait_for_function(ready, arg=arg, timeout=120_000, polling=20)
    seconds = time.perf_counter() - start
    dom = page.evaluate("() => performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd") / 1000
    resources = page.evaluate("() => performance.getEntriesByType('resource').map(r => "
                              "[r.name, r.initiatorType, r.decodedBodySize])")
    js = [(name, size) for name, kind, size in resources if name.split("?")[0].endswith(".js")]
    plotly = sum(size for name, size in js if "plotly" in name.lower())
    first, last = (stamps[0] - start, stamps[-1] - start) if stamps else (0.0, 0.0)
    return (Load(seconds, sum(s for _, s in js), plotly, sum(frames), len(frames), dom, first, last),
            (context, page, frames))


def median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", default=None, help="default: cache/demo.duckdb if present, else a tiny index")
    parser.add_argument("--feature", type=int, default=3)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("Chromium is not installed ('./run.sh test' installs it).")
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        index = Path(args.index) if args.index else ROOT / "cache" / "demo.duckdb"
        if not index.is_file():
            print("building a tiny index (no cache/demo.duckdb) …", flush=True)
            index = tiny_index(tmp)
        bare = tmp / "bare" / "bare_app.py"
        bare.parent.mkdir()
        bare.write_text(BARE_APP)
        with_plotly = bare.parent / "plotly_app.py"
        with_plotly.write_text(PLOTLY_APP)
        env = {"SAE_EXPLORER_INDEX": str(index), "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
        with streamlit_server(ROOT / "app.py", env, tmp / "app.log") as app_url, \
                streamlit_server(bare, env, tmp / "bare.log") as bare_url, \
                streamlit_server(with_plotly, env, tmp / "plotly.log") as plotly_url, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            fid = args.feature
            # one untimed load of each: the server's first run imports and opens everything once per process
            for url, ready, arg in [(f"{app_url}/feature?id={fid}", FEATURE_READY, fid), (bare_url, BARE_READY, 0),
                                    (plotly_url, PLOTLY_READY, 0)]:
                _, (context, _, _) = fresh_load(browser, url, ready, arg)
                context.close()
            feature_loads, bare_loads, plotly_loads, next_clicks, bare_clicks, click_ws = [], [], [], [], [], []
            for _ in range(args.reps):
                load, (context, page, frames) = fresh_load(browser, f"{app_url}/feature?id={fid}", FEATURE_READY,
                                                           fid)
                feature_loads.append(load)
                frames.clear()
                start = time.perf_counter()
                page.get_by_role("link", name=f"#{fid + 1}").first.click()
                page.wait_for_function(FEATURE_READY, arg=fid + 1, timeout=120_000, polling=20)
                next_clicks.append(time.perf_counter() - start)
                click_ws.append(sum(frames))
                context.close()
                load, (context, page, _) = fresh_load(browser, bare_url, BARE_READY, 0)
                bare_loads.append(load)
                start = time.perf_counter()
                page.get_by_role("button", name="rerun").click()
                page.wait_for_function(BARE_READY, arg=1, timeout=60_000, polling=20)
                bare_clicks.append(time.perf_counter() - start)
                context.close()
                load, (context, _, _) = fresh_load(browser, plotly_url, PLOTLY_READY, 0)
                plotly_loads.append(load)
                context.close()
            browser.close()

    f_load, b_load = median([x.seconds for x in feature_loads]), median([x.seconds for x in bare_loads])
    f_click, b_click = median(next_clicks), median(bare_clicks)
    last_f, last_b = feature_loads[-1], bare_loads[-1]
    print(f"index: {index.name} · feature {fid} · {args.reps} reps, medians · Chromium {chromium}")
    print(f"fresh load   feature page {f_load:.2f} s · bare page {b_load:.2f} s · ratio {f_load / b_load:.2f} "
          "(target <= 2)")
    print(f"next feature click {f_click:.2f} s · bare rerun {b_click:.2f} s · above bare {f_click - b_click:+.2f} s "
          "(target <= +0.5 s)")
    p_load = median([x.seconds for x in plotly_loads])
    print(f"bare page + one Plotly chart {p_load:.2f} s: Plotly alone costs a fresh load {p_load - b_load:+.2f} s")
    for name, loads in [("feature page", feature_loads), ("bare page", bare_loads)]:
        print(f"phases, {name}: HTML+JS parsed {median([x.dom_s for x in loads]):.2f} s · first script message "
              f"{median([x.ws_first_s for x in loads]):.2f} s · last {median([x.ws_last_s for x in loads]):.2f} s · "
              f"drawn {median([x.seconds for x in loads]):.2f} s")
    print(f"JavaScript fetched: feature page {last_f.js_bytes / 1e6:.2f} MB (Plotly {last_f.plotly_bytes / 1e6:.2f} "
          f"MB) · bare {last_b.js_bytes / 1e6:.2f} MB")
    print(f"websocket from the server: feature page {last_f.ws_bytes / 1e3:.0f} kB in {last_f.ws_frames} frames · "
          f"bare {last_b.ws_bytes / 1e3:.1f} kB in {last_b.ws_frames} · next-feature click "
          f"{median(click_ws) / 1e3:.0f} kB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
