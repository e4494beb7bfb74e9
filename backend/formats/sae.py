"""Any SAE folder SAELens can load (`cfg.json` + `sae_weights.safetensors`), and its fit to a model's hook.

Inference architectures (standard, gated, JumpReLU, TopK, ...) load with `SAE.load_from_disk`. A folder saved
from a *training* SAE (`TrainingSAE.save_model`: BatchTopK, Matryoshka BatchTopK, ...) names a training
architecture; it is loaded with `TrainingSAE.load_from_disk` and turned into its inference form by SAELens's own
`save_inference_model` (BatchTopK becomes JumpReLU with the learned global threshold, as SAELens's trainer does)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import torch

from backend.errors import NotFoundError, UserError

SAE_CONFIG_FILE = "cfg.json"
SAE_WEIGHTS_FILE = "sae_weights.safetensors"


def sae_architecture(folder: Path) -> str:
    try:
        return str(json.loads((folder / SAE_CONFIG_FILE).read_text()).get("architecture") or "standard")
    except (OSError, ValueError) as exc:
        raise UserError(f"The SAE folder {folder} has no readable {SAE_CONFIG_FILE}.") from exc


def load_sae(folder: Path, device: str):
    from sae_lens import SAE, TrainingSAE
    from sae_lens.registry import SAE_CLASS_REGISTRY, SAE_TRAINING_CLASS_REGISTRY

    if not (folder / SAE_WEIGHTS_FILE).is_file():
        raise NotFoundError(f"The SAE folder has no {SAE_WEIGHTS_FILE} at {folder}.")
    architecture = sae_architecture(folder)
    if architecture in SAE_CLASS_REGISTRY:
        return SAE.load_from_disk(str(folder), device=device)
    if architecture in SAE_TRAINING_CLASS_REGISTRY:
        training = TrainingSAE.load_from_disk(str(folder), device="cpu")
        with tempfile.TemporaryDirectory(prefix="sae-inference-") as tmp:
            training.save_inference_model(tmp)
            return SAE.load_from_disk(tmp, device=device)
    known = sorted(set(SAE_CLASS_REGISTRY) | set(SAE_TRAINING_CLASS_REGISTRY))
    raise UserError(f"SAELens cannot load the SAE in {folder}: its architecture '{architecture}' is none of "
                    f"{', '.join(known)}.")


def hook_name_of(sae: Any, folder: Path) -> str:
    hook = getattr(sae.cfg.metadata, "hook_name", None)
    if not hook:
        hook = json.loads((folder / SAE_CONFIG_FILE).read_text()).get("hook_name")
    if not hook:
        raise UserError(f"The SAE in {folder} names no hook (metadata.hook_name), so it is not known where it reads.")
    return str(hook)


def check_sae_fits(model: Any, sae: Any, hook: str, folder: Path) -> None:
    """One sentence when the SAE reads a hook the model lacks or a width the hook does not have."""
    if hook not in model.hook_dict:
        raise UserError(f"The SAE in {folder} reads the hook '{hook}', which this {model.cfg.n_layers}-layer "
                        f"model does not have.")
    width = hook_width(model, sae, hook)
    d_in = int(sae.cfg.d_in)
    if width != d_in:
        raise UserError(f"The SAE in {folder} reads {d_in}-wide activations, but the model's hook '{hook}' is "
                        f"{width} wide.")


def hook_width(model: Any, sae: Any, hook: str) -> int:
    """The width the SAE sees at the hook, measured by one forward of a single token (exact for every hook)."""
    bos = getattr(model.tokenizer, "bos_token_id", None) or 0
    tokens = torch.tensor([[bos]], device=model.cfg.device)
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=hook, stop_at_layer=_stop_layer(model, hook))
    act = cache[hook]
    head = getattr(sae.cfg.metadata, "hook_head_index", None)
    if act.dim() == 4:  # per-head hooks ([batch, pos, head, d_head]): SAELens reads one head or all of them
        return int(act.shape[-1]) if head is not None else int(act.shape[-2] * act.shape[-1])
    return int(act.shape[-1])


def _stop_layer(model: Any, hook: str) -> int | None:
    parts = hook.split(".")
    if parts[0] == "blocks" and len(parts) > 1 and parts[1].isdigit():
        stop = int(parts[1]) + 1
        return stop if stop < model.cfg.n_layers else None
    return None
