"""Latency of live inference: trace (64-token prompt) in-process and over HTTP, and steer (48 new
tokens, default + steered runs), with p50/p95 and ratios measured in this one run.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_inference.py [--source demo] [--threads 1]

Without the demo artifacts (or another --source) it says so and measures a random model of the
demo's shape (4 layers, d_model 256, context 128, d_sae 4096) instead.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from backend.errors import UserError  # noqa: E402
from backend.inference.engine import LocalInference  # noqa: E402
from backend.inference.remote import RemoteInference  # noqa: E402
from backend.inference.schemas import (  # noqa: E402
    InferenceLimits,
    SteerFeature,
    SteerRequest,
    TokenizeRequest,
    TraceRequest,
)
from backend.server import BackgroundServer, create_app  # noqa: E402
from backend.sources import LoadedSource, load_source  # noqa: E402
from tests.support.tiny_source import TINY_TEXT, build_tiny_source  # noqa: E402

TARGET_TRACE_P50_S = 0.150
TARGET_STEER_P50_S = 3.0


@dataclass(frozen=True)
class Timing:
    name: str
    samples: list[float]

    @property
    def p50(self) -> float:
        return statistics.median(self.samples)

    @property
    def p95(self) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]

    def row(self) -> str:
        return f"{self.name:<48} p50 {self.p50 * 1000:8.1f} ms   p95 {self.p95 * 1000:8.1f} ms   n={len(self.samples)}"


def measure(name: str, call: Callable[[], object], repeats: int, warmup: int = 2) -> Timing:
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return Timing(name, samples)


def load_or_fallback(spec: str, scratch: Path) -> LoadedSource:
    try:
        return load_source(spec)
    except UserError as exc:
        print(f"note: cannot load source '{spec}': {exc}")
        print("note: measuring a random model of the demo's shape instead (4 layers, d_model 256, ctx 128, "
              "d_sae 4096); rerun with the demo once its artifacts exist.")
        dirs = build_tiny_source(scratch, d_sae=4096, k=32, n_layers=4, d_model=256, n_ctx=128, vocab_size=4096)
        return load_source(dirs.spec)


def token_count(engine: LocalInference, prompt: str) -> int:
    return engine.tokenize(TokenizeRequest(prompt=prompt)).count


def prompt_of_tokens(engine: LocalInference, n_tokens: int) -> str:
    """The longest prefix (by characters) of a code-like text that tokenizes to at most n_tokens."""
    text = "".join(TINY_TEXT * 20)
    low, high = 1, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if token_count(engine, text[:middle]) <= n_tokens:
            low = middle
        else:
            high = middle - 1
    return text[:low]


def tl_generate_baseline(source: LoadedSource, prompt: str, feature: int, strength: float, new_tokens: int) -> None:
    """Neuronpedia's route: TransformerLens `model.generate` under a steering hook (no activation capture)."""
    tokens = source.model.to_tokens(prompt)

    def steer_everywhere(activation, hook):
        return activation + strength * source.sae.W_dec[feature]

    with torch.inference_mode(), source.model.hooks(fwd_hooks=[(source.hook_name, steer_everywhere)]):
        for seed in (16, 16):  # default + steered, same cost each
            torch.manual_seed(seed)
            source.model.generate(tokens, max_new_tokens=new_tokens, temperature=0.5, freq_penalty=1.0,
                                  stop_at_eos=False, verbose=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="demo")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--trace-repeats", type=int, default=30)
    parser.add_argument("--steer-repeats", type=int, default=7)
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=48)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as scratch:
        source = load_or_fallback(args.source, Path(scratch))
        engine = LocalInference(source, limits=InferenceLimits(max_new_tokens=max(args.new_tokens, 1)))
        prompt = prompt_of_tokens(engine, args.prompt_tokens)
        n_prompt = token_count(engine, prompt)
        trace_request = TraceRequest(prompt=prompt, top_k=5, top_n=20)
        top = engine.trace(trace_request).top_by_max[0]
        steer_prompt = prompt_of_tokens(engine, min(args.prompt_tokens, engine.context_size - args.new_tokens))
        steer_request = SteerRequest(prompt=steer_prompt, features=[SteerFeature(feature_id=top.feature_id,
                                                                                 strength=2 * top.max_value)],
                                     max_new_tokens=args.new_tokens, stop_at_eos=False)
        print(f"source {source.spec} | hook {source.hook_name} | d_sae {source.d_sae} | device {source.device} | "
              f"torch threads {torch.get_num_threads()} | cpus {os.cpu_count()} | load avg {os.getloadavg()[0]:.1f}")
        print(f"trace prompt: {n_prompt} tokens; steer: {token_count(engine, steer_prompt)}-token prompt + "
              f"{args.new_tokens} new tokens, default + steered")

        timings = [measure("trace, in-process", lambda: engine.trace(trace_request), args.trace_repeats)]
        with BackgroundServer(create_app(engine)) as server:
            remote = RemoteInference(server.url)
            timings.append(measure("trace, HTTP (uvicorn on loopback)", lambda: remote.trace(trace_request),
                                   args.trace_repeats))
            timings.append(measure("steer, in-process", lambda: engine.steer(steer_request), args.steer_repeats, 1))
            timings.append(measure("steer, HTTP", lambda: remote.steer(steer_request), args.steer_repeats, 1))
            remote.close()
        # Neuronpedia's route, for scale: no logprobs, no activation capture, its own KV cache.
        timings.append(measure("steer via TransformerLens model.generate + hook",
                               lambda: tl_generate_baseline(source, steer_prompt, top.feature_id, 2 * top.max_value,
                                                            args.new_tokens), args.steer_repeats, 1))

    for timing in timings:
        print(timing.row())
    trace_local, trace_http, steer_local, steer_http, steer_tl = timings
    print(f"ratio trace HTTP / in-process:            {trace_http.p50 / trace_local.p50:6.2f}x")
    print(f"ratio steer HTTP / in-process:            {steer_http.p50 / steer_local.p50:6.2f}x")
    print(f"ratio model.generate / our steer loop:    {steer_tl.p50 / steer_local.p50:6.2f}x")
    print(f"trace p50 vs target {TARGET_TRACE_P50_S * 1000:.0f} ms: {trace_local.p50 / TARGET_TRACE_P50_S:6.2f}x "
          f"of budget; steer p50 vs target {TARGET_STEER_P50_S:.0f} s: {steer_local.p50 / TARGET_STEER_P50_S:6.2f}x "
          "of budget")
    return 0


if __name__ == "__main__":
    sys.exit(main())
