"""`python -m backend train-demo`: rebuild every demo artifact from scratch.

Stages (each skipped when its output exists, so an interrupted rebuild resumes):
corpus manifest -> tokenizer -> token rows -> LM -> SAE (SAELens) -> evals -> metrics.json.
Outputs are written to a work folder and moved into `artifacts/` only when complete.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from backend.demo.corpus import build_manifest, iter_texts
from backend.demo.lm import DemoLMConfig, build_model, save_model, tokenize_corpus
from backend.demo.paths import ARTIFACTS_DIR, WORK_DIR, DemoPaths
from backend.demo.tokenizer import load_tokenizer, train_tokenizer
from backend.demo.train_lm import LMTrainConfig, sample_texts, train_lm
from backend.device import pick_device
from backend.versions import package_versions


@dataclass(frozen=True)
class DemoBuildConfig:
    vocab_size: int = 4096
    lm: DemoLMConfig = field(default_factory=DemoLMConfig)
    lm_train: LMTrainConfig = field(default_factory=lambda: LMTrainConfig(tokens=8_000_000))
    sae_layer: int = 2  # hook blocks.{layer}.hook_resid_pre: the middle of 4 layers
    d_sae: int = 4096
    k: int = 32
    sae_tokens: int = 8_000_000
    sae_revive_tokens: int = 2_000_000  # a short second run after dead latents are re-seeded (resample.py)
    eval_tokens: int = 520_000  # >= 500k held-out tokens
    seed: int = 0


def _log(msg: str) -> None:
    print(f"[train-demo {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def build_rows(paths: DemoPaths, cfg: DemoBuildConfig) -> dict:
    if paths.rows.exists():
        return torch.load(paths.rows)
    manifest = build_manifest()
    paths.work.mkdir(parents=True, exist_ok=True)
    paths.manifest_work.write_text(manifest.to_json())
    if not (paths.tokenizer_work / "tokenizer.json").exists():
        _log(f"training tokenizer (vocab {cfg.vocab_size}) on {len(manifest.files)} files")
        train_tokenizer(iter_texts(manifest, "train"), cfg.vocab_size, paths.tokenizer_work)
    tok = load_tokenizer(paths.tokenizer_work)
    _log("tokenizing corpus")
    rows = {split: tokenize_corpus(iter_texts(manifest, split), tok, cfg.lm.n_ctx) for split in ("train", "heldout")}
    rows["manifest_digest"] = manifest.digest
    torch.save(rows, paths.rows)
    return rows


def stage_lm(paths: DemoPaths, cfg: DemoBuildConfig, rows: dict, device: str) -> dict:
    if (paths.lm_work / "result.json").exists():
        return json.loads((paths.lm_work / "result.json").read_text())
    torch.manual_seed(cfg.seed)
    tok = load_tokenizer(paths.tokenizer_work)
    model = build_model(cfg.lm, tok, device)
    _log(f"training LM on {device}: {cfg.lm_train.tokens:,} tokens")
    result = train_lm(model, rows["train"], rows["heldout"], cfg.lm_train)
    samples = sample_texts(model, tok, ["def ", "class ", "import ", "    # "])
    save_model(model, cfg.lm, paths.lm_work)
    out = {**asdict(result), "samples": samples}
    (paths.lm_work / "result.json").write_text(json.dumps(out, indent=1))
    _log(f"LM held-out loss {result.heldout_loss:.3f} after {result.wall_time_s:.0f}s")
    return out


def run(cfg: DemoBuildConfig | None = None, device: str | None = None) -> Path:
    cfg = cfg or DemoBuildConfig()
    device = pick_device(device)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    paths = DemoPaths(WORK_DIR)
    start = time.time()
    rows = build_rows(paths, cfg)
    lm_result = stage_lm(paths, cfg, rows, device)
    from backend.demo.train_sae import stage_eval, stage_sae

    sae_result = stage_sae(paths, cfg, rows, device)
    eval_result = stage_eval(paths, cfg, rows, device)
    metrics = {
        "lm": lm_result,
        "sae": sae_result,
        "eval": eval_result,
        "config": asdict(cfg),
        "manifest_digest": rows["manifest_digest"],
        "device": device,
        "versions": package_versions().model_dump(),
        "rebuild_wall_time_s_this_run": time.time() - start,
    }
    (paths.work / "metrics.json").write_text(json.dumps(metrics, indent=1))
    _publish(paths)
    return ARTIFACTS_DIR


def _publish(paths: DemoPaths) -> None:
    """Swap the finished work folder's outputs into artifacts/ in one rename."""
    staging = ARTIFACTS_DIR.with_name("artifacts.new")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    shutil.copytree(paths.tokenizer_work, staging / "tokenizer")
    shutil.copytree(paths.lm_work, staging / "lm")
    shutil.copytree(paths.sae_work, staging / "sae")
    shutil.copy(paths.manifest_work, staging / "corpus_manifest.json")
    shutil.copy(paths.work / "metrics.json", staging / "metrics.json")
    old = ARTIFACTS_DIR.with_name("artifacts.old")
    shutil.rmtree(old, ignore_errors=True)
    if ARTIFACTS_DIR.exists():
        ARTIFACTS_DIR.rename(old)
    staging.rename(ARTIFACTS_DIR)
    shutil.rmtree(old, ignore_errors=True)
    _log(f"artifacts written to {ARTIFACTS_DIR}")
