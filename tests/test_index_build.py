"""The streaming index against brute force over the full activation matrix of a tiny source."""

from __future__ import annotations

import json

import duckdb
import numpy as np
import pytest
import torch

from backend.index.build import IndexConfig, build_index, encode_batch
from backend.index.datasets import dataset_texts, token_rows
from backend.index.meta import IndexMeta
from backend.sources import SourceSpec, load_source
from backend.store import dense_window
from tests.conftest import TINY_INDEX_CONFIG

CFG = IndexConfig(**TINY_INDEX_CONFIG)


@pytest.fixture(scope="module")
def brute(tiny_dirs, tiny_dataset, tiny_index):
    """Every row the builder saw, its activations, and which tokens count."""
    source = load_source(tiny_dirs.spec)
    ctx = source.context_size
    rows = list(token_rows(dataset_texts(str(tiny_dataset)), source.tokenizer, ctx, source.prepend_bos,
                           CFG.batch_size, CFG.tokens))
    global_row = torch.arange(sum(len(r) for r in rows))
    tokens = torch.cat(rows)
    acts = torch.cat([encode_batch(source, r).float() for r in rows])
    keep = ~torch.isin(tokens, torch.tensor(source.special_token_ids()))
    acts = acts * keep.unsqueeze(-1)
    con = duckdb.connect(str(tiny_index), read_only=True)
    yield {"source": source, "tokens": tokens, "acts": acts, "keep": keep, "con": con, "global_row": global_row}
    con.close()


def feature_frame(con, cols: str):
    return con.execute(f"SELECT {cols} FROM features ORDER BY feature_id").fetchall()


def test_density_max_mean_and_dead(brute):
    acts, keep = brute["acts"], brute["keep"]
    n_tok = int(keep.sum())
    fires = (acts > 0).sum(dim=(0, 1))
    rows = feature_frame(brute["con"], "fire_count, density, max_act, mean_act, dead")
    fire_count = np.array([r[0] for r in rows])
    assert (fire_count == fires.numpy()).all()
    np.testing.assert_allclose([r[1] for r in rows], (fires.double() / n_tok).numpy(), rtol=1e-9)
    np.testing.assert_allclose([r[2] for r in rows], acts.amax(dim=(0, 1)).numpy(), rtol=1e-6)
    sums = acts.sum(dim=(0, 1)).double()
    mean = torch.where(fires > 0, sums / fires.clamp_min(1), torch.zeros_like(sums))
    np.testing.assert_allclose([r[3] for r in rows], mean.numpy(), rtol=1e-4)
    dead = [r[4] for r in rows]
    assert dead[-1] is True, "the tiny SAE's last feature can never fire and must be recorded, flagged dead"
    assert dead == (fires == 0).tolist()


def test_histograms_match_brute_force(brute):
    acts = brute["acts"]
    rows = feature_frame(brute["con"], "hist_bound, hist_counts, max_act, dead")
    n_bins = CFG.n_hist_bins
    for f, (bound, counts, max_act, dead) in enumerate(rows):
        if dead:
            assert counts == []
            continue
        assert max_act <= bound < 2 * max_act + 1e-6
        values = acts[..., f][acts[..., f] > 0]
        bins = (torch.ceil(values / torch.tensor(bound, dtype=torch.float32) * n_bins).long() - 1).clamp(0, n_bins - 1)
        expected = torch.bincount(bins, minlength=n_bins)
        assert counts == expected[: len(counts)].tolist()
        assert expected[len(counts):].sum() == 0
        assert 1 <= len(counts) <= n_bins


def eligible_peaks(values: torch.Tensor, span: int) -> list[tuple[float, int, int]]:
    """All (value, row, pos) that are peaks of their own window neighbourhood (the builder's rule)."""
    out = []
    n_rows, n_ctx = values.shape
    for r in range(n_rows):
        for t in range(n_ctx):
            v = values[r, t].item()
            if v <= 0:
                continue
            left = values[r, max(0, t - span): t]
            right = values[r, t + 1: t + 1 + span]
            if (left >= v).any() or (right > v).any():
                continue
            out.append((v, r, t))
    return out


def decoded(rows: list[tuple]) -> list[tuple]:
    """Example rows ending (token_ids, act_index, act_values) -> ending (token_ids, dense window activations)."""
    return [(*r[:-2], dense_window(len(r[-3]), r[-2], r[-1])) for r in rows]


