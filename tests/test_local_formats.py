"""`local:` sources of real formats: tiny random GPT-2-, Llama- and Gemma-shaped models saved with
`save_pretrained`, SAEs of every SAELens architecture saved by SAELens, loaded offline through TransformerLens,
checked against the HF model and against brute force, indexed, traced and steered; and one sentence for each
bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
import torch

from backend.errors import NotFoundError, UserError
from backend.formats.sae import SAE_WEIGHTS_FILE
from backend.index.build import IndexConfig, build_index, encode_batch
from backend.index.datasets import dataset_texts, token_rows
from backend.index.meta import IndexMeta
from backend.inference.engine import LocalInference
from backend.inference.schemas import SteerFeature, SteerRequest, TraceRequest
from backend.sources import SourceSpec, load_source
from tests.support.formats import D_MODEL, SAE_KINDS, FormatDirs, build_format_dirs

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "def add(a, b):\n    return a + b\nclass Point:\n    pass\n"  # longer than the Gemma sliding window
SHORT = "def add(a, b):\n    return a"  # fits the SAE context (32) with room to generate
MAPPED = ("gpt2", "llama", "gemma", "gemma2", "gemma3")


@pytest.fixture(scope="module")
def fdirs(tmp_path_factory) -> FormatDirs:
    return build_format_dirs(tmp_path_factory.mktemp("formats"))


@pytest.mark.parametrize("name", MAPPED)
def test_hooked_logits_equal_the_hf_model(fdirs, name):
    from transformers import AutoModelForCausalLM

    source = load_source(fdirs.spec(name), device="cpu")
    hf = AutoModelForCausalLM.from_pretrained(str(fdirs.model(name)), local_files_only=True).eval()
    tokens = source.model.to_tokens(PROMPT)
    assert tokens.shape[1] > 16 and tokens[0, 0].item() == source.tokenizer.bos_token_id
    with torch.no_grad():
        ours, theirs = source.model(tokens), hf(tokens).logits
    assert theirs.std() > 0.5, "the random model must have logits large enough for the comparison to mean anything"
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)
    assert source.model.cfg.original_architecture == hf.config.architectures[0]
    assert source.hook_name == "blocks.1.hook_resid_pre" and source.context_size == 32


def _brute_encode(sae, x: torch.Tensor, kind: str) -> torch.Tensor:
    """Each architecture's encoder written out from its weights."""
    centred = x - sae.b_dec
    if kind == "gated":
        pre = centred @ sae.W_enc
        gate = (pre + sae.b_gate) > 0
        return gate * torch.relu(pre * torch.exp(sae.r_mag) + sae.b_mag)
    pre = centred @ sae.W_enc + sae.b_enc
    if kind == "standard":
        return torch.relu(pre)
    if kind == "topk":
        values, idx = torch.relu(pre).topk(sae.cfg.k, dim=-1)
        return torch.zeros_like(pre).scatter(-1, idx, values)
    # JumpReLU, and BatchTopK / Matryoshka in their inference form: the global threshold (0.3 when saved)
    return pre * (pre > 0.3)


@pytest.mark.parametrize("kind", SAE_KINDS)
def test_every_sae_architecture_loads_and_encodes_like_its_formula(fdirs, kind):
    source = load_source(fdirs.spec("llama", kind), device="cpu")
    expected_class = {"standard": "StandardSAE", "gated": "GatedSAE", "topk": "TopKSAE"}.get(kind, "JumpReLUSAE")
    assert type(source.sae).__name__ == expected_class
    x = torch.randn(40, D_MODEL) * 2
    with torch.no_grad():
        got, want = source.sae.encode(x), _brute_encode(source.sae, x, kind.removesuffix("-training"))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert 0 < (got > 0).float().mean() < 1, "some features fire, not all"


@pytest.fixture(scope="module")
def built(fdirs, tiny_dataset, tmp_path_factory):
    """Small real indexes: GPT-2 with a standard SAE, Llama with a training-saved BatchTopK, Gemma 2 with a
    JumpReLU (the dense-scan path of the builder, not only TopK's sparse one)."""
    out = tmp_path_factory.mktemp("format_index")
    cfg = IndexConfig(tokens=1_200, batch_size=8, top_k=4, per_interval=2, window_before=3, window_after=1,
                      umap=False, steerability=False, progress=False, dataset=str(tiny_dataset))
    pairs = {"gpt2": "standard", "llama": "batchtopk-training", "gemma2": "jumprelu"}
    return cfg, {m: (fdirs.spec(m, k), build_index(SourceSpec.parse(fdirs.spec(m, k)), cfg, out / f"{m}.duckdb"))
                 for m, k in pairs.items()}


