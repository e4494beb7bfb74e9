"""The batch in sparse form: every nonzero SAE activation as (row, position, feature, value).

All index bookkeeping works on this list with whole-batch tensor ops, so its cost follows
the number of active (token, feature) pairs, not d_sae × tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class SparseBatch:
    rows: torch.Tensor  # [N] row within the batch
    pos: torch.Tensor  # [N] position within the row
    feat: torch.Tensor  # [N] feature id
    val: torch.Tensor  # [N] activation (> 0)
    n_rows: int
    n_ctx: int
    d_sae: int
    row_offset: int  # global id of the batch's first row

    @classmethod
    def from_dense(cls, acts: torch.Tensor, row_offset: int) -> SparseBatch:
        """acts [R, T, F] with special-token rows already zeroed; SAE activations are >= 0, so
        nonzero means active. One pass over the dense tensor, then gathers on the short list."""
        r, t, f = acts.shape
        flat = acts.view(-1)
        idx = flat.nonzero().squeeze(1)  # sorted, i.e. by (row, pos, feature)
        val = flat[idx].float()
        feat = idx % f
        token = idx // f
        return cls(token // t, token % t, feat, val, r, t, f, row_offset)

    @property
    def token(self) -> torch.Tensor:
        """Token index within the batch (row * n_ctx + pos)."""
        return self.rows * self.n_ctx + self.pos

    def windows(self, tokens: torch.Tensor, acts: torch.Tensor, sel: torch.Tensor, before: int, after: int):
        """Token ids and this feature's activations in a window around each selected entry.

        Returns (token_window [n, W] int32 with -1 outside the row, act_window [n, W] float32)."""
        offsets = torch.arange(-before, after + 1, device=tokens.device)
        p = self.pos[sel].unsqueeze(1) + offsets
        inside = (p >= 0) & (p < self.n_ctx)
        token_at = self.rows[sel].unsqueeze(1) * self.n_ctx + p.clamp(0, self.n_ctx - 1)  # flat (row, pos)
        tok = torch.where(inside, tokens.view(-1)[token_at], -1).to(torch.int32)
        act = acts.view(-1)[token_at * self.d_sae + self.feat[sel].unsqueeze(1)].float()
        return tok, act * inside


def rank_within_groups(group: torch.Tensor) -> torch.Tensor:
    """For a tensor already sorted by group, each element's rank inside its group (0, 1, ...)."""
    n = group.numel()
    if n == 0:
        return group.new_zeros(0)
    idx = torch.arange(n, device=group.device)
    starts = torch.ones(n, dtype=torch.bool, device=group.device)
    starts[1:] = group[1:] != group[:-1]
    start_idx = torch.cummax(torch.where(starts, idx, torch.zeros_like(idx)), dim=0).values
    return idx - start_idx


def sort_by_group_then(group: torch.Tensor, key: torch.Tensor, descending: bool) -> torch.Tensor:
    """Permutation sorting by group, and inside a group by key (a stable two-pass sort)."""
    order = torch.sort(key, descending=descending, stable=True).indices
    return order[torch.sort(group[order], stable=True).indices]
