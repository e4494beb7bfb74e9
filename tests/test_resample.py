"""Re-seeding dead SAE latents (the demo SAE's revival step): only dead latents change, each is
seeded on a real token's reconstruction error, and it fires again right away."""

from __future__ import annotations

import torch

from backend.demo.resample import collect_activations, firing_counts, resample_dead_latents
from tests.support.tiny_source import random_topk_sae

D_IN, D_SAE, K, DEAD = 16, 48, 4, 6


def sae_with_dead_latents():
    torch.manual_seed(0)
    sae = random_topk_sae(D_IN, D_SAE, K, dead_features=DEAD)  # the last DEAD can never win a top-k slot
    with torch.no_grad():
        sae.b_dec.copy_(torch.randn(D_IN) * 0.1)
    return sae


def test_only_dead_latents_are_reseeded_on_reconstruction_errors_and_fire_again():
    sae = sae_with_dead_latents()
    acts = torch.randn(3000, D_IN) * 2
    before = {name: p.detach().clone() for name, p in sae.named_parameters()}
    with torch.no_grad():
        errors = acts - sae.decode(sae.encode(acts))
    assert (firing_counts(sae, acts)[-DEAD:] == 0).all()

    report = resample_dead_latents(sae, acts, seed=0)

    assert (report.tokens_seen, report.dead_before, report.resampled) == (3000, DEAD, DEAD)
    assert report.resampled_firing_after == DEAD
    assert (firing_counts(sae, acts)[-DEAD:] > 0).all()
    live = slice(0, D_SAE - DEAD)
    assert torch.equal(sae.W_dec[live], before["W_dec"][live]) and torch.equal(sae.W_enc[:, live],
                                                                               before["W_enc"][:, live])
    assert torch.equal(sae.b_enc[live], before["b_enc"][live]) and torch.equal(sae.b_dec, before["b_dec"])
    new_rows = sae.W_dec[-DEAD:].detach()
    torch.testing.assert_close(new_rows.norm(dim=1), torch.ones(DEAD))
    # each new decoder row is the direction of one token's reconstruction error
    cosine = torch.nn.functional.normalize(new_rows, dim=1) @ torch.nn.functional.normalize(errors, dim=1).T
    assert (cosine.max(dim=1).values > 0.9999).all()
    # and its encoder column points the same way
    encoder = torch.nn.functional.normalize(sae.W_enc[:, -DEAD:].detach().T, dim=1)
    torch.testing.assert_close(encoder, new_rows, atol=1e-5, rtol=0)
    # reading its own direction at least as strongly as a typical live latent (here encoder = decoder^T: 1.0)
    gain = (sae.W_enc[:, -DEAD:].detach().T * new_rows).sum(1)
    assert (gain >= 1.0 - 1e-5).all()


def test_a_reseeded_latent_takes_the_typical_live_gain_not_the_least_that_wins_a_slot():
    sae = sae_with_dead_latents()
    with torch.no_grad():
        sae.W_enc[:, : D_SAE - DEAD] *= 3.0  # live latents read their own direction with gain 3
    acts = torch.randn(3000, D_IN) * 2
    resample_dead_latents(sae, acts, seed=0)
    gain = (sae.W_enc[:, -DEAD:].detach().T * sae.W_dec[-DEAD:].detach()).sum(1)
    torch.testing.assert_close(gain, torch.full((DEAD,), 3.0), atol=1e-4, rtol=0)


def test_nothing_changes_when_no_latent_is_dead():
    sae = sae_with_dead_latents()
    with torch.no_grad():
        sae.W_enc[:, -DEAD:] = sae.W_dec[-DEAD:].T
        sae.b_enc[-DEAD:] = 0.0
    acts = torch.randn(3000, D_IN) * 2
    assert (firing_counts(sae, acts) > 0).all()
    before = [p.detach().clone() for p in sae.parameters()]
    report = resample_dead_latents(sae, acts, seed=0)
    assert (report.dead_before, report.resampled) == (0, 0)
    assert all(torch.equal(a, b) for a, b in zip(before, sae.parameters(), strict=True))


def test_collected_activations_are_the_hook_values_without_special_tokens(source):
    rows = source.model.to_tokens(["def add(a, b):\n    return a + b", "class Point:\n    pass"], padding_side="right")
    special = source.special_token_ids()
    acts = collect_activations(source.model, rows, source.hook_name, 10_000, special)
    with torch.no_grad():
        _, cache = source.model.run_with_cache(rows)
    keep = ~torch.isin(rows, torch.tensor(special))
    torch.testing.assert_close(acts, cache[source.hook_name][keep])
    assert len(collect_activations(source.model, rows, source.hook_name, 5, special)) == 5
