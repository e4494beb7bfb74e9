"""Tiny real sources for tests and benchmarks: a BPE tokenizer, a random HookedTransformer
and a random SAELens SAE, written to disk in the same formats as the demo and loaded
through `backend.sources`. Built in about a second; nothing is mocked."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
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
    from sae_lens.saes.sae import SAEMetadata

    hook = f"blocks.{n_layers // 2}.hook_resid_pre"
    metadata = SAEMetadata(hook_name=hook, model_name="tiny", context_size=n_ctx, prepend_bos=True)
    random_topk_sae(d_model, d_sae, k, dead_features, metadata).save_model(str(dirs.sae_dir))
    return dirs


def random_topk_sae(d_in: int, d_sae: int, k: int, dead_features: int = 0, metadata=None):
    """A SAELens TopK SAE with random unit decoder rows and encoder = decoder^T (well-scaled, so features fire
    on varied inputs); the last `dead_features` can never win a top-k slot."""
    from sae_lens import TopKSAE, TopKSAEConfig

    extra = {"metadata": metadata} if metadata is not None else {}
    sae = TopKSAE(TopKSAEConfig(d_in=d_in, d_sae=d_sae, k=k, dtype="float32", device="cpu", **extra))
    with torch.no_grad():
        w = torch.randn(d_sae, d_in)
        sae.W_dec.copy_(w / w.norm(dim=1, keepdim=True))
        sae.W_enc.copy_(sae.W_dec.T.clone())
        sae.b_enc.zero_()
        sae.b_dec.zero_()
        if dead_features:
            sae.W_enc[:, -dead_features:] = 0.0
            sae.b_enc[-dead_features:] = -1e4
    return sae


# ---- processes under test ----------------------------------------------------------------------------

def free_port() -> int:
    """A free loopback port for a child process (the race until it binds is harmless in tests)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_answering(url: str, process: subprocess.Popen, timeout: float, log: Path | None = None) -> None:
    """Poll `url` until it answers 200; raise with the log's tail if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[:3]} exited with {process.returncode}{_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s{_tail(log)}")


@contextmanager
def streamlit_server(app: Path, env: dict[str, str], log: Path, timeout: float = 90) -> Iterator[str]:
    """`streamlit run app` headless on a free loopback port, with `env` added; yields its URL once it answers,
    and stops it after."""
    port = free_port()
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(app), "--server.headless", "true", "--server.port",
             str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
             "--server.fileWatcherType", "none"],
            cwd=app.parent, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(f"{url}/_stcore/health", proc, timeout=timeout, log=log)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _tail(log: Path | None) -> str:
    return f":\n{log.read_text()[-3000:]}" if log is not None and log.exists() else ""
