"""Tiny real sources for tests and benchmarks: a BPE tokenizer, a random HookedTransformer
and a random SAELens SAE, written to disk in the same formats as the demo and loaded
through `backend.sources`. Built in about a second; nothing is mocked."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from backend.demo.lm import DemoLMConfig, build_model, save_model
from backend.demo.tokenizer import load_tokenizer, train_tokenizer

TINY_TEXT = [
    "def add(a, b):\n    return a + b\n",
    "class Point:\n    def __init__(self, x, y):\n        self.x = x\n        self.y = y\n",
    "import os\nimport sys\nprint(os.path.join('a', 'b'))\n",
    "for i in range(10):\n    if i % 2 == 0:\n        print(i)\n",
    '# a comment about <script>alert(1)</script> and "quotes" & ampersands\n',
    "x = [1, 2, 3]\ny = {'k': 'v'}\nwhile True:\n    break\n",
    "Unicode: café naïve — ünïcödé 你好 🙂\n",
]


@dataclass(frozen=True)
class TinySourceDirs:
    model_dir: Path
    sae_dir: Path
    tokenizer_dir: Path

    @property
    def spec(self) -> str:
        return f"local:{self.model_dir}:{self.sae_dir}:{self.tokenizer_dir}"


def build_tiny_source(
    root: Path,
    d_sae: int = 64,
    k: int = 8,
    n_layers: int = 2,
    d_model: int = 32,
    n_ctx: int = 32,
    vocab_size: int = 300,
    seed: int = 0,
    dead_features: int = 1,
) -> TinySourceDirs:
    """The last `dead_features` features can never win the top-k: the index must keep them, flagged dead."""
    from sae_lens import TopKSAE, TopKSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    torch.manual_seed(seed)
    dirs = TinySourceDirs(root / "lm", root / "sae", root / "tokenizer")
    train_tokenizer(TINY_TEXT * 20, vocab_size, dirs.tokenizer_dir)
    tok = load_tokenizer(dirs.tokenizer_dir)
    cfg = DemoLMConfig(
        n_layers=n_layers,
        d_model=d_model,
        n_heads=2,
        d_head=d_model // 2,
        d_mlp=4 * d_model,
        n_ctx=n_ctx,
        d_vocab=len(tok),
    )
    model = build_model(cfg, tok)
    save_model(model, cfg, dirs.model_dir)
    hook = f"blocks.{n_layers // 2}.hook_resid_pre"
    sae_cfg = TopKSAEConfig(
        d_in=d_model,
        d_sae=d_sae,
        k=k,
        dtype="float32",
        device="cpu",
        metadata=SAEMetadata(hook_name=hook, model_name="tiny", context_size=n_ctx, prepend_bos=True),
    )
    sae = TopKSAE(sae_cfg)
    with torch.no_grad():  # random but well-scaled weights so features fire on varied tokens
        w = torch.randn(d_sae, d_model)
        sae.W_dec.copy_(w / w.norm(dim=1, keepdim=True))
        sae.W_enc.copy_(sae.W_dec.T.clone())
        sae.b_enc.zero_()
        sae.b_dec.zero_()
        if dead_features:
            sae.W_enc[:, -dead_features:] = 0.0
            sae.b_enc[-dead_features:] = -1e4
    sae.save_model(str(dirs.sae_dir))
    return dirs
