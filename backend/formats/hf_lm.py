"""A Hugging Face `save_pretrained` folder as a HookedTransformer, offline.

The weights are read with `AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)`, converted by
TransformerLens's own per-architecture converter (`get_pretrained_state_dict` given that model), and loaded
without processing (no folded norms, no centring), so activations and logits are the HF model's own: an SAE
trained on the HF model (or on TransformerLens with SAELens's default `center_writing_weights=False`) reads the
same residual stream. An SAE that asks for `center_writing_weights=True` gets it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from backend.errors import UserError
from backend.formats.hf_config import architecture_of, tl_config_dict


def is_hf_folder(folder: Path) -> bool:
    """A `save_pretrained` config carries `model_type`; the TransformerLens-native format does not."""
    try:
        return "model_type" in json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return False


def hooked_config(folder: Path, device: str, hf_config: Any = None):
    """The HookedTransformerConfig of the folder's model (raises a one-sentence UserError when unmappable)."""
    from transformer_lens import HookedTransformerConfig
    from transformers import AutoConfig

    architecture = architecture_of(folder)
    hf_config = hf_config or AutoConfig.from_pretrained(str(folder), local_files_only=True)
    cfg = tl_config_dict(folder, architecture, hf_config)
    cfg.update(
        model_name=folder.name,
        tokenizer_name=str(folder),
        init_weights=False,
        device=device,
        dtype=torch.float32,
        n_devices=1,
        from_checkpoint=False,
        d_vocab=int(getattr(hf_config, "vocab_size", cfg["d_vocab"])),
    )
    cfg.setdefault("default_prepend_bos", True)
    cfg.pop("quantization_method", None)  # a quantized folder is refused by the converter below, not here
    return HookedTransformerConfig.from_dict(cfg)


def load_hf_model(folder: Path, tokenizer, device: str, center_writing_weights: bool = False):
    from transformer_lens import HookedTransformer
    from transformer_lens.loading_from_pretrained import get_pretrained_state_dict
    from transformers import AutoModelForCausalLM

    cfg = hooked_config(folder, device)
    try:
        hf_model = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise UserError(f"Transformers cannot read the weights in {folder}: {_first_line(exc)}") from exc
    hf_model.eval()
    with torch.no_grad():
        state = get_pretrained_state_dict(str(folder), cfg, hf_model, dtype=torch.float32)
    del hf_model
    model = HookedTransformer(cfg, tokenizer, move_to_device=False)
    model.load_and_process_state_dict(
        state,
        fold_ln=False,
        center_writing_weights=center_writing_weights and cfg.normalization_type in ("LN", "LNPre"),
        center_unembed=False,
        fold_value_biases=False,
        refactor_factored_attn_matrices=False,
    )
    model.move_model_modules_to_device()
    model.eval()
    return model


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if text.endswith(".") else text + "."
