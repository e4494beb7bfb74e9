"""Command line: `python -m backend {train-demo,index,feature,features,serve}`.

Each command parses its arguments here and hands a typed config to the module that does
the work, so this file stays a table of contents of what the engine can do.
"""

from __future__ import annotations

import argparse
import sys


def _train_demo(args: argparse.Namespace) -> int:
    from backend.demo.train import run

    print(f"artifacts: {run(device=args.device)}")
    return 0


def _index(args: argparse.Namespace) -> int:
    from backend.index.build import IndexConfig, build_index
    from backend.sources import SourceSpec

    config = IndexConfig(
        tokens=args.tokens,
        context_size=args.context_size,
        batch_size=args.batch_size,
        top_k=args.top_k,
        window_before=args.window_before,
        window_after=args.window_after,
        device=args.device,
        dtype=args.dtype,
        dataset=args.dataset,
        seed=args.seed,
    )
    path = build_index(SourceSpec.parse(args.source), config, args.out)
    print(f"index written to {path}")
    return 0


def _feature(args: argparse.Namespace) -> int:
    from backend.store import IndexStore

    with IndexStore.open(args.index) as store:
        page = store.feature_page(args.id)
    print(page.model_dump_json(indent=2) if args.json else page.summary())
    return 0


def _serve(args: argparse.Namespace) -> int:
    from backend.server import ServeConfig, serve
    from backend.sources import SourceSpec

    serve(
        ServeConfig(
            source=SourceSpec.parse(args.source),
            host=args.host,
            port=args.port,
            device=args.device,
            index_path=args.index,
        )
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m backend", description="SAE feature explorer engine.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train-demo", help="rebuild the embedded demo tokenizer, LM and SAE from scratch")
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda, mps")
    p.set_defaults(func=_train_demo)

    p = sub.add_parser("index", help="build a feature index (DuckDB) for a source")
    p.add_argument(
        "--source",
        default="demo",
        help="'demo', 'pretrained:<model>:<release>:<sae_id>' or 'local:<model_dir>:<sae_dir>'",
    )
    p.add_argument("--tokens", type=int, default=1_000_000)
    p.add_argument("--out", default="cache/demo.duckdb")
    p.add_argument(
        "--dataset",
        default=None,
        help="default: the demo's held-out split; or an HF dataset name, or .txt/.jsonl/.parquet files",
    )
    p.add_argument("--context-size", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=32, help="prompts per batch")
    p.add_argument("--top-k", type=int, default=20, help="top examples per feature")
    p.add_argument("--window-before", type=int, default=24)
    p.add_argument("--window-after", type=int, default=8)
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_index)

    p = sub.add_parser("feature", help="print one feature of an index")
    p.add_argument("--index", default="cache/demo.duckdb")
    p.add_argument("--id", type=int, required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_feature)

    p = sub.add_parser("serve", help="run the inference HTTP service")
    p.add_argument("--source", default="demo")
    p.add_argument("--index", default=None, help="index used for default steering strengths and densities")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8600)
    p.add_argument("--device", default=None)
    p.set_defaults(func=_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from backend.errors import UserError

    try:
        return args.func(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
