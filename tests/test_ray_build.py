"""The index build on a local Ray cluster (started by the test on loopback, 2 CPUs): 4 shards of the demo,
a worker killed mid-shard and retried, the driver killed after two shards and re-run (only the missing
shards are computed), and the result equal to the single-process index in every deterministic table."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import duckdb

from backend.index.build import IndexConfig, build_index
from backend.index.distributed import KILL_DRIVER_AFTER_SHARDS_ENV, KILL_SHARD_ONCE_ENV, build_index_ray, plan_shards
from backend.index.meta import IndexMeta
from backend.sources import SourceSpec

ROOT = Path(__file__).resolve().parents[1]
CFG = IndexConfig(tokens=4 * 16 * 128, batch_size=16, top_k=5, per_interval=3, umap=False, progress=False,
                  steerability=False)  # steerability has its own tests; here it would run three times
DETERMINISTIC = {
    "features": "SELECT * EXCLUDE (umap_x, umap_y, cluster) FROM features ORDER BY feature_id",
    "top examples": "SELECT * FROM examples WHERE kind = 'top' ORDER BY feature_id, rank",
    "vocab": "SELECT * FROM vocab ORDER BY token_id",
}


def _read(path: Path, sql: str):
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _meta(path: Path) -> IndexMeta:
    return IndexMeta.from_stored({k: json.loads(v) for k, v in _read(path, "SELECT key, value FROM meta")})


def test_shards_are_whole_batches_covering_the_budget():
    shards = plan_shards(CFG, 128, 4)
    assert [(s.first_row, s.end_row) for s in shards] == [(0, 16), (16, 32), (32, 48), (48, 64)]
    uneven = plan_shards(IndexConfig(tokens=10 * 128, batch_size=4), 128, 3)
    assert [(s.first_row, s.end_row) for s in uneven] == [(0, 4), (4, 8), (8, 10)]
    assert len(plan_shards(IndexConfig(tokens=128, batch_size=4), 128, 8)) == 1


def test_ray_build_survives_a_dead_worker_and_a_dead_driver(tmp_path):
    out = tmp_path / "ray.duckdb"
    marker = tmp_path / "worker-killed"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", KILL_SHARD_ONCE_ENV: f"0:{marker}",
           KILL_DRIVER_AFTER_SHARDS_ENV: "2"}
    script = ("import sys, json; sys.path.insert(0, sys.argv[1]);"
              "from backend.index.build import IndexConfig; from backend.index.distributed import build_index_ray;"
              "from backend.sources import SourceSpec;"
              "build_index_ray(SourceSpec.parse('demo'), IndexConfig(**json.loads(sys.argv[2])), sys.argv[3], "
              "'local', 4)")
    run = subprocess.run([sys.executable, "-c", script, str(ROOT), json.dumps(CFG.__dict__), str(out)], env=env,
                         capture_output=True, text=True, timeout=150)
    subprocess.run([sys.executable, "-m", "ray.scripts.scripts", "stop", "--force"], capture_output=True, timeout=60)
    assert run.returncode == -signal.SIGKILL, run.stderr[-3000:]
    assert marker.exists(), "shard 0's worker was killed once (and retried by Ray)"
    saved = sorted(p.name for p in (tmp_path / f".{out.name}.build").glob("ray-4-shards/shard-*.pt"))
    assert len(saved) == 2 and not out.exists()

    build_index_ray(SourceSpec.parse("demo"), CFG, out, "local", 4)  # the same command, re-run
    meta = _meta(out)
    assert meta.ray_shards == 4 and meta.ray_shards_reused == 2
    assert not (tmp_path / f".{out.name}.build").exists()

    single = build_index(SourceSpec.parse("demo"), CFG, tmp_path / "single.duckdb")
    for name, sql in DETERMINISTIC.items():
        assert _read(out, sql) == _read(single, sql), f"{name} differ between the Ray and single-process builds"
    for key in ("tokens_processed", "tokens_counted", "rows", "coactivation_tokens"):
        assert getattr(meta, key) == getattr(_meta(single), key)
    # interval samples: other random keys, but each one a member of its interval, as many as the interval holds
    ray_iv = _read(out, "SELECT feature_id, interval_idx, count(*) FROM examples WHERE kind = 'interval' GROUP BY ALL")
    one_iv = _read(single, "SELECT feature_id, interval_idx, count(*) FROM examples WHERE kind = 'interval' "
                           "GROUP BY ALL")
    assert sorted(ray_iv) == sorted(one_iv), "the same number of samples in every interval"
    bad = _read(out, """SELECT count(*) FROM examples e JOIN features f USING (feature_id) WHERE kind = 'interval'
                        AND NOT (value > interval_idx * f.hist_bound / 10 AND value <= (interval_idx + 1) *
                        f.hist_bound / 10 * (1 + 1e-6))""")
    assert bad == [(0,)]
