"""Loading sources and choosing devices: the demo offline and fast, local folders, and one
clear sentence for every source that cannot be loaded."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from backend.device import DEVICE_ENV, DeviceError, pick_device, pick_dtype
from backend.errors import NotFoundError, UserError
from backend.sources import SourceSpec, load_source

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("text", ["demo", "pretrained:gpt2-small:gpt2-small-res-jb:blocks.8.hook_resid_pre",
                                  "local:/a/lm:/a/sae", "local:/a/lm:/a/sae:/a/tok"])
def test_spec_round_trip(text):
    assert str(SourceSpec.parse(text)) == text


@pytest.mark.parametrize("text", ["gpt2", "pretrained:gpt2", "local:/only-one", "demo:extra"])
def test_bad_spec_is_one_sentence(text):
    with pytest.raises(UserError, match=r"^Unknown source .*\.$"):
        SourceSpec.parse(text)


def test_local_source_loads_everything(tiny_dirs):
    src = load_source(tiny_dirs.spec, device="cpu")
    assert src.hook_name == "blocks.1.hook_resid_pre" and src.hook_layer == 1
    assert src.d_sae == 64 and src.device == "cpu" and src.dtype == torch.float32
    assert src.tokenizer.bos_token_id in src.special_token_ids()
    assert load_source(tiny_dirs.spec, device="cpu") is src, "a source loads once per process"


def test_missing_local_folder_is_one_sentence(tmp_path):
    with pytest.raises(NotFoundError, match=r"^The local model folder .*/lm does not exist\.$"):
        load_source(f"local:{tmp_path}/lm:{tmp_path}/sae")
    (tmp_path / "lm").mkdir()
    with pytest.raises(NotFoundError, match=r"^The local model folder has no config\.json at .*\.$"):
        load_source(f"local:{tmp_path}/lm:{tmp_path}/sae")


def test_unknown_pretrained_release():
    with pytest.raises(NotFoundError, match="SAELens has no release named 'no-such-release'"):
        load_source("pretrained:gpt2-small:no-such-release:x")
    with pytest.raises(NotFoundError, match="has no SAE 'nope'"):
        load_source("pretrained:gpt2-small:gpt2-small-res-jb:nope")


def test_pretrained_without_hub_says_what_to_do(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="Hugging Face hub is unreachable.*use the 'demo' source"):
        load_source("pretrained:gpt2-small:gpt2-small-res-jb:blocks.8.hook_resid_pre")


def test_demo_loads_offline_within_10_seconds():
    """A fresh process (imports included) loads the committed demo with the hub switched off."""
    code = ("import time; t = time.time(); from backend.sources import load_source; s = load_source('demo'); "
            "print(time.time() - t, s.d_sae, s.hook_name)")
    start = time.time()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                         env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr[-2000:]
    seconds, d_sae, hook = out.stdout.strip().splitlines()[-1].split()  # TransformerLens prints above it
    assert float(seconds) <= 10.0, f"demo load took {seconds} s"
    assert int(d_sae) >= 4096 and hook.startswith("blocks.")
    assert time.time() - start < 60


def test_device_choice(monkeypatch):
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    assert pick_device("cpu") == "cpu"
    assert pick_device(None) in ("cpu", "cuda", "mps")
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    assert pick_device(None) == "cpu"
    with pytest.raises(DeviceError, match="Unknown device 'tpu'"):
        pick_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="no CUDA GPU is available"):
            pick_device("cuda")
    assert pick_dtype("cpu", "bfloat16") == torch.float32, "float32 on CPU"
    with pytest.raises(DeviceError, match="Unknown dtype"):
        pick_dtype("cuda", "float8")
