"""Output (logit) effects of each decoder direction, blocked so d_sae = 1M never needs a
d_sae x vocab matrix. (Neighbours: neighbours.py; the map: feature_map.py.)"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from backend.errors import UserError
from backend.readout import Readout


@dataclass
class LogitEffects:
    top_ids: torch.Tensor  # [d_sae, n] most promoted tokens
    top_values: torch.Tensor
    bottom_ids: torch.Tensor  # [d_sae, n] most suppressed tokens
    bottom_values: torch.Tensor
    hist_counts: torch.Tensor  # [d_sae, bins]
    hist_lo: torch.Tensor  # [d_sae]
    hist_hi: torch.Tensor
    through_final_ln: bool


def logit_effects(readout: Readout, w_dec: torch.Tensor, n: int = 10, bins: int = 50,
                  block: int = 1024) -> LogitEffects:
    """Direct effect of each decoder direction on the logits, through backend/readout.py (the same path
    the trace uses): the most promoted and suppressed tokens and a histogram over the vocabulary."""
    if not readout.available:
        raise UserError(f"SAEs at '{readout.site.name}' have no linear read-out to the logits, which the index "
                        "needs for its output tokens; index an SAE at a residual, attention-output or MLP hook.")
    through_ln = readout.norm_weight is not None
    d_sae = len(w_dec)
    out = LogitEffects(
        torch.zeros(d_sae, n, dtype=torch.long),
        torch.zeros(d_sae, n),
        torch.zeros(d_sae, n, dtype=torch.long),
        torch.zeros(d_sae, n),
        torch.zeros(d_sae, bins, dtype=torch.long),
        torch.zeros(d_sae),
        torch.zeros(d_sae),
        through_ln,
    )
    for start in range(0, d_sae, block):
        logits = readout.logits(w_dec[start : start + block])  # [block, vocab]
        sl = slice(start, start + len(logits))
        top = logits.topk(n, dim=1)
        bottom = logits.topk(n, dim=1, largest=False)
        out.top_ids[sl], out.top_values[sl] = top.indices.cpu(), top.values.cpu()
        out.bottom_ids[sl], out.bottom_values[sl] = bottom.indices.cpu(), bottom.values.cpu()
        lo, hi = logits.min(dim=1).values, logits.max(dim=1).values
        out.hist_lo[sl], out.hist_hi[sl] = lo.cpu(), hi.cpu()
        width = (hi - lo).clamp_min(1e-12).unsqueeze(1)
        b = (logits - lo.unsqueeze(1)).div_(width).mul_(bins).long().clamp_(0, bins - 1)
        # one bincount over (row, bin) keys: half the time of a scatter_add of ones, same counts
        b += torch.arange(len(logits), device=b.device)[:, None] * bins
        out.hist_counts[sl] = torch.bincount(b.view(-1), minlength=len(logits) * bins).view(len(logits), bins).cpu()
    return out
