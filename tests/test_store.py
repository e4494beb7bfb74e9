"""The query layer: payloads equal the stored rows, filters and sorts do what they say,
bad input is one clear sentence, and the CLI prints a feature as JSON."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import duckdb
import pytest

from backend.errors import NotFoundError, UserError
from backend.inference.protocols import IndexFeatureLookup
from backend.payloads import FeatureQuery
from backend.store import IndexStore


@pytest.fixture(scope="module")
def store(tiny_index):
    with IndexStore.open(tiny_index) as s:
        yield s


@pytest.fixture(scope="module")
def raw(tiny_index):
    con = duckdb.connect(str(tiny_index), read_only=True)
    yield con
    con.close()


def test_feature_page_matches_stored_rows(store, raw):
    for fid in range(store.d_sae):
        page = store.feature_page(fid)
        density, max_act, count, hist = raw.execute(
            "SELECT density, max_act, fire_count, hist_counts FROM features WHERE feature_id = ?", [fid]).fetchone()
        assert page.row.feature_id == fid
        assert page.row.density == pytest.approx(density)
        assert page.row.max_act == pytest.approx(max_act)
        assert page.fire_count == count
        assert sum(page.activation_hist.counts) == count
        assert sum(g.activations_in_interval for g in page.intervals) == count
        top_values = [v for (v,) in raw.execute(
            "SELECT value FROM examples WHERE feature_id = ? AND kind = 'top' ORDER BY rank", [fid]).fetchall()]
        assert [e.value for e in page.top_examples] == pytest.approx(top_values)
        for ex in page.top_examples:
            assert ex.tokens[ex.center].act == pytest.approx(ex.value)
        for group in page.intervals:
            assert all(group.lo < e.value <= group.hi * (1 + 1e-6) for e in group.examples)
        if not page.row.dead:
            assert page.intervals[0].hi >= page.row.max_act  # highest interval first
            assert page.activation_hist.hi >= page.row.max_act
        assert len(page.logit_pos) == len(page.logit_neg) == 10
        assert page.logit_pos[0].value >= page.logit_pos[-1].value
        assert all(n.feature_id != fid for n in page.cosine_neighbours)


def test_dead_feature_page_is_explicit(store):
    page = store.feature_page(store.d_sae - 1)
    assert page.row.dead and page.row.label == "dead"
    assert page.top_examples == [] and page.fire_count == 0


def test_list_filters_and_sorts(store):
    everything = store.list_features(FeatureQuery(hide_dead=False, limit=5000))
    assert everything.total == store.d_sae
    alive = store.list_features(FeatureQuery(limit=5000))
    assert alive.total == store.d_sae - 1 and all(not r.dead for r in alive.rows)
    by_density = store.list_features(FeatureQuery(sort="density", descending=True, limit=5000)).rows
    assert [r.density for r in by_density] == sorted((r.density for r in by_density), reverse=True)
    mid = sorted(r.density for r in alive.rows)[len(alive.rows) // 2]
    ranged = store.list_features(FeatureQuery(min_density=mid, limit=5000)).rows
    assert ranged and all(r.density >= mid for r in ranged)
    page2 = store.list_features(FeatureQuery(limit=10, offset=10)).rows
    assert [r.feature_id for r in page2] == [r.feature_id for r in alive.rows[10:20]]


def test_search_by_label_token_and_id(store):
    row = store.list_features(FeatureQuery(limit=1)).rows[0]
    token = row.top_token.strip() or row.label.split(" | ")[0]
    hits = store.search(token, limit=100)
    assert row.feature_id in [h.feature_id for h in hits]
    assert store.list_features(FeatureQuery(search=str(row.feature_id), limit=100)).rows[0].feature_id == row.feature_id
    assert store.search("no-such-token-anywhere") == []


def test_ids_matched_elsewhere_join_the_search_under_the_same_filters_and_order(store):
    alive = store.list_features(FeatureQuery(limit=5000)).rows
    dead_id = store.d_sae - 1
    extra = [alive[3].feature_id, alive[7].feature_id, dead_id]
    query = FeatureQuery(search="no-such-token-anywhere", sort="max_act", descending=True, limit=5000)
    table = store.list_features(query, also_matching=extra)
    expected = sorted((r for r in alive if r.feature_id in extra), key=lambda r: (-r.max_act, r.feature_id))
    assert table.total == 2 and [r.feature_id for r in table.rows] == [r.feature_id for r in expected]
    with_dead = store.list_features(query.model_copy(update={"hide_dead": False}), also_matching=extra)
    assert dead_id in [r.feature_id for r in with_dead.rows] and with_dead.total == 3
    assert store.list_features(FeatureQuery(limit=5000), also_matching=extra).total == len(alive)  # no search


def test_sort_field_is_validated():
    with pytest.raises(ValueError):
        FeatureQuery(sort="density; DROP TABLE features")


def test_map_points_cover_every_feature(store):
    pts = store.map_points()
    assert pts.feature_id.tolist() == list(range(store.d_sae)) and len(pts) == store.d_sae
    assert len(pts.x) == len(pts.y) == len(pts.cluster) == len(pts.label) == len(pts.dead) == store.d_sae
    for f in (0, 7, store.d_sae - 1):  # the columns line up with the feature rows
        row = store.feature_rows([f])[f]
        assert (pts.label[f], bool(pts.dead[f]), int(pts.cluster[f])) == (row.label, row.dead, row.cluster)
        assert pts.density[f] == pytest.approx(row.density)


def test_index_feature_lookup_for_inference(store):
    assert isinstance(store, IndexFeatureLookup)
    page = store.feature_page(3)
    assert store.max_activation([3]) == {3: pytest.approx(page.row.max_act)}
    assert store.density([3]) == {3: pytest.approx(page.row.density)}


@pytest.mark.parametrize("bad", [-1, 10**6])
def test_unknown_feature_is_one_sentence(store, bad):
    with pytest.raises(NotFoundError, match=r"^Feature .* does not exist; this index has features 0 to \d+\.$"):
        store.feature_page(bad)


def test_missing_or_foreign_file(tmp_path):
    with pytest.raises(NotFoundError, match="No index at"):
        IndexStore.open(tmp_path / "nope.duckdb")
    junk = tmp_path / "junk.duckdb"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(UserError, match="is not a feature index"):
        IndexStore.open(junk)


def test_concurrent_readers_get_consistent_pages(store):
    expected = {f: store.feature_page(f).model_dump() for f in range(8)}
    errors: list[str] = []

    def read(fid: int) -> None:
        for _ in range(5):
            if store.feature_page(fid).model_dump() != expected[fid]:
                errors.append(f"feature {fid} differed")

    threads = [threading.Thread(target=read, args=(f % 8,)) for f in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_cli_prints_feature_json(tiny_index):
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-m", "backend", "feature", "--index", str(tiny_index), "--id", "2",
                          "--json"], capture_output=True, text=True, cwd=root, timeout=120)
    assert out.returncode == 0, out.stderr
    payload = json.loads(out.stdout)
    assert payload["row"]["feature_id"] == 2 and "top_examples" in payload
    bad = subprocess.run([sys.executable, "-m", "backend", "feature", "--index", str(tiny_index), "--id", "99999"],
                         capture_output=True, text=True, cwd=root, timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith("error: Feature 99999 does not exist")
    assert "Traceback" not in bad.stderr


def test_stores_left_open_are_closed_at_exit_without_leaked_duckdb_objects(tiny_index):
    """A store used from several threads and never closed (as the app's cache leaves it) is closed at exit:
    nothing of DuckDB is left for nanobind to report as leaked."""
    script = (
        "import threading\n"
        "from concurrent.futures import ThreadPoolExecutor\n"
        "from backend.store import IndexStore, _OPEN_STORES\n"
        f"store = IndexStore.open({str(tiny_index)!r})\n"
        "with ThreadPoolExecutor(3) as pool:\n"
        "    list(pool.map(lambda i: store.feature_page(i), range(6)))\n"
        "store.info()\n"
        "assert len(store._cursors) >= 2 and store in _OPEN_STORES\n"
        "other = IndexStore.open(store.path)\n"
        "other.close(); other.close()  # twice is harmless\n"
        "assert other not in _OPEN_STORES and not other._cursors\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[1],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "nanobind" not in done.stderr and "leaked" not in done.stderr, done.stderr
