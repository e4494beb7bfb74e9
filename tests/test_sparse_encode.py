"""Sparse activations equal the dense ones for every SAE family the builder meets (the TopK path uses
SAELens's own sparse output; the others are scanned densely), and lookups find exactly those."""

from __future__ import annotations

import pytest
import torch
from sae_lens import JumpReLUSAE, JumpReLUSAEConfig, StandardSAE, StandardSAEConfig, TopKSAE, TopKSAEConfig

from backend.index.sparse import SparseBatch, _encode_chunk


def _randomised(sae):
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return sae


@pytest.mark.parametrize("sae", [
    TopKSAE(TopKSAEConfig(d_in=16, d_sae=64, k=5)),
    TopKSAE(TopKSAEConfig(d_in=16, d_sae=64, k=5, rescale_acts_by_decoder_norm=True)),
    StandardSAE(StandardSAEConfig(d_in=16, d_sae=64)),
    JumpReLUSAE(JumpReLUSAEConfig(d_in=16, d_sae=64)),
], ids=["topk", "topk-rescaled", "relu", "jumprelu"])
def test_sparse_chunk_equals_dense(sae):
    sae = _randomised(sae)
    x = torch.randn(40, 16, generator=torch.Generator().manual_seed(1))
    dense = sae.encode(x)
    tok, feat, val = _encode_chunk(sae, x)
    rebuilt = torch.zeros_like(dense)
    rebuilt[tok, feat] = val
    assert torch.equal(rebuilt, dense)
    keys = tok * 64 + feat
    assert (keys[1:] > keys[:-1]).all(), "sorted by (token, feature), no duplicates"
    assert (val > 0).all()
    if isinstance(sae, TopKSAE):
        assert not sae.activation_fn.use_sparse_activations, "the SAE is left as it was found"


def test_lookup_finds_active_pairs_and_zero_elsewhere():
    acts = torch.zeros(2, 3, 4)
    acts[0, 1, 2], acts[1, 2, 0], acts[1, 2, 3] = 1.5, 2.0, 0.25
    batch = SparseBatch.from_dense(acts, row_offset=7)
    token = torch.tensor([1, 5, 5, 5, 0])
    feat = torch.tensor([2, 0, 3, 1, 0])
    assert batch.lookup(token, feat).tolist() == [1.5, 2.0, 0.25, 0.0, 0.0]
    assert batch.global_token.tolist() == [(7 + 0) * 3 + 1, (7 + 1) * 3 + 2, (7 + 1) * 3 + 2]
