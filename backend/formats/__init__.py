"""Folder formats a `local:` source reads: a TransformerLens-native LM folder (the demo's), a Hugging Face
`save_pretrained` folder, a tokenizer folder, and any SAE folder SAELens can load.

The demo is one such set of folders; its location is named here so that `backend.sources` can resolve the
`demo` spec without importing `backend.demo` (which trains; loading never should)."""

from __future__ import annotations

from pathlib import Path

DEMO_ARTIFACTS_DIR = Path(__file__).resolve().parents[1] / "demo" / "artifacts"
DEMO_MODEL_NAME = "demo-stdlib-lm"
