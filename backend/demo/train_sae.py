"""Train the demo SAE with SAELens and evaluate it on held-out tokens with `run_evals`.

Training runs through `LanguageModelSAETrainingRunner` with our model and an in-memory
pretokenized dataset (rows already start with BOS), wandb off. BOS is excluded from
training and evaluation: its residual norm dwarfs every other token's.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass

import torch

from backend.demo.lm import load_model
from backend.demo.paths import DemoPaths
from backend.demo.tokenizer import load_tokenizer


@dataclass(frozen=True)
class SAETrainResult:
    hook_name: str
    d_sae: int
    k: int
    tokens_trained: int
    wall_time_s: float


def hook_name_for(layer: int) -> str:
    return f"blocks.{layer}.hook_resid_pre"


def _rows_dataset(rows: torch.Tensor):
    from datasets import Dataset

    return Dataset.from_dict({"input_ids": rows.tolist()})


def stage_sae(paths: DemoPaths, cfg, rows: dict, device: str) -> dict:
    result_file = paths.sae_work / "result.json"
    if result_file.exists():
        return json.loads(result_file.read_text())
    os.environ.setdefault("WANDB_MODE", "disabled")
    from sae_lens import LanguageModelSAERunnerConfig, LanguageModelSAETrainingRunner, LoggingConfig
    from sae_lens.saes.topk_sae import TopKTrainingSAEConfig

    tok = load_tokenizer(paths.tokenizer_work)
    model = load_model(paths.lm_work, tok, device)
    hook = hook_name_for(cfg.sae_layer)
    batch_tokens = 4096
    steps = cfg.sae_tokens // batch_tokens
    runner_cfg = LanguageModelSAERunnerConfig(
        sae=TopKTrainingSAEConfig(
            d_in=cfg.lm.d_model,
            d_sae=cfg.d_sae,
            k=cfg.k,
            aux_loss_coefficient=1 / 32,
            dtype="float32",
            device=device,
            apply_b_dec_to_input=True,
        ),
        model_name="demo-stdlib-lm",
        hook_name=hook,
        dataset_path="in-memory:stdlib-train",
        is_dataset_tokenized=True,
        streaming=False,
        context_size=cfg.lm.n_ctx,
        prepend_bos=True,
        exclude_special_tokens=True,
        training_tokens=cfg.sae_tokens,
        train_batch_size_tokens=batch_tokens,
        store_batch_size_prompts=32,
        n_batches_in_buffer=512,
        lr=7e-4,
        lr_warm_up_steps=100,
        lr_scheduler_name="cosineannealing",
        lr_decay_steps=steps // 5,
        lr_end=7e-5,
        dead_feature_window=500,
        feature_sampling_window=1000,
        device=device,
        seed=cfg.seed,
        dtype="float32",
        n_eval_batches=2,
        logger=LoggingConfig(log_to_wandb=False),
        output_path=str(paths.work / "sae_runner_out"),
        checkpoint_path=str(paths.work / "sae_checkpoints"),
        n_checkpoints=0,
        verbose=True,
    )
    start = time.time()
    sae = LanguageModelSAETrainingRunner(
        runner_cfg, override_model=model, override_dataset=_rows_dataset(rows["train"])
    ).run()
    sae.fold_W_dec_norm()  # keeps activations comparable across features
    sae.save_inference_model(str(paths.sae_work))  # inference format: loads with SAE.load_from_disk
    result = SAETrainResult(hook, cfg.d_sae, cfg.k, cfg.sae_tokens, time.time() - start)
    result_file.write_text(json.dumps(asdict(result), indent=1))
    return asdict(result)


def stage_eval(paths: DemoPaths, cfg, rows: dict, device: str) -> dict:
    """SAELens `run_evals` on held-out rows: CE-loss score, explained variance, L0, density."""
    from sae_lens import SAE
    from sae_lens.evals import EvalConfig, run_evals
    from sae_lens.training.activation_scaler import ActivationScaler
    from sae_lens.training.activations_store import ActivationsStore

    eval_file = paths.work / "eval.json"
    if eval_file.exists():
        return json.loads(eval_file.read_text())
    tok = load_tokenizer(paths.tokenizer_work)
    model = load_model(paths.lm_work, tok, device)
    sae = SAE.load_from_disk(str(paths.sae_work), device=device)
    batch_prompts = 32
    n_batches = max(1, -(-cfg.eval_tokens // (batch_prompts * cfg.lm.n_ctx)))
    heldout = rows["heldout"]
    if n_batches * batch_prompts > len(heldout):
        n_batches = len(heldout) // batch_prompts
    store = ActivationsStore.from_sae(
        model,
        sae,
        context_size=cfg.lm.n_ctx,
        dataset=_rows_dataset(heldout),
        store_batch_size_prompts=batch_prompts,
        n_batches_in_buffer=2,
        device=device,
    )
    eval_cfg = EvalConfig(
        batch_size_prompts=batch_prompts,
        n_eval_reconstruction_batches=n_batches,
        compute_ce_loss=True,
        compute_kl=True,
        n_eval_sparsity_variance_batches=n_batches,
        compute_l2_norms=True,
        compute_sparsity_metrics=True,
        compute_variance_metrics=True,
        compute_featurewise_density_statistics=True,
    )
    start = time.time()
    metrics, feature_metrics = run_evals(sae, store, model, ActivationScaler(), eval_cfg, exclude_special_tokens=True)
    density = torch.tensor(feature_metrics["feature_density"])
    out = {
        "heldout_tokens_evaluated": n_batches * batch_prompts * cfg.lm.n_ctx,
        "explained_variance": metrics["reconstruction_quality"]["explained_variance"],
        "ce_loss_score": metrics["model_performance_preservation"]["ce_loss_score"],
        "ce_loss_without_sae": metrics["model_performance_preservation"]["ce_loss_without_sae"],
        "ce_loss_with_sae": metrics["model_performance_preservation"]["ce_loss_with_sae"],
        "ce_loss_with_ablation": metrics["model_performance_preservation"]["ce_loss_with_ablation"],
        "kl_div_score": metrics["model_behavior_preservation"]["kl_div_score"],
        "l0": metrics["sparsity"]["l0"],
        "dead_feature_fraction": float((density == 0).float().mean()),
        "eval_wall_time_s": time.time() - start,
    }
    eval_file.write_text(json.dumps(out, indent=1))
    return out
