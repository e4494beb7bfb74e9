"""What a reader feels on a big index: Features search latency from the query layer, and the Map page in
real Chromium (fresh browser context -> map drawn, then a click on a point -> its feature page).

    python benchmarks/bench_ui.py --index /tmp/scale1m/index_1048576.duckdb [--searches 40] [--loads 3]

Build the index first, e.g. `python benchmarks/bench_scale.py --sizes 1048576 --tokens 4096 --keep /tmp/scale1m`.
Prints JSON lines and a table; times are wall-clock on this machine (compare within one run).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.tiny_source import free_port, wait_until_answering  # noqa: E402

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
# the drawn scatter's middle point, in page pixels, and its feature id
POINT_JS = """() => {
    const gd = document.querySelector('.js-plotly-plot');
    if (!gd || !gd._fullData) return null;
    const trace = gd._fullData.find(t => t.type === 'scattergl');
    if (!trace || !trace.x || !trace.x.length) return null;
    const layout = gd._fullLayout, box = gd.getBoundingClientRect(), i = Math.floor(trace.x.length / 2);
    return {x: box.left + layout.xaxis._offset + layout.xaxis.l2p(trace.x[i]),
            y: box.top + layout.yaxis._offset + layout.yaxis.l2p(trace.y[i]), id: trace.customdata[i][0],
            n: trace.x.length};
}"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def search_latency(index: str, n: int, seed: int = 0) -> dict:
    """Features-page searches as the page runs them (label/token ILIKE, hide dead, first page), over words
    drawn from the index's own labels and some that match nothing."""
    from backend.payloads import FeatureQuery
    from backend.store import IndexStore

    with IndexStore.open(index) as store:
        words = [w for r in store.list_features(FeatureQuery(limit=500, hide_dead=True)).rows
                 for w in r.label.split(" | ") if w.strip()]
        rng = random.Random(seed)
        misses = ["zzqx", "no such label", "Ω", "12345"]  # a search that matches nothing scans everything
        queries = [rng.choice(words) for _ in range(n - n // 4)] + [misses[i % len(misses)] for i in range(n // 4)]
        store.list_features(FeatureQuery(search=queries[0]))  # warm
        times, totals = [], []
        for q in queries:
            start = time.perf_counter()
            table = store.list_features(FeatureQuery(search=q, hide_dead=True, limit=50))
            times.append((time.perf_counter() - start) * 1000)
            totals.append(table.total)
    return {"searches": len(times), "search_p50_ms": statistics.median(times), "search_p95_ms": percentile(times, 0.95),
            "median_matches": statistics.median(totals)}


def map_in_browser(index: str, loads: int) -> dict:
    from playwright.sync_api import sync_playwright

    port = free_port()
    env = {**os.environ, "SAE_EXPLORER_INDEX": str(Path(index).resolve()), "PYTHONPATH": str(ROOT),
           "HF_HUB_OFFLINE": "1"}
    log = Path("/tmp") / f"bench_ui_streamlit_{port}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port",
             str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
             "--server.fileWatcherType", "none"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    opens, clicks, drawn = [], [], 0
    try:
        wait_until_answering(f"{url}/_stcore/health", proc, timeout=120, log=log)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
            for attempt in range(loads + 1):  # the first load warms the server's caches (points, figure)
                context = browser.new_context(viewport={"width": 1440, "height": 1000})
                context.set_default_timeout(180_000)
                page = context.new_page()
                start = time.perf_counter()
                page.goto(f"{url}/map")
                page.wait_for_function(POINT_JS, polling=50, timeout=180_000)
                opened = time.perf_counter() - start
                point = page.evaluate(POINT_JS)
                page.mouse.move(point["x"], point["y"])
                time.sleep(0.3)  # plotly picks the hovered point; a click without it selects nothing
                start = time.perf_counter()
                page.mouse.click(point["x"], point["y"])
                page.locator("p.feature-title").wait_for()
                clicked = time.perf_counter() - start
                title = page.locator("p.feature-title").inner_text()
                if not title.startswith(f"#{point['id']}"):
                    raise SystemExit(f"the click opened '{title}', not feature {point['id']}")
                if attempt:
                    opens.append(opened)
                    clicks.append(clicked)
                drawn = point["n"]
                print(json.dumps({"load": attempt, "map_open_s": opened, "click_to_feature_s": clicked,
                                  "warm_up": attempt == 0}), flush=True)
                context.close()
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return {"map_open_s": statistics.median(opens), "map_open_max_s": max(opens),
            "click_to_feature_s": statistics.median(clicks), "points_drawn": drawn}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--index", required=True)
    p.add_argument("--searches", type=int, default=40)
    p.add_argument("--loads", type=int, default=3)
    args = p.parse_args()
    from backend.store import IndexStore

    with IndexStore.open(args.index) as store:
        d_sae = store.d_sae
    result = {"features": d_sae, "index_mb": os.path.getsize(args.index) / 2**20,
              **search_latency(args.index, args.searches), **map_in_browser(args.index, args.loads)}
    print(json.dumps(result))
    print("\n| features | search p50 / p95 ms | map opens (fresh context), median / max s | click to feature s | "
          "points drawn |")
    print("|---|---|---|---|---|")
    print(f"| {d_sae:,} | {result['search_p50_ms']:.0f} / {result['search_p95_ms']:.0f} | "
          f"{result['map_open_s']:.1f} / {result['map_open_max_s']:.1f} | {result['click_to_feature_s']:.1f} | "
          f"{result['points_drawn']:,} |")


if __name__ == "__main__":
    main()