@pytest.mark.parametrize("name", ["gpt2", "llama", "gemma2"])
def test_index_of_each_format_equals_brute_force(built, name):
    cfg, indexes = built
    spec, path = indexes[name]
    source = load_source(spec)
    rows = list(token_rows(dataset_texts(cfg.dataset), source.tokenizer, source.context_size, source.prepend_bos,
                           cfg.batch_size, cfg.tokens))
    tokens = torch.cat(rows)
    acts = torch.cat([encode_batch(source, r).float() for r in rows])
    acts = acts * (~torch.isin(tokens, torch.tensor(source.special_token_ids()))).unsqueeze(-1)
    con = duckdb.connect(str(path), read_only=True)
    try:
        got = con.execute("SELECT fire_count, max_act FROM features ORDER BY feature_id").fetchall()
        meta = IndexMeta.from_stored({k: json.loads(v) for k, v in con.execute("SELECT key, value FROM meta")
                                      .fetchall()})
    finally:
        con.close()
    assert [g[0] for g in got] == (acts > 0).sum(dim=(0, 1)).tolist()
    torch.testing.assert_close(torch.tensor([g[1] for g in got]), acts.amax(dim=(0, 1)), atol=1e-5, rtol=1e-5)
    assert sum(g[0] for g in got) > 0
    assert spec in meta.source


@pytest.mark.parametrize("name", ["gpt2", "llama", "gemma2"])
def test_trace_and_steer_each_format(built, name):
    spec, _ = built[1][name]
    source = load_source(spec)
    engine = LocalInference(source)
    trace = engine.trace(TraceRequest(prompt=SHORT, top_k=3, top_n=5))
    with torch.no_grad():
        tokens = source.model.to_tokens(SHORT)
        _, cache = source.model.run_with_cache(tokens, names_filter=source.hook_name)
        acts = source.sae.encode(cache[source.hook_name][0])
    assert [t.id for t in trace.tokens] == tokens[0].tolist()
    for position, row in enumerate(trace.token_features):
        expected = sorted(((v, f) for f, v in enumerate(acts[position].tolist()) if v > 0), reverse=True)[:3]
        assert [f.feature_id for f in row.features] == [f for _, f in expected]
    feature = trace.top_by_max[0].feature_id
    steer = engine.steer(SteerRequest(prompt=SHORT, features=[SteerFeature(feature_id=feature, strength=20.0)],
                                      max_new_tokens=6, temperature=0))
    summary = steer.summary[0]
    assert steer.default is not None and len(steer.steered.tokens) > 0
    assert summary.mean_steered_after_edit > (summary.mean_default or 0.0) + 5.0, "the added direction is read"


def test_unmappable_architecture_is_one_sentence(fdirs):
    with pytest.raises(UserError, match=r"^TransformerLens cannot map the architecture FalconForCausalLM of the "
                                        r"model in .*falcon; it maps .*\.$"):
        load_source(fdirs.spec("falcon"))


def test_sae_of_another_width_is_one_sentence(fdirs):
    with pytest.raises(UserError, match=r"^The SAE in .* reads 32-wide activations, but the model's hook "
                                        r"'blocks\.1\.hook_resid_pre' is 64 wide\.$"):
        load_source(fdirs.spec("gpt2", "topk", 32))


def test_missing_folders_and_files_are_one_sentence(fdirs, tmp_path):
    model, sae = fdirs.model("gpt2"), fdirs.sae("topk")
    with pytest.raises(NotFoundError, match=r"^The local SAE folder .*/nope does not exist\.$"):
        load_source(f"local:{model}:{tmp_path}/nope")
    with pytest.raises(NotFoundError, match=r"^No tokenizer was found in the tokenizer folder .*\.$"):
        load_source(f"local:{model}:{sae}:{tmp_path}")
    bare = tmp_path / "sae"
    bare.mkdir()
    (bare / "cfg.json").write_text((sae / "cfg.json").read_text())
    with pytest.raises(NotFoundError, match=rf"^The SAE folder has no {SAE_WEIGHTS_FILE} at .*\.$"):
        load_source(f"local:{model}:{bare}")


def test_demo_is_a_local_source_of_its_folders():
    """`demo` keeps its name and loads its committed artifacts through the same path as any `local:` spec."""
    from backend.formats import DEMO_ARTIFACTS_DIR
    from backend.sources import local_dirs

    dirs = local_dirs(SourceSpec.parse("demo"))
    assert dirs.model_dir == DEMO_ARTIFACTS_DIR / "lm" and str(SourceSpec.parse("demo")) == "demo"
    demo = load_source("demo", device="cpu")
    as_local = load_source(f"local:{dirs.model_dir}:{dirs.sae_dir}:{dirs.tokenizer_dir}", device="cpu")
    tokens = demo.model.to_tokens(PROMPT)
    with torch.no_grad():
        torch.testing.assert_close(demo.model(tokens), as_local.model(tokens))
    assert demo.hook_name == as_local.hook_name and demo.model_name == "demo-stdlib-lm"


def test_loading_never_touches_the_hub(fdirs, tmp_path):
    """A fresh process with the offline switches off, an empty cache and the hub pointed at a closed loopback
    port: any hub request would fail, so loading succeeds only if none is made."""
    code = ("from backend.sources import load_source; import sys; s = load_source(sys.argv[1], device='cpu'); "
            "print('loaded', s.model.cfg.original_architecture, s.d_sae)")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(tmp_path), "HF_HOME": str(tmp_path / "hf"),
           "HF_ENDPOINT": "http://127.0.0.1:9", "WANDB_MODE": "disabled"}
    out = subprocess.run([sys.executable, "-c", code, fdirs.spec("llama")], capture_output=True, text=True,
                         cwd=ROOT, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "loaded LlamaForCausalLM 96"
