"""How a direction at the SAE's hook reaches the logits: one module for the index's output tokens, the
trace's direct effects and steerability's logit lens, so they can never disagree.

    decoder row (hook space) -> residual stream (W_O for attn.hook_z, W_out for mlp.hook_post)
                             -> final norm with its per-token scale frozen (centre for LayerNorm, times its weight)
                             -> W_U

The per-token division by the norm's scale is a positive number: it changes magnitudes (the trace divides it
out at its position) but never a ranking of tokens."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

import torch

from backend.errors import UserError


class HookKind(Enum):
    RESIDUAL = "residual"  # hook_resid_pre/mid/post, hook_attn_out, hook_mlp_out: already d_model
    ATTN_Z = "attn_z"  # blocks.L.attn.hook_z: [heads, d_head], read out through W_O
    MLP_POST = "mlp_post"  # blocks.L.mlp.hook_post: d_mlp, read out through W_out
    OTHER = "other"  # e.g. queries or keys: no linear map to the residual stream


@dataclass(frozen=True)
class HookSite:
    name: str
    layer: int | None  # None for hooks outside the blocks (e.g. hook_embed)
    kind: HookKind

    @classmethod
    def parse(cls, hook_name: str) -> HookSite:
        match = re.match(r"blocks\.(\d+)\.", hook_name)
        layer = int(match.group(1)) if match else None
        if hook_name.endswith("attn.hook_z"):
            kind = HookKind.ATTN_Z
        elif hook_name.endswith("mlp.hook_post"):
            kind = HookKind.MLP_POST
        elif re.search(r"hook_(resid_(pre|mid|post)|attn_out|mlp_out)$", hook_name) or hook_name in (
                "hook_embed", "hook_pos_embed"):
            kind = HookKind.RESIDUAL
        else:
            kind = HookKind.OTHER
        if kind in (HookKind.ATTN_Z, HookKind.MLP_POST) and layer is None:
            raise UserError(f"The hook '{hook_name}' names no layer (blocks.N...).")
        return cls(hook_name, layer, kind)


class Readout:
    """The linear path from the hook to the logits, for one model and hook."""

    def __init__(self, model, hook_name: str):
        self.model, self.site = model, HookSite.parse(hook_name)
        cfg = model.cfg
        self.centre = cfg.normalization_type in ("LN", "LNPre")
        weight = getattr(getattr(model, "ln_final", None), "w", None)
        self.norm_weight = weight.detach().float() if weight is not None else None
        if self.site.kind is HookKind.ATTN_Z:
            self.to_resid = model.blocks[self.site.layer].attn.W_O.detach().reshape(-1, cfg.d_model).float()
        elif self.site.kind is HookKind.MLP_POST:
            self.to_resid = model.blocks[self.site.layer].mlp.W_out.detach().float()
        else:
            self.to_resid = None

    @property
    def available(self) -> bool:
        return self.site.kind is not HookKind.OTHER

    def residual(self, rows: torch.Tensor) -> torch.Tensor:
        """[n, d_hook] directions at the hook (hook_z rows flattened over heads) as [n, d_model]."""
        if not self.available:
            raise UserError(f"Directions at '{self.site.name}' have no linear read-out to the logits.")
        rows = rows.float().to(self.model.W_U.device)
        return rows @ self.to_resid if self.to_resid is not None else rows

    def through_final_norm(self, residual: torch.Tensor) -> torch.Tensor:
        if self.centre:
            residual = residual - residual.mean(dim=-1, keepdim=True)
        return residual * self.norm_weight if self.norm_weight is not None else residual

    def logits(self, rows: torch.Tensor) -> torch.Tensor:
        """[n, vocab] direct logit effect of each direction (before the per-token norm scale)."""
        return self.through_final_norm(self.residual(rows)) @ self.model.W_U.detach().float()

    def logit_of(self, rows: torch.Tensor, token_id: int) -> torch.Tensor:
        """[n] effect on one token's logit, without the [n, vocab] product."""
        return self.through_final_norm(self.residual(rows)) @ self.model.W_U[:, token_id].detach().float()
