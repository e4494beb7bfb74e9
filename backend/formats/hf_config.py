"""A Hugging Face config, as a TransformerLens config dict, without the hub.

TransformerLens's own mapping (`convert_hf_model_config`) reads most architectures from the HF config, but it
first branches on the *name*: a path containing "llama" or "gemma" takes the hub-name branches, which never read
the folder. So the folder's config.json is copied to a neutral temporary path and mapped from there. Gemma, Gemma 2
and Gemma 3 (text) are mapped only by official name in TransformerLens (hard-coded sizes); for them the same fields
are read from the folder's config here, following those hard-coded dicts."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

from backend.errors import UserError

GEMMA_ARCHITECTURES = ("GemmaForCausalLM", "Gemma2ForCausalLM", "Gemma3ForCausalLM")
# Substrings that send TransformerLens's mapping down a name-based branch (see the module docstring).
_NAME_TRIGGERS = ("llama", "gemma", "wav2vec2", "tinystories")
# Fields TransformerLens reads that newer `save_pretrained` configs no longer write: (architecture, field, source).
_LEGACY_FIELDS = (("GPT2LMHeadModel", "n_ctx", "n_positions"),)


def architecture_of(folder: Path) -> str:
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"The model folder {folder} has no readable config.json.") from exc
    names = config.get("architectures") or []
    if not names:
        raise UserError(f"The config.json in {folder} names no architecture (no 'architectures' list), so "
                        "TransformerLens cannot map it.")
    return str(names[0])


def tl_config_dict(folder: Path, architecture: str, hf_config: Any) -> dict[str, Any]:
    """The HookedTransformerConfig fields for the folder's model (without device, dtype and the like)."""
    if architecture in GEMMA_ARCHITECTURES:
        cfg = _gemma_dict(architecture, hf_config)
    else:
        cfg = _transformer_lens_dict(folder, architecture)
    cfg["original_architecture"] = architecture
    return cfg


def _transformer_lens_dict(folder: Path, architecture: str) -> dict[str, Any]:
    from transformer_lens.loading_from_pretrained import convert_hf_model_config

    with tempfile.TemporaryDirectory(prefix="hf-config-") as tmp:
        neutral = Path(tmp) / "model"
        if any(t in str(neutral).lower() for t in _NAME_TRIGGERS):  # a temp name that happens to match
            neutral = Path(tmp) / "m0"
        neutral.mkdir()
        config = json.loads((folder / "config.json").read_text())
        for arch, name, source in _LEGACY_FIELDS:
            if arch == architecture and name not in config and source in config:
                config[name] = config[source]
        (neutral / "config.json").write_text(json.dumps(config))
        try:
            cfg = convert_hf_model_config(str(neutral), local_files_only=True)
        except AttributeError as exc:
            raise UserError(f"TransformerLens cannot map the {architecture} config in {folder}: it lacks "
                            f"{_missing_attribute(exc)}.") from exc
        except NotImplementedError as exc:
            raise UserError(
                f"TransformerLens cannot map the architecture {architecture} of the model in {folder}; it maps "
                "GPT-2, GPT-Neo(X), GPT-J, OPT, Bloom, Llama, Mistral, Mixtral, Qwen, Phi, Gemma, OLMo and a few "
                "others."
            ) from exc
    return dict(cfg)


def _gemma_dict(architecture: str, hf: Any) -> dict[str, Any]:
    n_layers = int(hf.num_hidden_layers)
    d_head = int(getattr(hf, "head_dim", None) or hf.hidden_size // hf.num_attention_heads)
    act = getattr(hf, "hidden_activation", None) or getattr(hf, "hidden_act", "gelu_pytorch_tanh")
    cfg: dict[str, Any] = {
        "d_model": int(hf.hidden_size),
        "d_head": d_head,
        "n_heads": int(hf.num_attention_heads),
        "d_mlp": int(hf.intermediate_size),
        "n_layers": n_layers,
        "n_ctx": int(hf.max_position_embeddings),
        "eps": float(hf.rms_norm_eps),
        "d_vocab": int(hf.vocab_size),
        "act_fn": act,
        "initializer_range": float(getattr(hf, "initializer_range", 0.02)),
        "normalization_type": "RMS",
        "rotary_dim": d_head,
        "positional_embedding_type": "rotary",
        "use_attn_scale": True,
        # the convert_gemma_weights path needs an explicit head count for keys and values
        "n_key_value_heads": int(getattr(hf, "num_key_value_heads", None) or hf.num_attention_heads),
        "gated_mlp": True,
        "final_rms": True,
    }
    rope = getattr(hf, "rope_parameters", None) or {}
    if architecture == "GemmaForCausalLM":
        cfg["rotary_base"] = float(rope.get("rope_theta", getattr(hf, "rope_theta", 10000.0)))
        return cfg
    scalar = getattr(hf, "query_pre_attn_scalar", None)
    if scalar is not None:
        cfg["attn_scale"] = math.sqrt(float(scalar))
    layer_types = list(getattr(hf, "layer_types", None) or [])
    if layer_types and getattr(hf, "sliding_window", None):
        cfg["use_local_attn"] = True
        cfg["window_size"] = int(hf.sliding_window)
        cfg["attn_types"] = ["local" if t == "sliding_attention" else "global" for t in layer_types]
    cfg["use_normalization_before_and_after"] = True
    if getattr(hf, "attn_logit_softcapping", None):
        cfg["attn_scores_soft_cap"] = float(hf.attn_logit_softcapping)
    if getattr(hf, "final_logit_softcapping", None):
        cfg["output_logits_soft_cap"] = float(hf.final_logit_softcapping)
    if architecture == "Gemma2ForCausalLM":
        cfg["rotary_base"] = float(rope.get("rope_theta", getattr(hf, "rope_theta", 10000.0)))
        return cfg
    # Gemma 3: q/k norms, and one RoPE base for global layers and another for local ones
    full, local = rope.get("full_attention", {}), rope.get("sliding_attention", {})
    if (full.get("rope_type", "default") != "default") or (local.get("rope_type", "default") != "default"):
        raise UserError(f"This Gemma 3 config scales RoPE ({full.get('rope_type')}), which is not mapped here.")
    cfg["use_qk_norm"] = True
    cfg["rotary_base"] = float(full.get("rope_theta", 1_000_000.0))
    cfg["rotary_base_local"] = float(local.get("rope_theta", 10_000.0))
    return cfg


def _missing_attribute(exc: AttributeError) -> str:
    name = getattr(exc, "name", None)
    return f"the field '{name}'" if name else "a field it needs"
