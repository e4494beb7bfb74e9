"""A TransformerLens-native LM folder (the demo's format): `config.json` holding a `HookedLMConfig` (no
`model_type`, which marks a Hugging Face folder) and `model.safetensors` holding the HookedTransformer's own
state dict. Loading needs no hub and no conversion."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

LM_CONFIG_FILE = "config.json"
LM_WEIGHTS_FILE = "model.safetensors"


@dataclass(frozen=True)
class HookedLMConfig:
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


def is_hooked_lm_folder(folder: Path) -> bool:
    """True when the folder's config.json has exactly the fields of a HookedLMConfig."""
    try:
        keys = set(json.loads((folder / LM_CONFIG_FILE).read_text()))
    except (OSError, ValueError):
        return False
    return keys == {f.name for f in fields(HookedLMConfig)} and (folder / LM_WEIGHTS_FILE).is_file()


def build_model(config: HookedLMConfig, tokenizer, device: str = "cpu"):
    from transformer_lens import HookedTransformer

    return HookedTransformer(config.hooked_config(device), tokenizer=tokenizer, move_to_device=True)


def save_model(model, config: HookedLMConfig, out_dir: Path) -> None:
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out_dir / LM_WEIGHTS_FILE))
    (out_dir / LM_CONFIG_FILE).write_text(json.dumps(asdict(config), indent=1))


def load_model(lm_dir: Path, tokenizer, device: str = "cpu"):
    from safetensors.torch import load_file

    config = HookedLMConfig(**json.loads((lm_dir / LM_CONFIG_FILE).read_text()))
    model = build_model(config, tokenizer, device)
    state = load_file(str(lm_dir / LM_WEIGHTS_FILE), device=str(device))
    model.load_state_dict(state, strict=False)
    model.eval()
    return model
