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


@dataclass(frozen=True)
class SAEPhase:
    """One SAELens training run: the main run, or the short run that continues from it after its
    dead latents were re-seeded (see `resample.py`)."""

    name: str
    tokens: int
    lr: float
    warmup_steps: int
    aux_loss_coefficient: float
    dead_feature_window: int  # steps without firing before a feature counts as dead for the aux loss
    continue_from_saved: bool
    resample_dead_first: bool = False


RESAMPLE_TOKENS = 300_000  # training tokens used to find dead latents and draw their seed tokens


def sae_phases(cfg) -> list[SAEPhase]:
    return [
        SAEPhase("main", cfg.sae_tokens, 7e-4, 100, 1 / 32, 500, continue_from_saved=False),
        SAEPhase("revive", cfg.sae_revive_tokens, 3e-4, 20, 1 / 32, 100, continue_from_saved=True,
                 resample_dead_first=True),
    ]


def stage_sae(paths: DemoPaths, cfg, rows: dict, device: str) -> dict:
    results = {}
    for phase in sae_phases(cfg):
        if phase.tokens > 0:
            results[phase.name] = _train_phase(paths, cfg, rows, device, phase)
    return results


def _train_phase(paths: DemoPaths, cfg, rows: dict, device: str, phase: SAEPhase) -> dict:
    result_file = paths.sae_work / f"result_{phase.name}.json"
    if result_file.exists():
        return json.loads(result_file.read_text())
    os.environ.setdefault("WANDB_MODE", "disabled")
    from sae_lens import LanguageModelSAETrainingRunner

    tok = load_tokenizer(paths.tokenizer_work)
    model = load_model(paths.lm_work, tok, device)
    hook = hook_name_for(cfg.sae_layer)
    runner_cfg = _runner_config(paths, cfg, device, phase, hook)
    resample_report = None
    if phase.resample_dead_first:
        resample_report = _resample(paths, cfg, rows["train"], model, hook, tok.all_special_ids)
    override = _starting_sae(paths, device, phase)
    start = time.time()
    sae = LanguageModelSAETrainingRunner(
        runner_cfg, override_model=model, override_dataset=_rows_dataset(rows["train"]), override_sae=override
    ).run()
    sae.fold_W_dec_norm()  # keeps activations comparable across features
    sae.save_inference_model(str(paths.sae_work))  # inference format: loads with SAE.load_from_disk
    result = SAETrainResult(hook, cfg.d_sae, cfg.k, phase.tokens, time.time() - start)
    out = {**asdict(result), "resample": asdict(resample_report) if resample_report else None}
    result_file.write_text(json.dumps(out, indent=1))
    return out


def _runner_config(paths: DemoPaths, cfg, device: str, phase: SAEPhase, hook: str):
    """SAELens's runner config for one phase: a TopK SAE on `hook`, trained on the in-memory rows."""
    from sae_lens import LanguageModelSAERunnerConfig, LoggingConfig
    from sae_lens.saes.topk_sae import TopKTrainingSAEConfig

    batch_tokens = 4096
    steps = phase.tokens // batch_tokens
    return LanguageModelSAERunnerConfig(
        sae=TopKTrainingSAEConfig(
            d_in=cfg.lm.d_model,
            d_sae=cfg.d_sae,
            k=cfg.k,
            aux_loss_coefficient=phase.aux_loss_coefficient,
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
        training_tokens=phase.tokens,
        train_batch_size_tokens=batch_tokens,
        store_batch_size_prompts=32,
        n_batches_in_buffer=512,
        lr=phase.lr,
        lr_warm_up_steps=phase.warmup_steps,
        lr_scheduler_name="cosineannealing",
        lr_decay_steps=steps // 5,
        lr_end=phase.lr / 10,
        dead_feature_window=phase.dead_feature_window,
        feature_sampling_window=max(phase.dead_feature_window, 100),
        device=device,
        seed=cfg.seed,
        dtype="float32",
        n_eval_batches=2,
        logger=LoggingConfig(log_to_wandb=False),
        output_path=str(paths.work / f"sae_runner_out_{phase.name}"),
        checkpoint_path=str(paths.work / "sae_checkpoints"),
        n_checkpoints=0,
        verbose=True,
    )


def _starting_sae(paths: DemoPaths, device: str, phase: SAEPhase):
    """The SAE a phase starts from: the previous run's, saved on disk, or None for a fresh one."""
    if phase.continue_from_saved:
        # continues from the previous run's SAE with this phase's aux-loss settings
        from sae_lens.saes.sae import TrainingSAE

        saved = TrainingSAE.load_from_disk(str(paths.sae_work), device)
        saved.cfg.aux_loss_coefficient = phase.aux_loss_coefficient
        return saved
    return None


def _resample(paths: DemoPaths, cfg, train_rows: torch.Tensor, model, hook: str, special_ids: list[int]):
    """Re-seed the saved SAE's dead latents (found on the last training rows) and save it back."""
    from sae_lens import SAE

    from backend.demo.resample import collect_activations, resample_dead_latents

    sae = SAE.load_from_disk(str(paths.sae_work), device=str(model.cfg.device))
    acts = collect_activations(model, train_rows.flip(0), hook, RESAMPLE_TOKENS, special_ids)
    report = resample_dead_latents(sae, acts, seed=cfg.seed)
    print(f"[train-demo] re-seeded {report.resampled} dead latents ({report.resampled_firing_after} fire again)",
          flush=True)
    sae.save_model(str(paths.sae_work))
    return report


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
