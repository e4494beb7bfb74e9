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
    def from_dense(cls, acts: torch.Tensor, keep: torch.Tensor, row_offset: int) -> SparseBatch:
        """acts [R, T, F]; keep [R, T] bool marks tokens that count (special tokens do not)."""
        r, t, f = acts.shape
        mask = (acts > 0) & keep.unsqueeze(-1)
        idx = mask.nonzero()  # row-major: sorted by (row, pos, feature)
        return cls(idx[:, 0], idx[:, 1], idx[:, 2], acts[mask].float(), r, t, f, row_offset)

    @property
    def token(self) -> torch.Tensor:
        """Token index within the batch (row * n_ctx + pos)."""
        return self.rows * self.n_ctx + self.pos

    def windows(self, tokens: torch.Tensor, acts: torch.Tensor, sel: torch.Tensor, before: int, after: int):
        """Token ids and this feature's activations in a window around each selected entry.

        Returns (token_window [n, W] int32 with -1 outside the row, act_window [n, W] float32)."""
        offsets = torch.arange(-before, after + 1, device=tokens.device)
        r = self.rows[sel].unsqueeze(1)
        p = self.pos[sel].unsqueeze(1) + offsets
        inside = (p >= 0) & (p < self.n_ctx)
        pc = p.clamp(0, self.n_ctx - 1)
        tok = torch.where(inside, tokens[r, pc], torch.full_like(pc, -1)).to(torch.int32)
        f = self.feat[sel].unsqueeze(1).expand_as(pc)
        act = torch.where(inside, acts[r.expand_as(pc), pc, f].float(), torch.zeros((), device=acts.device))
        return tok, act


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
