"""The index at real SAE sizes: random TopK SAEs of 4k / 65k / 1M features on the demo LM.

    python benchmarks/bench_scale.py [--sizes 4096,65536,1048576] [--tokens 65536,65536,4096]

For each size, in fresh processes (so peak RSS is that of one job):
- bare: the same batches through the model to the hook and SAE.encode (in the builder's chunks,
  since 1M features x 4,096 tokens dense is 16 GB), nothing else kept: tok/s;
- build: `build_index` end to end: streaming tok/s and its ratio to bare, finalize seconds (of which
  the windows pass: re-encoding the batches that hold examples), peak RSS;
- decoder-neighbour recall@10 of the index against exact cosine for 1,000 random features;
- feature-page query p50/p95 over 1,000 random features, and the index file's size.
Ratios are measured in one run: absolute times drift on shared machines.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import query_latency, run_child  # noqa: E402

DEMO = ROOT / "backend" / "demo" / "artifacts"
STAGES = ("neighbours", "logits", "map", "windows", "write")


def make_random_sae(folder: Path, d_sae: int, k: int = 32, seed: int = 0) -> Path:
    """A TopK SAE folder SAELens loads, reading the demo's hook, with random unit-norm decoder rows."""
    import torch
    from safetensors.torch import save_file

    cfg = json.loads((DEMO / "sae" / "cfg.json").read_text())
    cfg.update(d_sae=d_sae, k=k)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cfg.json").write_text(json.dumps(cfg))
    gen = torch.Generator().manual_seed(seed)
    d_in = cfg["d_in"]
    w_dec = torch.nn.functional.normalize(torch.randn(d_sae, d_in, generator=gen), dim=1)
    save_file({"W_enc": w_dec.T.contiguous(), "b_enc": torch.zeros(d_sae), "W_dec": w_dec,
               "b_dec": torch.zeros(d_in)}, str(folder / "sae_weights.safetensors"))
    return folder


def spec_for(sae_dir: Path) -> str:
    return f"local:{DEMO / 'lm'}:{sae_dir}:{DEMO / 'tokenizer'}"


def child_bare(spec: str, tokens: int, batch_size: int) -> dict:
    import torch

    from backend.index.datasets import dataset_texts, token_rows
    from backend.index.sparse import chunk_tokens, hook_activations
    from backend.sources import load_source

    src = load_source(spec)
    batches = list(token_rows(dataset_texts(None), src.tokenizer, src.context_size, src.prepend_bos, batch_size,
                              tokens))
    step = chunk_tokens(src.d_sae, src.device)
    start = time.perf_counter()
    with torch.no_grad():
        for b in batches:
            x = hook_activations(src, b).reshape(b.numel(), -1)
            for i in range(0, len(x), step):
                src.sae.encode(x[i : i + step]).sum().item()  # force the work, keep nothing
    seconds = time.perf_counter() - start
    return {"tokens": sum(b.numel() for b in batches), "seconds": seconds}


