"""One read-out of SAE directions (backend/readout.py), checked against what TransformerLens computes, and
the index and the live trace agreeing on it for an attention-output (hook_z) SAE and an MLP SAE."""

from __future__ import annotations

import json

import duckdb
import pytest
import torch

from backend.errors import UserError
from backend.index.build import IndexConfig, build_index
from backend.index.meta import IndexMeta
from backend.inference.engine import LocalInference
from backend.inference.schemas import TraceRequest
from backend.readout import HookKind, HookSite, Readout
from backend.sources import SourceSpec, load_source
from backend.store import IndexStore
from tests.support.tiny_source import TinySourceDirs, random_topk_sae


def test_hook_sites_parse_once():
    assert HookSite.parse("blocks.3.hook_resid_pre") == HookSite("blocks.3.hook_resid_pre", 3, HookKind.RESIDUAL)
    assert HookSite.parse("blocks.0.attn.hook_z").kind is HookKind.ATTN_Z
    assert HookSite.parse("blocks.11.mlp.hook_post") == HookSite("blocks.11.mlp.hook_post", 11, HookKind.MLP_POST)
    assert HookSite.parse("blocks.2.hook_mlp_out").kind is HookKind.RESIDUAL
    assert HookSite.parse("blocks.2.attn.hook_q").kind is HookKind.OTHER
    assert HookSite.parse("hook_embed") == HookSite("hook_embed", None, HookKind.RESIDUAL)
    with pytest.raises(UserError, match="names no layer"):
        HookSite.parse("attn.hook_z")


@pytest.mark.parametrize(("hook", "out_hook"), [("blocks.0.attn.hook_z", "blocks.0.hook_attn_out"),
                                                 ("blocks.1.mlp.hook_post", "blocks.1.hook_mlp_out")])
def test_residual_is_what_the_model_adds_to_the_stream(source, hook, out_hook):
    """Adding v at the hook changes the block's output by exactly readout.residual(v)."""
    model = source.model
    tokens = torch.tensor([[1, 5, 9, 14]])
    readout = Readout(model, hook)
    _, base = model.run_with_cache(tokens, names_filter=[hook, out_hook])
    v = torch.randn(base[hook][0, -1].numel(), generator=torch.Generator().manual_seed(0))

    def add(act, hook):
        act[:, -1] += v.reshape(act.shape[2:])
        return act

    with model.hooks(fwd_hooks=[(hook, add)]):
        _, edited = model.run_with_cache(tokens, names_filter=[out_hook])
    change = edited[out_hook][0, -1] - base[out_hook][0, -1]
    assert torch.allclose(change, readout.residual(v[None])[0], atol=1e-4)


def test_logits_are_the_direct_path_with_the_final_norm_scale_frozen(source):
    model = source.model
    last = f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"
    tokens = torch.tensor([[1, 5, 9, 14]])
    logits, cache = model.run_with_cache(tokens, names_filter=["ln_final.hook_scale"])
    scale = cache["ln_final.hook_scale"]
    v = torch.randn(model.cfg.d_model, generator=torch.Generator().manual_seed(1))

    def add(act, hook):
        act[:, -1] += v
        return act

    with model.hooks(fwd_hooks=[(last, add), ("ln_final.hook_scale", lambda act, hook: scale)]):
        edited = model(tokens)
    expected = (edited - logits)[0, -1]
    got = Readout(model, last).logits(v[None])[0] / scale[0, -1, 0]
    assert torch.allclose(got, expected, atol=1e-4)


@pytest.mark.parametrize("hook", ["blocks.0.attn.hook_z", "blocks.1.mlp.hook_post"])
def test_index_and_trace_agree_for_attention_and_mlp_saes(hook, tiny_dirs, tiny_dataset, tmp_path, source):
    """An index of an SAE at this hook stores, for each feature, the logits the trace's direct effects use."""
    from sae_lens.saes.sae import SAEMetadata

    model = source.model
    width = model.cfg.n_heads * model.cfg.d_head if "hook_z" in hook else model.cfg.d_mlp
    sae_dir = tmp_path / "sae"
    metadata = SAEMetadata(hook_name=hook, model_name="tiny", context_size=model.cfg.n_ctx, prepend_bos=True)
    random_topk_sae(width, 24, 4, 0, metadata).save_model(str(sae_dir))
    spec = TinySourceDirs(tiny_dirs.model_dir, sae_dir, tiny_dirs.tokenizer_dir).spec
    out = build_index(SourceSpec.parse(spec), IndexConfig(tokens=1_000, batch_size=8, window_before=2, window_after=1,
                                                           top_k=3, progress=False, umap=False, steerability=False,
                                                           dataset=str(tiny_dataset)), tmp_path / "i.duckdb")
    con = duckdb.connect(str(out), read_only=True)
    table = {f: (ids, vals) for f, ids, vals in con.execute(
        "SELECT feature_id, logit_pos_ids, logit_pos_values FROM features").fetchall()}
    meta = IndexMeta.from_stored({k: json.loads(v) for k, v in con.execute("SELECT key, value FROM meta").fetchall()})
    con.close()
    assert meta.logits_through_final_ln is True
    assert (meta.d_in, IndexStore.open(out).info().d_in) == (width, width)  # what concept vectors must match

    hooked = load_source(spec)
    engine = LocalInference(hooked)
    result = engine.trace(TraceRequest(prompt="def add(a, b):\n    return a + b", top_n=50))
    assert result.prediction.direct_effects, "some feature is active at the last token"
    predicted = result.prediction.token.id
    _, cache = hooked.model.run_with_cache(engine._prompt_tensor("def add(a, b):\n    return a + b"),
                                           names_filter=["ln_final.hook_scale"])
    scale = float(cache["ln_final.hook_scale"][0, -1, 0])
    for effect in result.prediction.direct_effects:
        per_unit = effect.effect / effect.activation * scale  # the feature's own logit for the predicted token
        brute = Readout(hooked.model, hook).logit_of(hooked.sae.W_dec[[effect.feature_id]].detach(), predicted)
        assert per_unit == pytest.approx(float(brute[0]), rel=1e-3, abs=1e-4)
        ids, values = table[effect.feature_id]
        if predicted in ids:  # the index's table holds the same number for that token
            assert values[ids.index(predicted)] == pytest.approx(per_unit, rel=1e-3, abs=1e-4)
        assert max(values) >= per_unit - 1e-4  # and its top entry is at least as large
