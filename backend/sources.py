"""One way to load a source (model + SAE + tokenizer), used by the index, inference and CLI.

A source is named by a `SourceSpec`:
- `demo`: the committed artifacts in backend/demo/artifacts, loaded as the `local:` source of those folders
  (offline, seconds);
- `pretrained:<model>:<release>:<sae_id>`: a TransformerLens model and an SAELens release
  (the real-user path, needs the Hugging Face hub or its local cache);
- `local:<model_dir>:<sae_dir>[:<tokenizer_dir>]`: a model folder (a Hugging Face `save_pretrained` folder of
  any architecture TransformerLens maps, or the TransformerLens-native format of the demo), any SAE folder
  SAELens loads, and a tokenizer folder (default: the model folder). Nothing touches the hub.
Loaded sources are cached per process, so every UI session shares one copy.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel

from backend.device import pick_device, pick_dtype
from backend.errors import NotFoundError, UserError
from backend.formats import DEMO_ARTIFACTS_DIR, DEMO_MODEL_NAME
from backend.formats.sae import SAE_WEIGHTS_FILE
from backend.payloads import SourceInfo


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
    return local_dirs(spec).sae_dir


@dataclass(frozen=True)
class LocalDirs:
    """The folders a source on disk reads; the demo is one such set."""

    model_dir: Path
    sae_dir: Path
    tokenizer_dir: Path | None  # None: the model folder's own tokenizer


def local_dirs(spec: SourceSpec) -> LocalDirs:
    if spec.kind == "demo":
        root = DEMO_ARTIFACTS_DIR
        return LocalDirs(root / "lm", root / "sae", root / "tokenizer")
    return LocalDirs(Path(spec.model or ""), Path(spec.sae_dir or ""),
                     Path(spec.tokenizer_dir) if spec.tokenizer_dir else None)


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

    def info(self) -> SourceInfo:
        return SourceInfo(
            source=str(self.spec),
            model=self.model_name,
            hook=self.hook_name,
            d_model=int(self.model.cfg.d_model),
            d_in=int(self.sae.W_dec.shape[1]),
            d_sae=self.d_sae,
            n_layers=int(self.model.cfg.n_layers),
            device=self.device,
            dtype=str(self.dtype).removeprefix("torch."),
            architecture=str(self.sae.cfg.architecture()) if hasattr(self.sae.cfg, "architecture") else "",
            vocab_size=int(self.model.cfg.d_vocab),
        )


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
    dirs = local_dirs(spec)
    if not (dirs.sae_dir / "cfg.json").exists():
        raise NotFoundError(f"The demo artifacts are missing from {DEMO_ARTIFACTS_DIR}; run "
                            "'python -m backend train-demo'.")
    return _load_from_dirs(spec, dirs, device, model_name=DEMO_MODEL_NAME)


def _load_local(spec: SourceSpec, device: str) -> LoadedSource:
    dirs = local_dirs(spec)
    return _load_from_dirs(spec, dirs, device, model_name=dirs.model_dir.name)


def _load_from_dirs(spec: SourceSpec, dirs: LocalDirs, device: str, model_name: str) -> LoadedSource:
    from backend.formats.hf_lm import is_hf_folder, load_hf_model
    from backend.formats.hooked_lm import is_hooked_lm_folder, load_model
    from backend.formats.sae import check_sae_fits, hook_name_of, load_sae
    from backend.formats.tokenizer import has_tokenizer, load_tokenizer

    tok_dir = dirs.tokenizer_dir or dirs.model_dir
    for what, folder, marker in (("model", dirs.model_dir, "config.json"), ("SAE", dirs.sae_dir, "cfg.json")):
        if not folder.is_dir():
            raise NotFoundError(f"The local {what} folder {folder} does not exist.")
        if not (folder / marker).is_file():
            raise NotFoundError(f"The local {what} folder has no {marker} at {folder}.")
    if not tok_dir.is_dir() or not has_tokenizer(tok_dir):
        where = "the model folder" if dirs.tokenizer_dir is None else "the tokenizer folder"
        raise NotFoundError(f"No tokenizer was found in {where} {tok_dir}; save one there with save_pretrained or "
                            "name a tokenizer folder as the spec's fourth part.")
    sae = load_sae(dirs.sae_dir, device)
    tokenizer = load_tokenizer(tok_dir)
    if is_hf_folder(dirs.model_dir):
        model = load_hf_model(dirs.model_dir, tokenizer, device, center_writing_weights=_sae_wants_centring(sae))
    elif is_hooked_lm_folder(dirs.model_dir):
        model = load_model(dirs.model_dir, tokenizer, device)
    else:
        raise UserError(f"The model folder {dirs.model_dir} is neither a Hugging Face save_pretrained folder "
                        "(config.json with a model_type) nor a TransformerLens-native one (config.json and "
                        "model.safetensors as the demo writes them).")
    hook = hook_name_of(sae, dirs.sae_dir)
    check_sae_fits(model, sae, hook, dirs.sae_dir)
    return LoadedSource(spec, model, sae, tokenizer, hook, device, torch.float32, model_name)


def _sae_wants_centring(sae: Any) -> bool:
    """SAELens records how it loaded the model it trained on; only an explicit True changes the residual."""
    kwargs = getattr(sae.cfg.metadata, "model_from_pretrained_kwargs", None) or {}
    return bool(kwargs.get("center_writing_weights", False))


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