def test_top_examples_match_brute_force(brute):
    con, acts, tokens = brute["con"], brute["acts"], brute["tokens"]
    span = CFG.window_before + CFG.window_after
    special = set(brute["source"].special_token_ids())
    for f in range(acts.shape[-1]):
        peaks = eligible_peaks(acts[..., f], span)
        expected = sorted(peaks, reverse=True)[: CFG.top_k]
        got = decoded(con.execute("SELECT value, row_id, pos, center, token_ids, act_index, act_values FROM examples "
                                  "WHERE feature_id = ? AND kind = 'top' ORDER BY rank", [f]).fetchall())
        # the repeated corpus has exact ties, so compare values, then check every pick is an eligible peak
        np.testing.assert_allclose([g[0] for g in got], [e[0] for e in expected], rtol=1e-6)
        eligible = {(r, p): v for v, r, p in peaks}
        for value, row, pos, *_ in got:
            assert eligible.get((row, pos)) == pytest.approx(value)
        for value, row, pos, center, window_ids, window_acts in got:
            assert window_ids[center] == tokens[row, pos].item()
            assert window_ids[center] not in special
            start = pos - center
            assert window_ids == tokens[row, start: start + len(window_ids)].tolist()
            np.testing.assert_allclose(window_acts, acts[row, start: start + len(window_ids), f].numpy(), rtol=1e-5)
            assert window_acts[center] == pytest.approx(value)
        # windows of one feature never overlap
        spans = sorted((r, p - c, p - c + len(w)) for _, r, p, c, w, _ in got)
        for (r1, _, e1), (r2, s2, _) in zip(spans, spans[1:], strict=False):
            assert r1 != r2 or s2 >= e1


def test_interval_samples_are_members_and_fill_their_interval(brute):
    con, acts, tokens = brute["con"], brute["acts"], brute["tokens"]
    rows = feature_frame(brute["con"], "hist_bound, dead")
    for f, (bound, dead) in enumerate(rows):
        got = decoded(con.execute("SELECT interval_idx, value, row_id, pos, center, token_ids, act_index, act_values "
                                  "FROM examples WHERE feature_id = ? AND kind = 'interval'", [f]).fetchall())
        if dead:
            assert got == []
            continue
        values = acts[..., f][acts[..., f] > 0]
        width = bound / CFG.n_intervals
        for j in range(CFG.n_intervals):
            members = [g for g in got if g[0] == j]
            in_interval = int(((values > j * width) & (values <= (j + 1) * width)).sum())
            assert len(members) == min(CFG.per_interval, in_interval)
            for _, value, row, pos, center, window_ids, window_acts in members:
                start = pos - center
                np.testing.assert_allclose(window_acts, acts[row, start: start + len(window_ids), f].numpy(), rtol=1e-5)
                assert value > 0
                assert j * width < value <= (j + 1) * width * (1 + 1e-6)
                assert acts[row, pos, f].item() == pytest.approx(value)
                assert window_ids[center] == tokens[row, pos].item()


def test_logit_tables_match_brute_force(brute):
    source = brute["source"]
    model, w_dec = source.model, source.sae.W_dec.detach()
    d = w_dec - w_dec.mean(dim=1, keepdim=True)
    logits = (d * model.ln_final.w.detach()) @ model.W_U.detach()
    rows = feature_frame(brute["con"], "logit_pos_ids, logit_pos_values, logit_neg_ids, logit_neg_values, "
                                       "logit_hist_counts, logit_hist_lo, logit_hist_hi")
    for f, (pos_ids, pos_vals, neg_ids, neg_vals, hist, lo, hi) in enumerate(rows):
        top = logits[f].topk(CFG.n_logits)
        bottom = logits[f].topk(CFG.n_logits, largest=False)
        assert pos_ids == top.indices.tolist()
        np.testing.assert_allclose(pos_vals, top.values.numpy(), rtol=1e-4, atol=1e-5)
        assert neg_ids == bottom.indices.tolist()
        np.testing.assert_allclose(neg_vals, bottom.values.numpy(), rtol=1e-4, atol=1e-5)
        assert sum(hist) == logits.shape[1]
        assert lo == pytest.approx(logits[f].min().item(), rel=1e-4, abs=1e-5)
        assert hi == pytest.approx(logits[f].max().item(), rel=1e-4, abs=1e-5)


def test_decoder_cosine_neighbours_match_brute_force(brute):
    w = torch.nn.functional.normalize(brute["source"].sae.W_dec.detach(), dim=1)
    sims = w @ w.T
    sims.fill_diagonal_(float("-inf"))
    rows = feature_frame(brute["con"], "cos_ids, cos_values")
    for f, (ids, values) in enumerate(rows):
        top = sims[f].topk(CFG.n_neighbours)
        assert ids == top.indices.tolist()
        np.testing.assert_allclose(values, top.values.numpy(), rtol=1e-5, atol=1e-6)


