"""Command line: `python -m backend {train-demo,index,steerability,feature,explain,serve,team}`.

Each command parses its arguments here and hands a typed config to the module that does
the work, so this file stays a table of contents of what the engine can do.
"""

from __future__ import annotations

import argparse
import sys

# Options left out on the command line (None) take the config's own default, so the numbers live in
# IndexConfig / ServeConfig only; the configs are not imported here, so that --help stays quick.
_INDEX_OPTIONS = ("tokens", "context_size", "batch_size", "top_k", "window_before", "window_after", "device", "dtype",
                  "dataset", "seed", "checkpoint_every")
_SERVE_OPTIONS = ("host", "port", "device")


def _given(args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, object]:
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def _train_demo(args: argparse.Namespace) -> int:
    from backend.demo.train import run

    print(f"artifacts: {run(device=args.device)}")
    return 0


def _index(args: argparse.Namespace) -> int:
    from backend.index.build import IndexConfig, build_index
    from backend.sources import SourceSpec

    config = IndexConfig(
        **_given(args, _INDEX_OPTIONS),
        resume=args.resume,
        # the stage costs about as much as the streaming pass: on for the demo, on request for other sources
        steerability=args.steerability if args.steerability is not None else args.source == "demo",
    )
    if args.ray:
        from backend.index.distributed import build_index_ray

        path = build_index_ray(SourceSpec.parse(args.source), config, args.out, args.ray, args.shards)
    else:
        path = build_index(SourceSpec.parse(args.source), config, args.out)
    print(f"index written to {path}")
    return 0


def _steerability(args: argparse.Namespace) -> int:
    from backend.index.steerability import add_steerability

    summary = add_steerability(args.index, args.device)
    print(summary)
    return 0


def _feature(args: argparse.Namespace) -> int:
    from backend.store import IndexStore

    with IndexStore.open(args.index) as store:
        page = store.feature_page(args.id)
    print(page.model_dump_json(indent=2) if args.json else page.summary())
    return 0


