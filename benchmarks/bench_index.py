"""Index build benchmark: throughput ratio, memory vs token count, and query latency.

    python benchmarks/bench_index.py [--source demo] [--tokens 1000000]

Prints ratios measured in one run (absolute times drift on shared machines):
- build throughput / bare throughput, where bare = the same batches through the model up to
  the hook plus SAE encode, nothing else;
- peak RSS of a build over N tokens vs 10·N tokens (each in its own process);
- feature-page query p50 / p95 over 1,000 random features.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import query_latency  # noqa: E402


def bare_throughput(source: str, tokens: int, batch_size: int) -> float:
    import torch

    from backend.index.build import encode_batch
    from backend.index.datasets import dataset_texts, token_rows
    from backend.sources import load_source

    src = load_source(source)
    batches = list(token_rows(dataset_texts(None), src.tokenizer, src.context_size, src.prepend_bos, batch_size,
                              tokens))
    n = sum(b.numel() for b in batches)
    start = time.perf_counter()
    with torch.no_grad():
        for b in batches:
            encode_batch(src, b).float().cpu()
    return n / (time.perf_counter() - start)


def child_build(source: str, tokens: int, dataset: str | None, out: str, batch_size: int) -> None:
    """Run one build in this process and print its timings and peak RSS as JSON."""
    from backend.index.build import IndexConfig, build_index
    from backend.sources import SourceSpec, load_source

    load_source(source)  # model loading is not part of build throughput
    start = time.perf_counter()
    build_index(SourceSpec.parse(source), IndexConfig(tokens=tokens, dataset=dataset, batch_size=batch_size,
                                                      progress=False), out)
    total = time.perf_counter() - start
    from backend.store import IndexStore

    with IndexStore.open(out) as store:
        meta = store.meta
    print(json.dumps({"total_s": total, "stream_s": meta.build_seconds_stream, "tokens": meta.tokens_processed,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def run_child(source: str, tokens: int, dataset: str | None, out: str, batch_size: int) -> dict:
    cmd = [sys.executable, __file__, "--child", "--source", source, "--tokens", str(tokens), "--out", out,
           "--batch-size", str(batch_size)] + (["--dataset", dataset] if dataset else [])
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--source", default="demo")
    p.add_argument("--tokens", type=int, default=1_000_000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--memory-tokens", type=int, default=200_000, help="small run; the large run uses 10x")
    p.add_argument("--child", action="store_true")
    p.add_argument("--dataset", default=None)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    if args.child:
        child_build(args.source, args.tokens, args.dataset, args.out, args.batch_size)
        return
    tmp = Path(tempfile.mkdtemp())
    build = run_child(args.source, args.tokens, None, str(tmp / "main.duckdb"), args.batch_size)
    bare = bare_throughput(args.source, build["tokens"], args.batch_size)
    stream_tps = build["tokens"] / build["stream_s"]
    total_tps = build["tokens"] / build["total_s"]
    print(f"tokens indexed            {build['tokens']:,}")
    print(f"bare forward+encode       {bare:,.0f} tok/s")
    print(f"build, streaming pass     {stream_tps:,.0f} tok/s   ratio {stream_tps / bare:.2f}")
    print(f"build, end to end         {total_tps:,.0f} tok/s   ratio {total_tps / bare:.2f}  "
          f"({build['total_s']:.1f} s incl. neighbours, UMAP, write)")
    small = run_child(args.source, args.memory_tokens, "demo-train", str(tmp / "small.duckdb"), args.batch_size)
    large = run_child(args.source, args.memory_tokens * 10, "demo-train", str(tmp / "large.duckdb"), args.batch_size)
    print(f"peak RSS {small['tokens']:,} tok  {small['peak_rss_mb']:,.0f} MB;  {large['tokens']:,} tok  "
          f"{large['peak_rss_mb']:,.0f} MB;  ratio {large['peak_rss_mb'] / small['peak_rss_mb']:.2f}")
    p50, p95 = query_latency(str(tmp / "main.duckdb"))
    print(f"feature page query        p50 {p50:.1f} ms   p95 {p95:.1f} ms  (1,000 random features)")


if __name__ == "__main__":
    main()