def test_coactivation_neighbours_match_brute_force(brute):
    sampled = brute["global_row"] % CFG.batch_size < CFG.coact_rows_per_batch
    fires = (brute["acts"][sampled] > 0).reshape(-1, brute["acts"].shape[-1]).double()
    both = fires.T @ fires
    n = fires.sum(0)
    jaccard = both / (n[:, None] + n[None, :] - both).clamp_min(1)
    jaccard.fill_diagonal_(0)
    rows = feature_frame(brute["con"], "coact_ids, coact_values")
    for f, (ids, values) in enumerate(rows):
        expected = sorted((v for v in jaccard[f].tolist() if v > 0), reverse=True)[: CFG.n_neighbours]
        np.testing.assert_allclose(values, expected, rtol=1e-5)
        for i, v in zip(ids, values, strict=True):
            assert jaccard[f, i].item() == pytest.approx(v, rel=1e-5)


def test_meta_records_the_build(brute, tiny_index):
    meta = IndexMeta.from_stored({k: json.loads(v) for k, v in brute["con"].execute("SELECT key, value FROM meta")
                                  .fetchall()})
    assert meta.tokens_processed == brute["tokens"].numel()
    assert meta.tokens_counted == int(brute["keep"].sum())
    assert meta.hook == brute["source"].hook_name
    assert meta.schema_version == 1
    assert {"python", "torch", "sae_lens", "transformer_lens", "duckdb"} <= set(meta.versions)
    xy = brute["con"].execute("SELECT umap_x, umap_y, cluster FROM features").fetchall()
    assert len({(round(x, 4), round(y, 4)) for x, y, _ in xy}) > len(xy) // 2, "UMAP must spread features out"


def test_short_dataset_finishes_with_true_token_count(tiny_dirs, tiny_dataset, tmp_path):
    cfg = IndexConfig(**{**TINY_INDEX_CONFIG, "tokens": 10_000_000, "umap": False}, dataset=str(tiny_dataset))
    out = build_index(SourceSpec.parse(tiny_dirs.spec), cfg, tmp_path / "short.duckdb")
    con = duckdb.connect(str(out), read_only=True)
    meta = IndexMeta.from_stored({k: json.loads(v) for k, v in con.execute("SELECT key, value FROM meta").fetchall()})
    assert 0 < meta.tokens_processed < 10_000_000
    assert meta.tokens_processed == meta.rows * meta.context_size


def test_failed_build_leaves_previous_index_untouched(tiny_dirs, tiny_dataset, tmp_path):
    from backend.errors import UserError

    out = tmp_path / "idx.duckdb"
    cfg = IndexConfig(**{**TINY_INDEX_CONFIG, "tokens": 2_000, "umap": False}, dataset=str(tiny_dataset))
    build_index(SourceSpec.parse(tiny_dirs.spec), cfg, out)
    before = out.read_bytes()
    bad = tmp_path / "bad.jsonl"
    # a long valid first document (several batches stream through) and then a broken line
    bad.write_text(json.dumps({"text": "def f(x):\n    return x\n" * 300}) + "\nnot json\n")
    with pytest.raises(UserError, match="Line 2"):
        build_index(SourceSpec.parse(tiny_dirs.spec), IndexConfig(**{**TINY_INDEX_CONFIG, "umap": False},
                                                                  dataset=str(bad)), out)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl", "idx.duckdb"]


def test_windows_read_from_the_activation_log_equal_encoding_again(tiny_dirs, tiny_dataset, tiny_index, tmp_path):
    """The default build reads example windows from its logged activations; without the log (budget 0, or
    over budget) it encodes the batches again: the examples table is the same row for row."""
    examples = "SELECT * FROM examples ORDER BY feature_id, kind, interval_idx, rank"
    tables = {}
    for name, gb in (("encoded", 0.0), ("over_budget", 1e-6)):
        cfg = IndexConfig(**{**TINY_INDEX_CONFIG, "umap": False, "steerability": False, "activation_log_gb": gb},
                          dataset=str(tiny_dataset))
        with duckdb.connect(str(build_index(SourceSpec.parse(tiny_dirs.spec), cfg, tmp_path / f"{name}.duckdb")),
                            read_only=True) as con:
            tables[name] = con.execute(examples).fetchall()
            assert json.loads(con.execute("SELECT value FROM meta WHERE key = 'windows_read_from'").fetchone()[0]) \
                == "encoding again"
    with duckdb.connect(str(tiny_index), read_only=True) as con:
        logged = con.execute(examples).fetchall()
        assert json.loads(con.execute("SELECT value FROM meta WHERE key = 'windows_read_from'").fetchone()[0]) \
            == "activation log"
    assert len(logged) > 100 and logged == tables["encoded"] == tables["over_budget"]
