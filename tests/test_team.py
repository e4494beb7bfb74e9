"""Team store: labels, lists and notes round trip, concurrent writers lose nothing, exports parse back."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from backend.errors import NotFoundError, UserError
from backend.team import ItemEdit, TeamStore, team_path_for

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def team(tmp_path) -> TeamStore:
    return TeamStore.for_index(tmp_path / "demo.duckdb", d_sae=1000)


def test_team_file_sits_beside_the_index(tmp_path):
    assert team_path_for(tmp_path / "demo.duckdb") == tmp_path / "demo.team.sqlite"
    store = TeamStore.for_index(tmp_path / "demo.duckdb")
    assert store.path.exists() and not (tmp_path / "demo.duckdb").exists()


def test_labels_round_trip_and_clear(team):
    team.set_label(7, "  closing brackets  ", author="ana")
    team.set_label(9, '<script>alert(1)</script> "x" & y')
    labels = team.get_labels([7, 8, 9])
    assert set(labels) == {7, 9}
    assert labels[7].text == "closing brackets" and labels[7].author == "ana"
    assert labels[9].text == '<script>alert(1)</script> "x" & y'  # stored verbatim; escaping is the view's job
    team.set_label(7, "brackets v2")
    assert team.all_labels() == {7: "brackets v2", 9: '<script>alert(1)</script> "x" & y'}
    assert team.search_labels("BRACKETS") == [7]
    assert team.search_labels("%") == []  # LIKE wildcards are matched literally
    team.set_label(7, "")
    assert team.get_labels([7]) == {}


def test_bad_inputs_raise_user_errors(team):
    with pytest.raises(NotFoundError, match="Feature 1000 does not exist"):
        team.set_label(1000, "x")
    with pytest.raises(UserError, match="keep it to"):
        team.set_label(1, "x" * 500)
    with pytest.raises(UserError, match="needs a name"):
        team.create_list("   ")
    first = team.create_list("curly")
    with pytest.raises(UserError, match="already exists"):
        team.create_list("curly")
    with pytest.raises(NotFoundError, match="does not exist"):
        team.add_to_list(first.list_id + 99, 1)
    with pytest.raises(NotFoundError, match="is not in list"):
        team.edit_list(first.list_id, [ItemEdit(feature_id=5, note="n")])


def test_lists_with_notes_round_trip(team):
    brackets = team.create_list("brackets", "features about ( and )")
    other = team.create_list("another")
    team.add_to_list(brackets.list_id, 3, "fires on '('", author="ana")
    team.add_many_to_list(brackets.list_id, [5, 4, 5], note="from the map")
    team.add_to_list(other.list_id, 3)
    team.edit_list(brackets.list_id, [ItemEdit(feature_id=4, note="closing")])
    team.add_to_list(brackets.list_id, 3, "re-added: note replaced")

    items = {i.feature_id: i for i in team.list_items(brackets.list_id)}
    assert set(items) == {3, 4, 5}
    assert items[3].note == "re-added: note replaced" and items[4].note == "closing" and items[5].note == "from the map"
    assert [(t.name, t.item_count) for t in team.lists()] == [("another", 1), ("brackets", 3)]
    # with full item counts, not just the matching item
    assert [(t.name, t.item_count) for t in team.lists_containing(3)] == [("another", 1), ("brackets", 3)]
    assert team.lists_containing(99) == []

    team.edit_list(brackets.list_id, [ItemEdit(feature_id=5, remove=True)])
    assert {i.feature_id for i in team.list_items(brackets.list_id)} == {3, 4}
    team.delete_list(brackets.list_id)
    assert [t.name for t in team.lists()] == ["another"]
    with pytest.raises(NotFoundError):
        team.list_items(brackets.list_id)
    with pytest.raises(NotFoundError, match=f"List {brackets.list_id} does not exist"):
        team.delete_list(brackets.list_id)


def test_a_list_edit_lands_whole_or_not_at_all(team):
    chosen = team.create_list("edited")
    team.add_many_to_list(chosen.list_id, [1, 2, 3], note="old", author="ana")
    before = team.list_items(chosen.list_id)
    good = [ItemEdit(feature_id=1, remove=True), ItemEdit(feature_id=2, note="new")]
    # each bad row comes after a removal and a note that, saved row by row, would already have landed;
    # feature 9 fails inside the transaction, after the first two statements ran
    for bad, message in ((ItemEdit(feature_id=9, note="not in it"), "Feature 9 is not in list"),
                         (ItemEdit(feature_id=3, note="x" * 5000), "keep it to")):
        with pytest.raises(UserError, match=message):
            team.edit_list(chosen.list_id, [*good, bad], author="bo")
        assert team.list_items(chosen.list_id) == before
    with pytest.raises(NotFoundError, match="does not exist"):
        team.edit_list(chosen.list_id + 99, good)

    team.edit_list(chosen.list_id, good, author="bo")
    items = {i.feature_id: i for i in team.list_items(chosen.list_id)}
    assert set(items) == {2, 3}
    assert (items[2].note, items[2].note_by, items[3].note, items[3].note_by) == ("new", "bo", "old", "ana")


def test_exports_parse_back_with_labels(team):
    chosen = team.create_list("export me")
    team.add_to_list(chosen.list_id, 1, 'note with "quotes", commas\nand a newline')
    team.add_to_list(chosen.list_id, 2, "plain")
    team.set_label(2, "team label wins")
    auto = {1: "auto one", 2: "auto two"}

    rows = list(csv.DictReader(io.StringIO(team.export_csv(chosen.list_id, auto))))
    assert [(r["feature_id"], r["label"], r["note"]) for r in rows] == [
        ("1", "auto one", 'note with "quotes", commas\nand a newline'),
        ("2", "team label wins", "plain"),
    ]
    data = json.loads(team.export_json(chosen.list_id, auto))
    assert data["list"]["name"] == "export me" and data["list"]["item_count"] == 2
    assert [(i["feature_id"], i["label"]) for i in data["items"]] == [(1, "auto one"), (2, "team label wins")]


def test_twenty_threads_adding_to_one_list_lose_nothing(team):
    shared = team.create_list("shared")
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            mine = TeamStore(team.path, d_sae=1000)  # each session opens its own store
            for k in range(5):
                mine.add_to_list(shared.list_id, n * 5 + k, note=f"writer {n}")
            mine.set_label(n, f"label from {n}")
        except BaseException as exc:  # collected so the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(i.feature_id for i in team.list_items(shared.list_id)) == list(range(100))
    assert team.all_labels() == {n: f"label from {n}" for n in range(20)}


_PROCESS_WRITER = textwrap.dedent(
    """
    import sys, threading
    from backend.team import TeamStore
    path, list_id, proc = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    def write(thread):
        store = TeamStore(path)
        for k in range(10):
            store.add_to_list(list_id, proc * 1000 + thread * 10 + k, note=f"p{proc} t{thread}")
    threads = [threading.Thread(target=write, args=(t,)) for t in range(5)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    """
)


def test_writers_in_several_processes_lose_nothing(tmp_path):
    """4 processes x 5 threads = 20 concurrent writers, 200 entries in one list."""
    team = TeamStore.for_index(tmp_path / "demo.duckdb")
    shared = team.create_list("shared by processes")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _PROCESS_WRITER, str(team.path), str(shared.list_id), str(p)],
            cwd=ROOT,
            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in range(4)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    expected = sorted(p * 1000 + t * 10 + k for p in range(4) for t in range(5) for k in range(10))
    assert sorted(i.feature_id for i in team.list_items(shared.list_id)) == expected
