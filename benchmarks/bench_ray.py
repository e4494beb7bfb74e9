"""The index build on Ray vs one process, on the same tokens.

    python benchmarks/bench_ray.py [--source demo] [--tokens 131072] [--workers 2] [--shards 4]

Each build runs in a fresh process. Prints the wall-clock ratio (single-process seconds / Ray seconds;
above 1 means Ray is faster: on a 2-core machine the workers share the cores with each other and with
the driver, so expect about 1 or below), the driver's merge seconds against its finalize seconds, and
the driver's peak RSS (Ray's workers are other processes and not counted in it).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import run_child  # noqa: E402


def child(kind: str, source: str, tokens: int, out: str, workers: int, shards: int) -> dict:
    from backend.index.build import IndexConfig, build_index
    from backend.sources import SourceSpec, load_source

    load_source(source)
    cfg = IndexConfig(tokens=tokens, progress=False, umap=False)
    start = time.perf_counter()
    if kind == "ray":
        import ray

        from backend.index.distributed import _worker_env, build_index_ray

        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": _worker_env()})
        start = time.perf_counter()  # cluster start-up is not the build
        build_index_ray(SourceSpec.parse(source), cfg, out, "local", shards)
        seconds = time.perf_counter() - start
        ray.shutdown()
    else:
        build_index(SourceSpec.parse(source), cfg, out)
        seconds = time.perf_counter() - start
    from backend.store import IndexStore

    with IndexStore.open(out) as store:
        meta = store.meta
    return {"seconds": seconds, "tokens": meta.tokens_processed, "finalize_s": meta.build_seconds_finalize,
            "stream_s": meta.build_seconds_stream,
            "merge_s": meta.build_seconds_merge or 0.0,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--source", default="demo")
    p.add_argument("--tokens", type=int, default=131_072)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--shards", type=int, default=4)
    p.add_argument("--child", action="store_true")
    p.add_argument("rest", nargs="*")
    args = p.parse_args()
    if args.child:
        kind, out = args.rest
        print(json.dumps(child(kind, args.source, args.tokens, out, args.workers, args.shards)))
        return
    tmp = Path(tempfile.mkdtemp(prefix="bench_ray_"))
    common = ["--source", args.source, "--tokens", str(args.tokens), "--workers", str(args.workers),
              "--shards", str(args.shards)]
    first = run_child(__file__, *common, "single", str(tmp / "single.duckdb"))
    ray = run_child(__file__, *common, "ray", str(tmp / "ray.duckdb"))
    again = run_child(__file__, *common, "single", str(tmp / "single2.duckdb"))  # before and after: drift shows
    single_s = (first["seconds"] + again["seconds"]) / 2
    single_stream = (first["stream_s"] + again["stream_s"]) / 2
    print(f"tokens                      {first['tokens']:,}  ({args.shards} shards, {args.workers} Ray workers, "
          f"{os.cpu_count()} cores)")
    print(f"single process              {first['seconds']:.1f} s and {again['seconds']:.1f} s "
          f"(stream {single_stream:.1f} s, finalize {first['finalize_s']:.1f} s)")
    print(f"Ray                         {ray['seconds']:.1f} s (shards {ray['stream_s']:.1f} s, merge "
          f"{ray['merge_s']:.2f} s, finalize {ray['finalize_s']:.1f} s)")
    print(f"speed-up, end to end        {single_s / ray['seconds']:.2f}x")
    print(f"speed-up, stream vs shards  {single_stream / ray['stream_s']:.2f}x")
    print(f"driver merge / finalize     ratio {ray['merge_s'] / ray['finalize_s']:.3f}")
    print(f"peak RSS, driver vs single  {ray['peak_rss_mb']:,.0f} MB vs {first['peak_rss_mb']:,.0f} MB")


if __name__ == "__main__":
    main()
