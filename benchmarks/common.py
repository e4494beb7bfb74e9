"""Pieces the benchmarks share: running one measurement in a fresh process, and feature-page latency."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_child(script: str, *args: str) -> dict:
    """`script --child ARGS` in a fresh process (so peak RSS is that job's alone); its last stdout line is JSON."""
    res = subprocess.run([sys.executable, script, "--child", *args], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if res.returncode != 0:
        raise SystemExit(res.stderr[-3000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


def query_latency(index: str, n: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Feature-page query p50 / p95 in ms over n random features (after one warm-up query)."""
    from backend.store import IndexStore

    with IndexStore.open(index) as store:
        ids = [random.Random(seed).randrange(store.d_sae) for _ in range(n)]
        store.feature_page(ids[0])
        times = []
        for fid in ids:
            t = time.perf_counter()
            store.feature_page(fid)
            times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return times[len(times) // 2], times[int(len(times) * 0.95)]
