"""Decoder neighbours at 65k features: exact (blocked bf16 matmul + float32 re-score) vs NN-descent, time
and recall@10 against brute force, on decoders of different structure.

    python benchmarks/bench_neighbours.py [--n 65536] [--d 256]

- random: isotropic unit rows, no structure (the worst case for any approximate search: every cosine is
  noise around 0, and the "true" neighbours differ from the 100th by ~0.01);
- families: rows in tight groups around shared directions (what feature splitting gives real SAEs);
- demo: the demo SAE's own 4,096 trained decoder rows (the only real decoder that ships; its size is fixed).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.index.neighbours import approximate_neighbours, exact_neighbours, recall_at_k  # noqa: E402


def decoders(n: int, d: int, seed: int = 0) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(n // 16, d, generator=gen)
    families = centres.repeat_interleave(16, 0) + 0.35 * torch.randn(n, d, generator=gen)
    demo = load_file(str(ROOT / "backend/demo/artifacts/sae/sae_weights.safetensors"))["W_dec"].float()
    return {"random": torch.randn(n, d, generator=gen), "families": families, "demo": demo}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=65_536)
    p.add_argument("--d", type=int, default=256)
    args = p.parse_args()
    approximate_neighbours(torch.randn(2000, args.d), 10)  # numba compiles once, not inside the timing
    rows = []
    for name, w in decoders(args.n, args.d).items():
        start = time.perf_counter()
        exact = exact_neighbours(w, 10)
        exact_s = time.perf_counter() - start
        start = time.perf_counter()
        approx = approximate_neighbours(w, 10)
        approx_s = time.perf_counter() - start
        rows.append({"decoder": name, "n": len(w), "exact_s": exact_s, "nndescent_s": approx_s,
                     "recall10": recall_at_k(approx.ids, exact.ids)})
        print(json.dumps(rows[-1]), flush=True)
    print("\n| decoder | features | exact s | NN-descent s | NN-descent recall@10 |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['decoder']} | {r['n']:,} | {r['exact_s']:.0f} | {r['nndescent_s']:.0f} | {r['recall10']:.3f} |")


if __name__ == "__main__":
    main()
