"""One way to load a source (model + SAE + tokenizer), used by the index, inference and CLI.

A source is named by a `SourceSpec`:
- `demo`: the committed artifacts in backend/demo/artifacts (offline, seconds);
- `pretrained:<model>:<release>:<sae_id>`: a TransformerLens model and an SAELens release
  (the real-user path, needs the Hugging Face hub or its local cache);
- `local:<model_dir>:<sae_dir>[:<tokenizer_dir>]`: folders in the demo's LM format and
  SAELens disk format.
Loaded sources are cached per process, so every UI session shares one copy.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel

from backend.demo.paths import ARTIFACTS_DIR
from backend.device import pick_device, pick_dtype
from backend.errors import NotFoundError, UserError


class SourceSpec(BaseModel, frozen=True):
    kind: Literal["demo", "pretrained", "local"] = "demo"
    model: str | None = None  # TransformerLens model name, or a local model dir
    release: str | None = None  # SAELens release
    sae_id: str | None = None
    sae_dir: str | None = None
    tokenizer_dir: str | None = None

    @classmethod
    def parse(cls, text: str) -> SourceSpec:
        text = (text or "demo").strip()
        parts = text.split(":")
        if parts[0] == "demo" and len(parts) == 1:
            return cls(kind="demo")
        if parts[0] == "pretrained" and len(parts) == 4:
            return cls(kind="pretrained", model=parts[1], release=parts[2], sae_id=parts[3])
        if parts[0] == "local" and len(parts) in (3, 4):
            return cls(
                kind="local", model=parts[1], sae_dir=parts[2], tokenizer_dir=parts[3] if len(parts) == 4 else None
            )
        raise UserError(
            f"Unknown source '{text}'; use 'demo', 'pretrained:<model>:<release>:<sae_id>' "
            "or 'local:<model_dir>:<sae_dir>[:<tokenizer_dir>]'."
        )

    def __str__(self) -> str:
        if self.kind == "demo":
            return "demo"
        if self.kind == "pretrained":
            return f"pretrained:{self.model}:{self.release}:{self.sae_id}"
        tail = f":{self.tokenizer_dir}" if self.tokenizer_dir else ""
        return f"local:{self.model}:{self.sae_dir}{tail}"


SAE_WEIGHTS_FILE = "sae_weights.safetensors"  # SAELens disk format


def sae_weights_digest(spec: SourceSpec) -> str | None:
    """sha256 of the SAE's weights file for sources on disk (None for hub sources, named by release and id).

    An index records it, so the app can tell when the SAE it was built from has since changed (e.g. a pull
    brought new demo weights) without loading the model."""
    if spec.kind == "pretrained":
        return None
    weights = _sae_dir(spec) / SAE_WEIGHTS_FILE
    if not weights.is_file():
        return None
    with weights.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _sae_dir(spec: SourceSpec) -> Path:
    """The SAE folder of a source on disk (demo or local)."""
    return ARTIFACTS_DIR / "sae" if spec.kind == "demo" else Path(spec.sae_dir or "")


@dataclass
class LoadedSource:
    spec: SourceSpec
    model: Any  # HookedTransformer
    sae: Any  # sae_lens.SAE
    tokenizer: Any
    hook_name: str
    device: str
    dtype: torch.dtype
    model_name: str
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    @property
    def hook_layer(self) -> int:
        return int(self.hook_name.split(".")[1])

    @property
    def d_sae(self) -> int:
        return int(self.sae.cfg.d_sae)

    @property
    def context_size(self) -> int:
        meta_ctx = getattr(self.sae.cfg.metadata, "context_size", None)
        return int(meta_ctx or self.model.cfg.n_ctx)

    @property
    def prepend_bos(self) -> bool:
        value = getattr(self.sae.cfg.metadata, "prepend_bos", None)
        return True if value is None else bool(value)

    def special_token_ids(self) -> list[int]:
        tok = self.tokenizer
        ids = {
            getattr(tok, a, None)
            for a in ("bos_token_id", "eos_token_id", "pad_token_id", "sep_token_id", "cls_token_id", "unk_token_id")
        }
        ids |= set(getattr(tok, "all_special_ids", []) or [])
        return sorted(i for i in ids if i is not None)

    def describe(self) -> dict[str, Any]:
        return {
            "source": str(self.spec),
            "model": self.model_name,
            "hook": self.hook_name,
            "d_model": int(self.model.cfg.d_model),
            "d_sae": self.d_sae,
            "n_layers": int(self.model.cfg.n_layers),
            "device": self.device,
            "dtype": str(self.dtype).removeprefix("torch."),
            "architecture": str(self.sae.cfg.architecture()) if hasattr(self.sae.cfg, "architecture") else "",
            "vocab_size": int(self.model.cfg.d_vocab),
        }


_CACHE: dict[tuple[str, str, str], LoadedSource] = {}
_CACHE_LOCK = threading.Lock()


def load_source(spec: SourceSpec | str = "demo", device: str | None = None, dtype: str | None = None) -> LoadedSource:
    """Load (once per process) the model, SAE and tokenizer that a spec names."""
    spec = SourceSpec.parse(spec) if isinstance(spec, str) else spec
    device = pick_device(device)
    torch_dtype = pick_dtype(device, dtype)
    key = (str(spec), device, str(torch_dtype))
    with _CACHE_LOCK:
        if key not in _CACHE:
            loader = {"demo": _load_demo, "pretrained": _load_pretrained, "local": _load_local}[spec.kind]
            source = loader(spec, device)
            source.model.to(torch_dtype)
            source.sae.to(dtype=torch_dtype)
            source.dtype = torch_dtype
            source.model.eval()
            _CACHE[key] = source
        return _CACHE[key]


def _load_demo(spec: SourceSpec, device: str) -> LoadedSource:
    if not (_sae_dir(spec) / "cfg.json").exists():
        raise NotFoundError(f"The demo artifacts are missing from {ARTIFACTS_DIR}; run 'python -m backend train-demo'.")
    return _load_from_dirs(
        spec,
        ARTIFACTS_DIR / "lm",
        _sae_dir(spec),
        ARTIFACTS_DIR / "tokenizer",
        device,
        model_name="demo-stdlib-lm",
    )


def _load_local(spec: SourceSpec, device: str) -> LoadedSource:
    model_dir, sae_dir = Path(spec.model or ""), _sae_dir(spec)
    tok_dir = Path(spec.tokenizer_dir) if spec.tokenizer_dir else model_dir
    for what, path in (
        ("model", model_dir / "config.json"),
        ("SAE", sae_dir / "cfg.json"),
        ("tokenizer", tok_dir / "tokenizer_config.json"),
    ):
        if not path.exists():
            raise NotFoundError(f"The local {what} folder has no {path.name} at {path.parent}.")
    return _load_from_dirs(spec, model_dir, sae_dir, tok_dir, device, model_name=model_dir.name)


def _load_from_dirs(
    spec: SourceSpec, lm_dir: Path, sae_dir: Path, tok_dir: Path, device: str, model_name: str
) -> LoadedSource:
    from sae_lens import SAE

    from backend.demo.lm import load_model
    from backend.demo.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(tok_dir)
    model = load_model(lm_dir, tokenizer, device)
    sae = SAE.load_from_disk(str(sae_dir), device=device)
    hook = sae.cfg.metadata.hook_name or json.loads((sae_dir / "cfg.json").read_text()).get("hook_name")
    return LoadedSource(spec, model, sae, tokenizer, hook, device, torch.float32, model_name)


def _load_pretrained(spec: SourceSpec, device: str) -> LoadedSource:
    from sae_lens import SAE
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory
    from transformer_lens import HookedTransformer

    directory = get_pretrained_saes_directory()
    if spec.release not in directory:
        raise NotFoundError(f"SAELens has no release named '{spec.release}'.")
    if spec.sae_id not in directory[spec.release].saes_map:
        raise NotFoundError(f"Release '{spec.release}' has no SAE '{spec.sae_id}'.")
    try:
        model = HookedTransformer.from_pretrained_no_processing(spec.model, device=device)
        sae = SAE.from_pretrained(spec.release, spec.sae_id, device=device)
    except Exception as exc:  # the hub raises many types; all mean "could not fetch"
        if _looks_like_network_error(exc):
            raise UserError(
                f"Could not download '{spec.model}' / '{spec.release}:{spec.sae_id}' because the "
                "Hugging Face hub is unreachable from this machine; download them once on a connected "
                "machine (they are then cached) or use the 'demo' source."
            ) from exc
        raise
    return LoadedSource(
        spec, model, sae, model.tokenizer, sae.cfg.metadata.hook_name, device, torch.float32, spec.model or ""
    )


def _looks_like_network_error(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    markers = (
        "offline",
        "connection",
        "resolve",
        "network",
        "timed out",
        "hub",
        "localentrynotfound",
        "cannot find the requested files",
        "max retries",
        "name or service",
    )
    return any(m in text for m in markers)
