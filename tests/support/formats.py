"""Tiny real Hugging Face models and SAELens SAEs of every architecture, saved as users save them
(`save_pretrained`, `save_model` / `save_inference_model`), for the `local:` format tests. Random weights,
scaled so features fire on varied inputs; nothing is mocked."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from backend.demo.tokenizer import load_tokenizer, train_tokenizer
from tests.support.tiny_source import TINY_TEXT

D_MODEL = 64
N_CTX = 64
SAE_CONTEXT = 32
HOOK = "blocks.1.hook_resid_pre"
INIT_RANGE = 0.3  # HF's default 0.02 gives near-zero logits; a wrong conversion must show in the comparison


def _gpt2(vocab: int, ids: dict):
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel(
        GPT2Config(
            n_layer=2,
            n_embd=D_MODEL,
            n_head=4,
            n_positions=N_CTX,
            vocab_size=vocab,
            **ids,
            initializer_range=INIT_RANGE,
        )
    )


def _decoder_config(config_cls, vocab: int, ids: dict, **shape):
    """The two-layer shape every Llama-family test model shares; `shape` adds each family's own fields."""
    return config_cls(num_hidden_layers=2, hidden_size=D_MODEL, intermediate_size=128, num_attention_heads=4,
                      max_position_embeddings=N_CTX, vocab_size=vocab, **ids, initializer_range=INIT_RANGE, **shape)


def _llama(vocab: int, ids: dict):
    from transformers import LlamaConfig, LlamaForCausalLM

    return LlamaForCausalLM(_decoder_config(LlamaConfig, vocab, ids, num_key_value_heads=2))


def _gemma(vocab: int, ids: dict):
    from transformers import GemmaConfig, GemmaForCausalLM

    return GemmaForCausalLM(_decoder_config(GemmaConfig, vocab, ids, num_key_value_heads=1, head_dim=16))


def _gemma2(vocab: int, ids: dict):
    from transformers import Gemma2Config, Gemma2ForCausalLM

    # a sliding window shorter than the prompts, so local attention is exercised
    return Gemma2ForCausalLM(_decoder_config(Gemma2Config, vocab, ids, num_key_value_heads=2, head_dim=16,
                                             sliding_window=8))


def _gemma3(vocab: int, ids: dict):
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    return Gemma3ForCausalLM(_decoder_config(Gemma3TextConfig, vocab, ids, num_key_value_heads=1, head_dim=16,
                                             sliding_window=8,
                                             layer_types=["sliding_attention", "full_attention"]))


def _falcon(vocab: int, ids: dict):
    from transformers import FalconConfig, FalconForCausalLM

    return FalconForCausalLM(
        FalconConfig(num_hidden_layers=2, hidden_size=D_MODEL, num_attention_heads=4, vocab_size=vocab, **ids)
    )


HF_BUILDERS: dict[str, Callable] = {
    "gpt2": _gpt2,
    "llama": _llama,
    "gemma": _gemma,
    "gemma2": _gemma2,
    "gemma3": _gemma3,
    "falcon": _falcon,
}
# How each SAE folder is written: an inference architecture by save_model; BatchTopK and Matryoshka both as
# SAELens's trainer leaves them (save_inference_model: JumpReLU) and as a training checkpoint (save_model).
SAE_KINDS = (
    "standard",
    "gated",
    "jumprelu",
    "topk",
    "batchtopk",
    "batchtopk-training",
    "matryoshka",
    "matryoshka-training",
)


@dataclass(frozen=True)
class FormatDirs:
    root: Path

    def model(self, name: str) -> Path:
        return self.root / "hf" / name

    def sae(self, kind: str, d_in: int = D_MODEL) -> Path:
        return self.root / "sae" / f"{kind}-{d_in}"

    def spec(self, model: str, sae_kind: str = "topk", d_in: int = D_MODEL) -> str:
        return f"local:{self.model(model)}:{self.sae(sae_kind, d_in)}"


def build_format_dirs(root: Path, models: tuple[str, ...] = tuple(HF_BUILDERS), seed: int = 0) -> FormatDirs:
    """One tokenizer saved into every model folder, the models, and an SAE folder of each kind."""
    torch.manual_seed(seed)
    dirs = FormatDirs(root)
    tok_dir = root / "tokenizer"
    train_tokenizer(TINY_TEXT * 20, 300, tok_dir)
    tokenizer = load_tokenizer(tok_dir)
    for name in models:
        ids = {f"{t}_token_id": getattr(tokenizer, f"{t}_token_id") for t in ("bos", "eos", "pad")}
        model = HF_BUILDERS[name](len(tokenizer), ids)
        model.save_pretrained(str(dirs.model(name)))
        tokenizer.save_pretrained(str(dirs.model(name)))
    for kind in SAE_KINDS:
        save_random_sae(kind, dirs.sae(kind), D_MODEL)
    save_random_sae("topk", dirs.sae("topk", 32), 32)  # a width no model here has
    return dirs


def save_random_sae(kind: str, out: Path, d_in: int, d_sae: int = 96, k: int = 8) -> None:
    import sae_lens
    from sae_lens.saes.sae import SAEMetadata

    meta = SAEMetadata(hook_name=HOOK, model_name="tiny-hf", context_size=SAE_CONTEXT, prepend_bos=True)
    common = dict(d_in=d_in, d_sae=d_sae, dtype="float32", device="cpu", metadata=meta)
    base = kind.removesuffix("-training")
    if base == "standard":
        sae = sae_lens.StandardSAE(sae_lens.StandardSAEConfig(**common))
    elif base == "gated":
        sae = sae_lens.GatedSAE(sae_lens.GatedSAEConfig(**common))
    elif base == "jumprelu":
        sae = sae_lens.JumpReLUSAE(sae_lens.JumpReLUSAEConfig(**common))
    elif base == "topk":
        sae = sae_lens.TopKSAE(sae_lens.TopKSAEConfig(k=k, **common))
    elif base == "batchtopk":
        sae = sae_lens.BatchTopKTrainingSAE(sae_lens.BatchTopKTrainingSAEConfig(k=k, **common))
    else:
        sae = sae_lens.MatryoshkaBatchTopKTrainingSAE(
            sae_lens.MatryoshkaBatchTopKTrainingSAEConfig(k=k, matryoshka_widths=[d_sae // 3, d_sae], **common)
        )
    _scale(sae)
    if kind in ("batchtopk", "matryoshka"):
        sae.save_inference_model(str(out))
    else:
        sae.save_model(str(out))


@torch.no_grad()
def _scale(sae) -> None:
    """Unit decoder rows, encoder = decoder^T, and thresholds that let a fair share of features fire."""
    w = torch.randn(sae.cfg.d_sae, sae.cfg.d_in)
    sae.W_dec.copy_(w / w.norm(dim=1, keepdim=True))
    sae.W_enc.copy_(sae.W_dec.T.clone())
    for name, value in (("b_enc", 0.0), ("b_dec", 0.0), ("b_gate", 0.0), ("b_mag", 0.0), ("r_mag", 0.0)):
        if getattr(sae, name, None) is not None:
            getattr(sae, name).fill_(value)
    if hasattr(sae, "threshold"):
        sae.threshold.fill_(0.3)
    if hasattr(sae, "topk_threshold"):
        sae.topk_threshold.fill_(0.3)
