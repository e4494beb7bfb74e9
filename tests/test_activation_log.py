"""The on-disk log of streamed activations: lookups equal the dense activations, a resume cuts it back to
its checkpoint, and past its budget it deletes itself (the windows pass then encodes again)."""

from __future__ import annotations

import torch

from backend.index.activation_log import KEY_FILE, VALUE_FILE, ActivationLog
from backend.index.sparse import SparseBatch

D_SAE, ROWS, CTX = 50, 3, 7


def dense_batches(n: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    acts = torch.rand(n, ROWS, CTX, D_SAE, generator=g)
    return list(acts * (acts > 0.9))  # about 5 of 50 features active per token


def logged(folder, batches: list[torch.Tensor], budget: int = 1 << 30) -> ActivationLog:
    log = ActivationLog.create(folder, D_SAE, budget)
    for b, acts in enumerate(batches):
        log.append(SparseBatch.from_dense(acts, row_offset=b * ROWS))
    return log


def every_pair(n_batches: int) -> tuple[torch.Tensor, torch.Tensor]:
    token, feature = torch.meshgrid(torch.arange(n_batches * ROWS * CTX), torch.arange(D_SAE), indexing="ij")
    return token.reshape(-1), feature.reshape(-1)


def test_lookup_equals_the_dense_activations_of_every_pair(tmp_path):
    batches = dense_batches(3)
    lookup = logged(tmp_path, batches).lookup()
    token, feature = every_pair(3)
    got = lookup.values_at(token.numpy(), feature.numpy())
    assert torch.equal(torch.from_numpy(got), torch.cat(batches).reshape(-1))
    assert (got > 0).sum() > 100


def test_resume_cuts_the_log_back_to_its_checkpoint(tmp_path):
    batches = dense_batches(3)
    logged(tmp_path, batches).flush()  # a build killed after its third batch, checkpointed after the second
    log = ActivationLog.reopen(tmp_path, D_SAE, 1 << 30, tokens_done=2 * ROWS * CTX)
    token, feature = every_pair(3)
    cut = torch.from_numpy(log.lookup().values_at(token.numpy(), feature.numpy()))
    expected = torch.cat(batches).reshape(-1).clone()
    expected[2 * ROWS * CTX * D_SAE:] = 0
    assert torch.equal(cut, expected)
    log.append(SparseBatch.from_dense(batches[2], row_offset=2 * ROWS))  # the resumed stream goes on
    again = torch.from_numpy(log.lookup().values_at(token.numpy(), feature.numpy()))
    assert torch.equal(again, torch.cat(batches).reshape(-1))


def test_past_its_budget_the_log_deletes_itself(tmp_path):
    batches = dense_batches(3)
    one_batch = int((batches[0] > 0).sum()) * 12
    log = logged(tmp_path, batches, budget=one_batch + one_batch // 2)
    assert log.dropped and log.lookup() is None
    assert not (tmp_path / KEY_FILE).exists() and not (tmp_path / VALUE_FILE).exists()
    assert ActivationLog.reopen(tmp_path, D_SAE, 1 << 30, tokens_done=ROWS * CTX) is None
    assert ActivationLog.create(tmp_path, D_SAE, 0) is None  # budget 0: no log at all
