"""Team data is never lost: one JSON file round-trips every label, list, note and concept (also through the
CLI; concepts merge by name and hook, newer created_at wins, widths are checked, version 2 files still import); a
rebuild of the index keeps the team file beside it; labels written against other SAE weights are kept and
flagged "possibly stale"; a writer SIGKILLed mid-write loses no committed change and leaves a readable file."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from backend.__main__ import main
from backend.concepts_store import ConceptStore, SavedConcept
from backend.errors import UserError
from backend.store import IndexStore
from backend.team import ItemEdit, TeamStore, team_path_for
from backend.team_transfer import export_team, import_team, parse_dump

ROOT = Path(__file__).resolve().parents[1]


def filled(path: Path, sha: str = "w1") -> TeamStore:
    team = TeamStore(path, d_sae=64, sae_sha256=sha)
    team.set_label(3, "digits", author="ada")
    team.set_label(7, 'quotes "<b>"', author="grace")
    a = team.create_list("syntax", "punctuation features", author="ada")
    team.add_many_to_list(a.list_id, [7, 3], "a note", author="ada")
    team.edit_list(a.list_id, [ItemEdit(feature_id=3, note="edited later")], author="grace")
    team.create_list("empty one", author="grace")
    return team


def comparable(team: TeamStore) -> dict:
    return export_team(team).model_dump(exclude={"exported_at"})


def test_export_import_round_trip_keeps_everything_and_twice_changes_nothing(tmp_path):
    source = filled(tmp_path / "a.team.sqlite")
    dump = parse_dump(export_team(source).model_dump_json())
    target = TeamStore(tmp_path / "b.team.sqlite", d_sae=64, sae_sha256="w1")
    summary = import_team(target, dump)
    assert (summary.labels_written, summary.lists_created, summary.items_written) == (2, 2, 2)
    assert comparable(target) == comparable(source)
    items = {i.feature_id: i for i in target.list_items(target.lists()[1].list_id)}
    assert (items[3].note, items[3].note_by, items[3].added_by) == ("edited later", "grace", "ada")
    again = import_team(target, dump)
    assert (again.labels_written, again.lists_created, again.items_written) == (0, 0, 0)
    assert comparable(target) == comparable(source)


def test_import_keeps_newer_local_labels_and_refuses_foreign_or_broken_files(tmp_path):
    source = filled(tmp_path / "a.team.sqlite")
    dump = export_team(source)
    target = TeamStore(tmp_path / "b.team.sqlite", d_sae=64)
    import_team(target, dump)
    time.sleep(1.1)  # timestamps have whole seconds
    target.set_label(3, "newer here", author="lin")
    import_team(target, dump)
    assert target.get_labels([3])[3].text == "newer here"

    small = TeamStore(tmp_path / "c.team.sqlite", d_sae=5)
    with pytest.raises(UserError, match="feature 7, but this SAE has features 0 to 4"):
        import_team(small, dump)
    assert small.all_labels() == {} and small.lists() == []  # all or nothing
    for text in ["{", '{"format": "other"}', "[1, 2]"]:
        with pytest.raises(UserError, match="^This is not a team data file of this explorer"):
            parse_dump(text)


def concept(name: str, created_at: str, width: int = 4, scale: float = 1.0) -> SavedConcept:
    return SavedConcept(name=name, method="caa", hook_name="blocks.0.hook_resid_post", layer=0,
                        with_concept=[f"{name} yes"], without_concept=[f"{name} no"],
                        vector=[scale * (i + 1) for i in range(width)], author="ada", created_at=created_at)


def test_concepts_travel_in_the_export_and_merge_by_name_and_hook_newer_wins(tmp_path):
    source = filled(tmp_path / "a.team.sqlite")
    store = ConceptStore(source.path, d_in=4)
    for c in [concept("formal", "2026-01-02T00:00:00+00:00"), concept("angry", "2026-01-01T00:00:00+00:00"),
              concept("old", "2026-01-01T00:00:00+00:00")]:
        store.save(c)
    dump = parse_dump(export_team(source).model_dump_json())
    assert dump.version == 3 and [c.name for c in dump.concepts] == ["formal", "angry", "old"]

    target = TeamStore(tmp_path / "b.team.sqlite", d_sae=64)
    here = ConceptStore(target.path, d_in=4)
    here.save(concept("formal", "2026-01-03T00:00:00+00:00", scale=-1.0))  # newer here: kept
    here.save(concept("old", "2025-12-31T00:00:00+00:00", scale=-1.0))  # older here: replaced
    summary = import_team(target, dump, d_in=4)
    assert summary.concepts_written == 2
    by_name = {c.name: c for c in here.export_concepts().concepts}
    assert by_name["formal"].vector == [-1.0, -2.0, -3.0, -4.0]
    assert by_name["old"].vector == [1.0, 2.0, 3.0, 4.0] and by_name["old"].created_at.startswith("2026-01-01")
    assert by_name["angry"].with_concept == ["angry yes"] and by_name["angry"].without_concept == ["angry no"]
    assert import_team(target, dump, d_in=4).concepts_written == 0  # twice changes nothing


def test_concepts_of_another_width_are_refused_whole_and_version_2_files_still_import(tmp_path):
    source = filled(tmp_path / "a.team.sqlite")
    ConceptStore(source.path).save(concept("wide", "2026-01-01T00:00:00+00:00", width=8))
    dump = export_team(source)
    target = TeamStore(tmp_path / "b.team.sqlite", d_sae=64)
    with pytest.raises(UserError, match="'wide' has 8 values but this index's hook is 4 wide"):
        import_team(target, dump, d_in=4)
    assert target.all_labels() == {} and ConceptStore(target.path).export_concepts().concepts == []  # nothing

    old = json.loads(dump.model_dump_json())
    old["version"] = 2
    del old["concepts"]  # what version 2 wrote
    summary = import_team(target, parse_dump(json.dumps(old)), d_in=4)
    assert (summary.labels_written, summary.items_written, summary.concepts_written) == (2, 2, 0)
    newer = dict(old, version=4)
    with pytest.raises(UserError, match="newer version"):
        import_team(target, parse_dump(json.dumps(newer)))


def test_cli_exports_and_imports_between_two_copies_of_an_index(tiny_index, tmp_path, capsys):
    a, b = tmp_path / "a.duckdb", tmp_path / "b.duckdb"
    shutil.copy(tiny_index, a)
    shutil.copy(tiny_index, b)
    filled(team_path_for(a))
    with IndexStore.open(a) as index:
        width = index.info().d_model
    ConceptStore.for_index(a).save(concept("formal", "2026-01-01T00:00:00+00:00", width=width))
    out = tmp_path / "team.json"
    assert main(["team", "export", "--index", str(a), "--file", str(out)]) == 0
    assert json.loads(out.read_text())["format"] == "sae-explorer-team"
    assert main(["team", "import", "--index", str(b), "--file", str(out)]) == 0
    assert "2 labels, 2 new lists, 2 list entries, 1 concepts" in capsys.readouterr().out
    assert comparable(TeamStore.for_index(b)) == comparable(TeamStore.for_index(a))
    assert main(["team", "import", "--index", str(b), "--file", str(tmp_path / "missing.json")]) == 2


def test_a_rebuild_keeps_team_data_and_new_weights_flag_labels_possibly_stale(tiny_dirs, tiny_dataset, tmp_path):
    from backend.index.build import IndexConfig, build_index
    from backend.sources import SourceSpec
    from tests.conftest import TINY_INDEX_CONFIG

    index = tmp_path / "rebuilt.duckdb"
    spec = SourceSpec.parse(tiny_dirs.spec)
    build_index(spec, IndexConfig(**TINY_INDEX_CONFIG, dataset=str(tiny_dataset)), index)
    with IndexStore.open(index) as store:
        sha = store.info().sae_weights_sha256
    assert sha
    before = comparable(filled(team_path_for(index), sha=sha))
    build_index(spec, IndexConfig(**TINY_INDEX_CONFIG, dataset=str(tiny_dataset)), index)  # the same path again
    with IndexStore.open(index) as store:
        assert store.info().sae_weights_sha256 == sha
    after = TeamStore.for_index(index, d_sae=64, sae_sha256=sha)
    assert comparable(after) == before
    assert not after.get_labels([3])[3].possibly_stale(sha)

    # the index rebuilt from other SAE weights: the labels stay, flagged on their features
    with duckdb.connect(str(index)) as con:
        con.execute("UPDATE meta SET value = ? WHERE key = 'sae_weights_sha256'", [json.dumps("f" * 64)])
    with IndexStore.open(index) as store:
        new_sha = store.info().sae_weights_sha256
    labels = TeamStore.for_index(index, sae_sha256=new_sha).get_labels([3, 7])
    assert [labels[i].text for i in (3, 7)] == ["digits", 'quotes "<b>"']
    assert all(label.possibly_stale(new_sha) for label in labels.values())
    from backend.catalog import LabelDetail
    from backend.labels import shown_label
    from ui.feature_view import title_html

    detail = LabelDetail(shown_label("auto", labels[3], None), labels[3], [])
    assert "possibly stale" in title_html(3, detail, False, sae_sha256=new_sha)
    assert "possibly stale" not in title_html(3, detail, False, sae_sha256=sha)


WRITER = """
import sys
from backend.team import TeamStore
team = TeamStore(sys.argv[1])
target = team.create_list("bulk").list_id
i = 0
while True:
    team.set_label(i, f"label {i}", author="writer")
    team.add_many_to_list(target, list(range(i * 200, (i + 1) * 200)), f"batch {i}", author="writer")
    print(i, flush=True)  # both transactions of step i are committed
    i += 1
"""


@pytest.mark.parametrize("kill_after", [5, 23])
def test_a_writer_killed_mid_write_loses_nothing_committed(tmp_path, kill_after):
    path = tmp_path / "killed.team.sqlite"
    TeamStore(path)  # schema in place before the writer starts
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    committed = []
    while len(committed) < kill_after:
        committed.append(int(proc.stdout.readline()))
    time.sleep(0.013 * kill_after % 0.05)  # land somewhere inside a later transaction
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    team = TeamStore(path)
    labels = team.all_labels()
    assert all(labels[i] == f"label {i}" for i in committed)
    (bulk,) = team.lists()
    notes = {}
    for item in team.list_items(bulk.list_id):
        notes.setdefault(item.note, []).append(item.feature_id)
    for note, ids in notes.items():  # every batch whole or absent: no half-written transaction survived
        step = int(note.split()[1])
        assert sorted(ids) == list(range(step * 200, (step + 1) * 200))
    assert {f"batch {i}" for i in committed} <= set(notes)
    team.set_label(10_000, "still writable")  # the file takes new writes after the crash
    assert team.all_labels()[10_000] == "still writable"
