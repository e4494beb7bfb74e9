"""Every edit the engine makes to the model lives here: one hook at the SAE's hook point that
records the SAE encoding of chosen features and, when steering, edits the residual.

Modes (strength s, decoder row W_dec[f], a_f the SAE's encoding of the unedited activation):
- add:    x + s·W_dec[f]
- clamp:  x + (s - a_f)·W_dec[f]   (swap a_f for s in the SAE's reconstruction of x)
- ablate: clamp with s = 0
Several features are applied in one matmul. Positions are masked per forward chunk, because with
a KV cache each forward call sees only the new tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from backend.inference.schemas import SteerMode, SteerPositions


@dataclass(frozen=True)
class SteeringPlan:
    feature_ids: list[int]
    strengths: list[float]  # resolved, one per feature (0 for ablate)
    mode: SteerMode
    positions: SteerPositions
    prompt_length: int
    added: torch.Tensor | None = None  # [d_in]: raw vectors (x strength, summed), added at steered positions

    @property
    def first_steered_position(self) -> int:
        # "generated" starts at the last prompt token: its output is the first sampled token.
        return 0 if self.positions == "all" else max(self.prompt_length - 1, 0)


def steered_position_mask(token_ids: torch.Tensor, start_position: int, plan: SteeringPlan,
                          special_ids: torch.Tensor) -> torch.Tensor:
    """[batch, chunk] bool: which positions of a chunk starting at `start_position` get steered."""
    positions = torch.arange(start_position, start_position + token_ids.shape[-1], device=token_ids.device)
    in_range = (positions >= plan.first_steered_position).expand_as(token_ids)
    # Special tokens (BOS above all) have activations the SAE never saw in training: leave them alone.
    return in_range & ~torch.isin(token_ids, special_ids)


def steering_coefficients(feature_acts: torch.Tensor, plan: SteeringPlan) -> torch.Tensor:
    """[..., n_features] multipliers of W_dec[f] for each position, before masking."""
    strengths = torch.tensor(plan.strengths, dtype=feature_acts.dtype, device=feature_acts.device)
    if plan.mode == "add":
        return strengths.expand_as(feature_acts)
    return strengths - feature_acts  # clamp; ablate is clamp with strengths of 0


@dataclass
class SaeHook:
    """TransformerLens forward hook at the SAE's hook point.

    Call `prepare(chunk_tokens, start_position)` before each forward call; after the calls,
    `recorded()` holds the encoding of `feature_ids` at every position seen, measured before the
    steering edit (what the text itself evokes), and `recorded_after_edit()` the encoding of the
    edited activation (what the rest of the model reads; equal to `recorded()` when not steering).
    """

    sae: torch.nn.Module
    feature_ids: list[int]
    plan: SteeringPlan | None
    special_ids: torch.Tensor
    directions: torch.Tensor | None = None  # [m, d_in] unit vectors whose projections are recorded, before the edit
    _mask: torch.Tensor | None = None
    _chunks: list[torch.Tensor] = field(default_factory=list)
    _edited_chunks: list[torch.Tensor] = field(default_factory=list)
    _projection_chunks: list[torch.Tensor] = field(default_factory=list)
    _decoder_rows: torch.Tensor | None = None

    def __post_init__(self) -> None:
        self._feature_index = torch.tensor(self.feature_ids, dtype=torch.long, device=self.special_ids.device)
        if self.plan is not None:
            self._decoder_rows = self.sae.W_dec[self._feature_index].detach()

    def prepare(self, chunk_tokens: torch.Tensor, start_position: int) -> None:
        self._mask = (steered_position_mask(chunk_tokens, start_position, self.plan, self.special_ids)
                      if self.plan is not None else None)

    def recorded(self) -> torch.Tensor:
        """[batch, positions, n_features] activations, in position order."""
        return torch.cat(self._chunks, dim=1)

    def recorded_projections(self) -> torch.Tensor:
        """[batch, positions, m] projections of the unedited activation on `directions`."""
        return torch.cat(self._projection_chunks, dim=1)

    def recorded_after_edit(self) -> torch.Tensor:
        """[batch, positions, n_features] activations of the edited residual, in position order."""
        return torch.cat(self._edited_chunks, dim=1)

    def __call__(self, activation: torch.Tensor, hook=None) -> torch.Tensor:
        flat = activation.reshape(*activation.shape[:2], -1)  # hook_z SAEs read heads concatenated
        feature_acts = self.sae.encode(flat)[..., self._feature_index]
        self._chunks.append(feature_acts.detach())
        if self.directions is not None:
            self._projection_chunks.append((flat @ self.directions.to(flat.dtype).T).detach())
        if self.plan is None:
            self._edited_chunks.append(self._chunks[-1])
            return activation
        if self._mask is None or self._mask.shape != flat.shape[:2]:
            raise RuntimeError("SaeHook.prepare() must be called with each forward chunk before steering.")
        coefficients = steering_coefficients(feature_acts, self.plan) * self._mask.unsqueeze(-1)
        edited = flat + (coefficients.to(self._decoder_rows.dtype) @ self._decoder_rows).to(flat.dtype)
        if self.plan.added is not None:
            edited = edited + self._mask.unsqueeze(-1).to(flat.dtype) * self.plan.added.to(flat.dtype)
        self._edited_chunks.append(self.sae.encode(edited)[..., self._feature_index].detach())
        return edited.reshape(activation.shape)


@dataclass
class RowSteeringHook:
    """Forward hook for batched steering with one edit per batch row: row b adds `vectors[b]` at every
    non-special position (a zero row leaves it alone), and the hook records the SAE encoding of
    `tracked[b]` (feature ids, [batch, m]) before the edit. One forward pass thus steers many
    features (or concept vectors) at once, one per row. Call `prepare(chunk_tokens)` before each call."""

    sae: torch.nn.Module
    vectors: torch.Tensor  # [batch, d_in]
    tracked: torch.Tensor  # [batch, m] long
    special_ids: torch.Tensor
    _keep: torch.Tensor | None = None
    _chunks: list[torch.Tensor] = field(default_factory=list)

    def prepare(self, chunk_tokens: torch.Tensor) -> None:
        self._keep = ~torch.isin(chunk_tokens, self.special_ids)

    def recorded(self) -> torch.Tensor:
        """[batch, positions, m] activations before the edit, in position order."""
        return torch.cat(self._chunks, dim=1)

    def __call__(self, activation: torch.Tensor, hook=None) -> torch.Tensor:
        flat = activation.reshape(*activation.shape[:2], -1)
        acts = self.sae.encode(flat)
        index = self.tracked.unsqueeze(1).expand(-1, acts.shape[1], -1)
        self._chunks.append(acts.gather(-1, index).detach())
        if self._keep is None or self._keep.shape != flat.shape[:2]:
            raise RuntimeError("RowSteeringHook.prepare() must be called with each forward chunk.")
        edited = flat + self._keep.unsqueeze(-1).to(flat.dtype) * self.vectors.to(flat.dtype).unsqueeze(1)
        return edited.reshape(activation.shape)