def _explain(args: argparse.Namespace) -> int:
    from backend.errors import UserError
    from backend.explain.storage import explanations_path_for

    if args.offline == bool(args.explainer_url):
        raise UserError("Give either --offline (rules from the index) or --explainer-url (an LLM endpoint).")
    if args.offline:
        from backend.explain.offline import run_offline

        report = run_offline(args.index, args.heldout_tokens or 200_000, args.heldout_dataset, args.device)
        scored = sorted(e.score for e in report.explanations if e.score is not None)
        thin = sum(e.status == "not_enough_data" for e in report.explanations)
        median = f" (median F1 {scored[len(scored) // 2]:.3f})" if scored else ""
        print(f"{len(report.explanations)} live features explained offline: {len(scored)} scored{median}, "
              f"{thin} with not enough data; held-out: {report.heldout_tokens:,} tokens of {report.heldout}")
    else:
        from backend.explain.llm import EndpointConfig
        from backend.explain.runner import LLMRunConfig, run_llm

        endpoint = EndpointConfig(url=args.explainer_url, model=args.explainer_model or "",
                                  api_key_env=args.api_key_env, max_retries=args.max_retries)
        cfg = LLMRunConfig(endpoint=endpoint, concurrency=args.concurrency, rate_limit=args.rate_limit,
                           judge_examples=args.judge_examples, heldout_tokens=args.heldout_tokens or 100_000,
                           heldout_dataset=args.heldout_dataset, retry_failed=args.retry_failed, device=args.device)
        report = run_llm(args.index, args.features, cfg)
        by = {s: sum(e.status == s for e in report.written) for s in ("ok", "not_enough_data", "failed")}
        print(f"{len(report.written)} features explained by {endpoint.model}: {by['ok']} scored, "
              f"{by['not_enough_data']} with not enough data, {by['failed']} failed; "
              f"{report.skipped} already done")
    print(f"explanations in {explanations_path_for(args.index)}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from backend.server import ServeConfig, serve
    from backend.sources import SourceSpec

    serve(
        ServeConfig(source=SourceSpec.parse(args.source), index_path=args.index, **_given(args, _SERVE_OPTIONS))
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
        help="'demo', 'pretrained:<model>:<release>:<sae_id>' or 'local:<model_dir>:<sae_dir>[:<tokenizer_dir>]' "
        "(model_dir: a Hugging Face save_pretrained folder or the demo's format; sae_dir: any SAELens SAE folder)",
    )
    p.add_argument("--tokens", type=int, default=None, help="tokens to stream (default: IndexConfig.tokens)")
    p.add_argument("--out", default="cache/demo.duckdb")
    p.add_argument(
        "--dataset",
        default=None,
        help="default: the demo's held-out split; or an HF dataset name, or .txt/.jsonl/.parquet files",
    )
    p.add_argument("--context-size", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None, help="prompts per batch")
    p.add_argument("--top-k", type=int, default=None, help="top examples per feature")
    p.add_argument("--window-before", type=int, default=None)
    p.add_argument("--window-after", type=int, default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--checkpoint-every", type=int, default=None,
                   help="tokens between checkpoints of the build's state (0 = never)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted build of the same --out from its last checkpoint")
    p.add_argument("--ray", default=None, metavar="auto|local|ADDRESS",
                   help="build on a Ray cluster: 'auto' (the running one), 'local' (start one here), or host:port")
    p.add_argument("--shards", type=int, default=8, help="with --ray: shards of rows, one Ray task each")
    p.add_argument("--steerability", action=argparse.BooleanOptionalAction, default=None,
                   help="output/input scores and calibrated steering strengths (default: on for the demo only)")
    p.set_defaults(func=_index)

    p = sub.add_parser("steerability", help="(re)compute an existing index's steerability table")
    p.add_argument("--index", default="cache/demo.duckdb")
    p.add_argument("--device", default=None)
    p.set_defaults(func=_steerability)

    p = sub.add_parser("feature", help="print one feature of an index")
    p.add_argument("--index", default="cache/demo.duckdb")
    p.add_argument("--id", type=int, required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_feature)

    p = sub.add_parser("explain", help="explain features with scores: offline rules, or an LLM endpoint")
    p.add_argument("--index", default="cache/demo.duckdb")
    p.add_argument("--offline", action="store_true", help="rules mined from the index, no LLM (every live feature)")
    p.add_argument("--features", default="live", help="LLM only: 'live' (default), 'all', or ids like 0-99,120")
    p.add_argument("--explainer-url", default=None, help="an OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--explainer-model", default=None, help="the model name the endpoint serves")
    p.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key")
    p.add_argument("--concurrency", type=int, default=4, help="features in flight at once")
    p.add_argument("--rate-limit", type=float, default=60.0, help="requests per minute (0 = no limit)")
    p.add_argument("--max-retries", type=int, default=4, help="retries of a request on 429 / 5xx / dropped connection")
    p.add_argument("--judge-examples", type=int, default=5,
                   help="activating held-out examples per judge task (as many non-activating ones beside them)")
    p.add_argument("--retry-failed", action="store_true", help="ask again for features whose answer was malformed")
    p.add_argument("--heldout-tokens", type=int, default=None, help="held-out tokens (200k offline, 100k LLM)")
    p.add_argument("--heldout-dataset", default=None,
                   help="default: the index's dataset after its rows (the demo: then its training split)")
    p.add_argument("--device", default=None)
    p.set_defaults(func=_explain)

    p = sub.add_parser("serve", help="run the inference HTTP service")
    p.add_argument("--source", default="demo")
    p.add_argument("--index", default=None, help="index used for default steering strengths and densities")
    p.add_argument("--host", default=None, help="default: ServeConfig.host (loopback)")
    p.add_argument("--port", type=int, default=None, help="default: ServeConfig.port")
    p.add_argument("--device", default=None)
    p.set_defaults(func=_serve)

    p = sub.add_parser("team", help="export or import all team data (labels, lists, notes) as one JSON file")
    p.add_argument("action", choices=["export", "import"])
    p.add_argument("--index", default="cache/demo.duckdb")
    p.add_argument("--file", required=True, help="the JSON file to write (export) or read (import)")
    p.set_defaults(func=_team)
    return parser


def _team(args: argparse.Namespace) -> int:
    from pathlib import Path

    from backend.store import IndexStore, require_index_file
    from backend.team import TeamStore
    from backend.team_transfer import export_json, import_file

    index = require_index_file(Path(args.index))
    with IndexStore.open(index) as store:
        info = store.info()
    team = TeamStore.for_index(index, d_sae=info.d_sae, sae_sha256=info.sae_weights_sha256)
    if args.action == "export":
        out = Path(args.file)
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(export_json(team), encoding="utf-8")
        tmp.replace(out)  # never a half-written export under the real name
        print(f"team data of {index.name} written to {out}")
    else:
        summary = import_file(team, args.file, d_in=info.d_in)
        print(f"imported into {index.name}: {summary.labels_written} labels, {summary.lists_created} new lists, "
              f"{summary.items_written} list entries, {summary.concepts_written} concepts")
    return 0


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
