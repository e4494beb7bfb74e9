"""Train the demo LM: one readable loop in the spirit of nanoGPT's train.py.

AdamW, linear warm-up then cosine decay, a fixed token budget, held-out loss at the end.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm


@dataclass(frozen=True)
class LMTrainConfig:
    tokens: int = 12_000_000  # tokens seen in training
    batch_rows: int = 32
    lr: float = 2e-3
    min_lr_fraction: float = 0.1
    warmup_steps: int = 150
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_rows: int = 512
    seed: int = 0


@dataclass(frozen=True)
class LMTrainResult:
    heldout_loss: float
    train_loss_last: float
    tokens_trained: int
    steps: int
    wall_time_s: float


def lr_at(step: int, total: int, cfg: LMTrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
    return cfg.lr * (cfg.min_lr_fraction + (1 - cfg.min_lr_fraction) * 0.5 * (1 + math.cos(math.pi * progress)))


@torch.no_grad()
def heldout_loss(model, rows: torch.Tensor, batch_rows: int = 64) -> float:
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(rows), batch_rows):
        batch = rows[i : i + batch_rows].to(model.cfg.device).long()
        total += model(batch, return_type="loss").item() * len(batch)
        count += len(batch)
    model.train()
    return total / max(count, 1)


def train_lm(model, train_rows: torch.Tensor, heldout_rows: torch.Tensor, cfg: LMTrainConfig) -> LMTrainResult:
    generator = torch.Generator().manual_seed(cfg.seed)
    n_ctx = train_rows.shape[1]
    steps = max(1, cfg.tokens // (cfg.batch_rows * n_ctx))
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.dim() >= 2 and "W_" in name else no_decay).append(p)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.95),
    )
    model.train()
    start, loss_value = time.time(), float("nan")
    bar = tqdm(range(steps), desc="train LM", unit="step")
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, steps, cfg)
        idx = torch.randint(len(train_rows), (cfg.batch_rows,), generator=generator)
        batch = train_rows[idx].to(model.cfg.device).long()
        loss = model(batch, return_type="loss")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        if step % 20 == 0 or step == steps - 1:
            loss_value = loss.item()
            bar.set_postfix(
                loss=f"{loss_value:.3f}", tok_s=f"{(step + 1) * cfg.batch_rows * n_ctx / (time.time() - start):.0f}"
            )
    model.eval()
    eval_rows = heldout_rows[: cfg.eval_rows]
    return LMTrainResult(
        heldout_loss(model, eval_rows), loss_value, steps * cfg.batch_rows * n_ctx, steps, time.time() - start
    )


@torch.no_grad()
def sample_texts(model, tokenizer, prompts: list[str], max_new_tokens: int = 60, seed: int = 0) -> list[str]:
    torch.manual_seed(seed)
    outs = []
    for prompt in prompts:
        text = model.generate(
            prompt, max_new_tokens=max_new_tokens, temperature=0.7, verbose=False, stop_at_eos=True, return_type="str"
        )
        outs.append(text)
    return outs