def child_build(spec: str, tokens: int, batch_size: int, out: str, activation_log_gb: float) -> dict:
    from backend.index.build import IndexConfig, build_index
    from backend.sources import SourceSpec, load_source

    load_source(spec)  # loading the weights is not the build's throughput
    start = time.perf_counter()
    # steerability (one forward pass per batch of live features) is a demo-sized stage, off as for `local:` sources
    build_index(SourceSpec.parse(spec), IndexConfig(tokens=tokens, batch_size=batch_size, progress=False,
                                                    steerability=False, activation_log_gb=activation_log_gb), out)
    total = time.perf_counter() - start  # the build only, not opening it below
    from backend.store import IndexStore

    with IndexStore.open(out) as store:
        meta = store.meta
    return {"total_s": total, "stream_s": meta.build_seconds_stream,
            "finalize_s": meta.build_seconds_finalize, "windows_s": meta.build_seconds_windows,
            "stage_s": {k: getattr(meta, f"build_seconds_{k}") or 0.0 for k in STAGES},
            "stage_peak_rss_mb": meta.build_peak_rss_mb, "neighbour_method": meta.neighbour_method,
            "tokens": meta.tokens_processed,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def neighbour_recall(sae_dir: Path, index: str, n: int = 1000, k: int = 10) -> float:
    import duckdb
    import torch
    from safetensors.torch import load_file

    w = torch.nn.functional.normalize(load_file(str(sae_dir / "sae_weights.safetensors"))["W_dec"], dim=1)
    ids = random.Random(0).sample(range(len(w)), min(n, len(w)))
    sims = w[ids] @ w.T
    sims[torch.arange(len(ids)), torch.tensor(ids)] = float("-inf")
    exact = sims.topk(k, dim=1).indices.tolist()
    con = duckdb.connect(index, read_only=True)
    got = dict(con.execute("SELECT feature_id, cos_ids FROM features WHERE feature_id IN (SELECT unnest(?))",
                           [ids]).fetchall())
    con.close()
    return sum(len(set(got[i][:k]) & set(e)) for i, e in zip(ids, exact, strict=True)) / (k * len(ids))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", default="4096,65536,1048576")
    p.add_argument("--tokens", default="65536,65536,4096", help="tokens per size, in the same order")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--keep", help="keep each size's index (and SAE) in this folder, for benchmarks/bench_ui.py")
    p.add_argument("--activation-log-gb", type=float, default=4.0,
                   help="disk for the activation log the windows pass reads (0: it encodes every batch again)")
    p.add_argument("--child", action="store_true")
    p.add_argument("rest", nargs="*")
    args = p.parse_args()
    if args.child:
        kind, spec, tokens, *extra = args.rest
        result = (child_bare(spec, int(tokens), args.batch_size) if kind == "bare"
                  else child_build(spec, int(tokens), args.batch_size, extra[0], args.activation_log_gb))
        print(json.dumps(result))
        return
    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_scale_"))
    tmp.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for d_sae, tokens in zip(map(int, args.sizes.split(",")), map(int, args.tokens.split(",")), strict=True):
            sae_dir = make_random_sae(tmp / f"sae_{d_sae}", d_sae)
            spec, out = spec_for(sae_dir), str(tmp / f"index_{d_sae}.duckdb")
            bare = run_child(__file__, "bare", spec, str(tokens))
            build = run_child(__file__, "--activation-log-gb", str(args.activation_log_gb), "build", spec, str(tokens),
                              out)
            p50, p95 = query_latency(out)
            rows.append({
                "features": d_sae, "tokens": build["tokens"],
                "stream_ratio": (build["tokens"] / build["stream_s"]) / (bare["tokens"] / bare["seconds"]),
                "bare_tok_s": bare["tokens"] / bare["seconds"], "stream_tok_s": build["tokens"] / build["stream_s"],
                "finalize_s": build["finalize_s"], "windows_s": build["windows_s"], "stage_s": build["stage_s"],
                "stage_peak_rss_mb": build["stage_peak_rss_mb"], "neighbours": build["neighbour_method"],
                "peak_rss_gb": build["peak_rss_mb"] / 1024, "recall10": neighbour_recall(sae_dir, out),
                "query_p50_ms": p50, "query_p95_ms": p95, "index_mb": os.path.getsize(out) / 2**20,
            })
            print(json.dumps(rows[-1]), flush=True)
            if not args.keep:
                shutil.rmtree(sae_dir)
                os.remove(out)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print("\n| features | tokens | stream / bare | finalize s (neighbours / logits / map / windows / write) | "
          "peak RSS GB | recall@10 | page p50 / p95 ms | index MB |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        stages = " / ".join(f"{r['stage_s'][k]:.0f}" for k in STAGES)
        print(f"| {r['features']:,} | {r['tokens']:,} | {r['stream_ratio']:.2f} | {r['finalize_s']:.0f} "
              f"({stages}) | {r['peak_rss_gb']:.2f} | {r['recall10']:.3f} ({r['neighbours']}) | "
              f"{r['query_p50_ms']:.1f} / {r['query_p95_ms']:.1f} | {r['index_mb']:.0f} |")


if __name__ == "__main__":
    main()
