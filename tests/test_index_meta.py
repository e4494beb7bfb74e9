"""The typed meta table (backend/index/meta.py) against what a real build stores, and against the meta of the
first indexes this project wrote (commit 2a4bb75), which must still open."""

import json
import shutil
from dataclasses import fields

import duckdb
import pytest
from pydantic import ValidationError

from backend.errors import UserError
from backend.index.build import IndexConfig
from backend.index.meta import IndexMeta, RecordedConfig
from backend.store import IndexStore

FIRST_KEYS = {
    "source", "model", "hook", "d_model", "d_sae", "n_layers", "device", "dtype", "architecture", "vocab_size",
    "dataset", "tokens_requested", "tokens_processed", "tokens_counted", "rows", "context_size",
    "coactivation_tokens", "logits_through_final_ln", "build_seconds_stream", "build_seconds_finalize", "versions",
    "config", "excluded_token_ids", "built_at", "build_seconds_total", "schema_version",
}
FIRST_CONFIG_KEYS = {
    "tokens", "context_size", "batch_size", "top_k", "window_before", "window_after", "n_hist_bins", "n_intervals",
    "per_interval", "coact_rows_per_batch", "n_neighbours", "n_logits", "umap", "device", "dtype", "dataset", "seed",
    "progress",
}
STAGES = {"neighbours", "logits", "map", "windows", "steerability", "write"}


def _stored(path) -> dict:
    with duckdb.connect(str(path), read_only=True) as con:
        return {k: json.loads(v) for k, v in con.execute("SELECT key, value FROM meta").fetchall()}


def test_recorded_config_has_the_fields_of_index_config():
    assert list(RecordedConfig.model_fields) == [f.name for f in fields(IndexConfig)]


def test_required_fields_are_those_every_index_has():
    assert {n for n, f in IndexMeta.model_fields.items() if f.is_required()} == FIRST_KEYS
    assert {n for n, f in RecordedConfig.model_fields.items() if f.is_required()} == FIRST_CONFIG_KEYS


def test_a_build_stores_only_fields_and_reads_back_key_for_key(tiny_index):
    stored = _stored(tiny_index)
    assert set(stored) <= set(IndexMeta.model_fields)
    assert set(stored["config"]) == set(RecordedConfig.model_fields)
    meta = IndexMeta.from_stored(stored)
    assert meta.stored() == stored
    assert {k.removeprefix("build_seconds_") for k in stored if k.startswith("build_seconds_")} >= STAGES
    assert set(meta.build_peak_rss_mb) == STAGES
    assert meta.build_seconds_total >= meta.build_seconds_stream + meta.build_seconds_finalize > 0
    with duckdb.connect(str(tiny_index), read_only=True) as con:
        assert meta.d_sae == con.execute("SELECT count(*) FROM features").fetchone()[0] and meta.config.top_k == 5


def test_a_key_without_a_field_is_refused_when_writing(tiny_index):
    meta = IndexMeta.from_stored(_stored(tiny_index))
    with pytest.raises(ValidationError, match="build_seconds_new_stage"):
        meta.with_values(build_seconds_new_stage=1.0)
    assert meta.with_values(ray_shards=3).stored()["ray_shards"] == 3


def _edited_copy(tiny_index, tmp_path, drop: set[str], config: dict | None = None):
    path = tmp_path / "edited.duckdb"
    shutil.copyfile(tiny_index, path)
    with duckdb.connect(str(path)) as con:
        con.execute("DELETE FROM meta WHERE key IN (SELECT unnest(?::VARCHAR[]))", [sorted(drop)])
        if config is not None:
            con.execute("UPDATE meta SET value = ? WHERE key = 'config'", [json.dumps(config)])
        con.execute("INSERT INTO meta VALUES ('written_by_a_newer_version', '1')")
    return path


def test_an_index_with_the_first_versions_meta_opens(tiny_index, tmp_path):
    stored = _stored(tiny_index)
    first = {k: v for k, v in stored.items() if k in FIRST_KEYS}
    first["config"] = {k: v for k, v in stored["config"].items() if k in FIRST_CONFIG_KEYS}
    old = _edited_copy(tiny_index, tmp_path, set(stored) - FIRST_KEYS, first["config"])
    with IndexStore.open(old) as store, IndexStore.open(tiny_index) as new:
        assert store.meta.stored() == first
        assert store.meta.sae_weights_sha256 is None and store.meta.config.steerability is None
        assert store.info() == new.info().model_copy(update={"path": str(old), "sae_weights_sha256": None})
        assert store.feature_page(1) == new.feature_page(1)


def test_an_index_without_a_field_every_index_has_is_one_sentence(tiny_index, tmp_path):
    with pytest.raises(UserError, match="not a feature index this version can read"):
        IndexStore.open(_edited_copy(tiny_index, tmp_path, {"d_sae"}))
