"""The demo language model: a small HookedTransformer, its config, and disk format.

Weights are saved as safetensors beside a JSON config, so loading needs no hub.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

LM_CONFIG_FILE = "config.json"
LM_WEIGHTS_FILE = "model.safetensors"


@dataclass(frozen=True)
class DemoLMConfig:
    n_layers: int = 4
    d_model: int = 256
    n_heads: int = 4
    d_head: int = 64
    d_mlp: int = 1024
    n_ctx: int = 128
    d_vocab: int = 4096
    act_fn: str = "gelu"

    def hooked_config(self, device: str = "cpu"):
        from transformer_lens import HookedTransformerConfig

        return HookedTransformerConfig(
            n_layers=self.n_layers,
            d_model=self.d_model,
            n_heads=self.n_heads,
            d_head=self.d_head,
            d_mlp=self.d_mlp,
            n_ctx=self.n_ctx,
            d_vocab=self.d_vocab,
            act_fn=self.act_fn,
            normalization_type="LN",
            positional_embedding_type="standard",
            default_prepend_bos=True,
            device=device,
            seed=0,
        )


def build_model(config: DemoLMConfig, tokenizer, device: str = "cpu"):
    from transformer_lens import HookedTransformer

    return HookedTransformer(config.hooked_config(device), tokenizer=tokenizer, move_to_device=True)


def save_model(model, config: DemoLMConfig, out_dir: Path) -> None:
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out_dir / LM_WEIGHTS_FILE))
    (out_dir / LM_CONFIG_FILE).write_text(json.dumps(asdict(config), indent=1))


def load_model(lm_dir: Path, tokenizer, device: str = "cpu"):
    from safetensors.torch import load_file

    config = DemoLMConfig(**json.loads((lm_dir / LM_CONFIG_FILE).read_text()))
    model = build_model(config, tokenizer, device)
    state = load_file(str(lm_dir / LM_WEIGHTS_FILE), device=str(device))
    model.load_state_dict(state, strict=False)
    model.eval()
    return model


def tokenize_corpus(texts, tokenizer, n_ctx: int) -> torch.Tensor:
    """Concatenate files (each preceded by BOS) and cut rows of n_ctx tokens, each starting
    with BOS, so every row looks like what the model sees at inference time."""
    bos = tokenizer.bos_token_id
    stream: list[int] = []
    for text in texts:
        stream.append(bos)
        stream.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
    body = n_ctx - 1
    n_rows = len(stream) // body
    rows = torch.tensor(stream[: n_rows * body], dtype=torch.int32).view(n_rows, body)
    return torch.cat([torch.full((n_rows, 1), bos, dtype=torch.int32), rows], dim=1)
