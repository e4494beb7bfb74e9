"""Every page under Streamlit's AppTest, on the real tiny index and the real tiny model: it renders, the URL
restores its state, bad URLs give a sentence instead of a traceback, hostile text is escaped, and the
feature page is fast."""

from __future__ import annotations

import hashlib
import json
import shutil
import statistics
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import duckdb
import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from backend.offered import NOT_OFFERED
from backend.payloads import FeatureQuery
from backend.store import IndexStore
from backend.team import TeamStore

ROOT = Path(__file__).resolve().parents[1]
PAGES = ROOT / "pages"
APP = ROOT / "app.py"  # AppTest starts where `streamlit run` does
HOSTILE = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
HOSTILE_PROMPT = '<script>"><img onerror=x>'  # short enough for the tiny model's 32-token context
RAW_TAGS = ("<script", "<img")


@pytest.fixture()
def index(tiny_index, tmp_path, monkeypatch) -> Path:
    """A private copy of the tiny index, so each test starts with an empty team store beside it."""
    copy = tmp_path / "tiny.duckdb"
    shutil.copy(tiny_index, copy)
    monkeypatch.setenv("SAE_EXPLORER_INDEX", str(copy))
    return copy


@pytest.fixture()
def open_page(index):
    """open_page("feature", id=3): a fresh session on that page of the app, with those URL parameters."""

    def open_(page: str, **params: object) -> AppTest:
        at = AppTest.from_file(str(APP), default_timeout=180)
        at.run()  # the first run registers the pages, so switch_page can find them
        at.switch_page(str(PAGES / f"{page}.py"))
        for key, value in params.items():
            at.query_params[key] = str(value)
        return at.run()

    return open_


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def rendered(at: AppTest) -> str:
    """Every piece of text a page hands the browser as Markdown or HTML."""
    parts = [e.value for kind in ("markdown", "caption", "html", "page_link", "error", "warning", "info", "subheader")
             for e in at.get(kind)]
    return "\n".join(str(p) for p in parts)


def share_link(at: AppTest) -> dict[str, list[str]]:
    """The query of the URL in the page's "copy link" box."""
    (code,) = [c.value for c in at.get("code") if c.value.startswith("http")]
    return parse_qs(urlsplit(code).query)


def widget(elements, label: str):
    return next(e for e in elements if e.label == label)


# ---- Streamlit's pages/ folder -----------------------------------------------------------------------------

PAGES_APP = """import streamlit as st
st.session_state["entrypoint_ran"] = True
st.navigation([st.Page("home.py", default=True), st.Page("FOLDER/other.py", url_path="other")]).run()
"""
OTHER_PAGE = """import streamlit as st
st.markdown("through the entrypoint" if st.session_state.pop("entrypoint_ran", False) else "on its own")
"""


@pytest.mark.parametrize(("folder", "expected"), [("pages", "on its own"), ("views", "through the entrypoint")])
def test_streamlit_runs_a_page_in_a_pages_folder_without_the_entrypoint(tmp_path, folder, expected):
    """Pins the Streamlit behaviour that ui/frame._run_through_entrypoint works around: until st.navigation has
    run in the process (AppTest: in the run), a page file in a folder named pages/ beside the entrypoint is run
    on its own. When the `pages` case fails after a Streamlit upgrade, the work-around can go."""
    (tmp_path / folder).mkdir()
    (tmp_path / "app.py").write_text(PAGES_APP.replace("FOLDER", folder))
    (tmp_path / "home.py").write_text("import streamlit as st\nst.session_state.pop('entrypoint_ran', None)\n")
    (tmp_path / folder / "other.py").write_text(OTHER_PAGE)
    at = AppTest.from_file(str(tmp_path / "app.py"))
    at.run()
    at.switch_page(f"{folder}/other.py")
    at.run()
    assert not at.exception
    assert [m.value for m in at.markdown] == [expected]


def test_a_page_run_on_its_own_is_drawn_once_inside_the_frame(index, open_page):
    """Every AppTest run starts in that legacy mode, so every page test here goes through the work-around;
    this one checks it draws the page once (the bare run stops before drawing anything) with the frame's
    sidebar. tests/e2e/test_browser.py checks the same on a fresh server, with the browser's title."""
    at = open_page("lists")
    assert_clean(at)
    assert [s.value for s in at.get("subheader")] == ["Lists"]
    assert [m.value for m in at.sidebar.markdown].count("### :material/biotech: SAE feature explorer") == 1


# ---- every page renders ---------------------------------------------------------------------------------

def test_features_page_lists_live_features_and_restores_filters(index, open_page):
    at = open_page("features", q="", sort="max_act", desc="1", dmin="0.01")
    assert_clean(at)
    frame = at.dataframe[0].value
    store = IndexStore.open(index)
    live = [r for r in store.list_features(FeatureQuery(limit=5000)).rows if r.density >= 0.01]
    assert len(frame) == len(live) > 0
    assert list(frame["max act"]) == sorted(frame["max act"], reverse=True)
    assert at.selectbox(key="features.sort").value == "max_act" and at.toggle(key="features.desc").value is True
    assert at.number_input(key="features.dmin").value == pytest.approx(0.01)
    assert share_link(at)["sort"] == ["max_act"]

    at.text_input(key="features.q").input(str(live[0].feature_id)).run()  # typing writes the URL
    assert at.query_params["q"] == str(live[0].feature_id)
    assert live[0].feature_id in list(at.dataframe[0].value["id"])


def test_feature_page_shows_every_panel(index, open_page):
    store = IndexStore.open(index)
    fid = store.random_feature_id(seed=1)
    page = store.feature_page(fid)
    at = open_page("feature", id=fid)
    assert_clean(at)
    html = rendered(at)
    assert f'<span class="fid">#{fid}</span>' in html
    # the tiny index is built with steerability, so its three scores follow the statistics
    assert page.row.output_score is not None
    assert [m.label for m in at.metric] == ["Density", "Max activation", "Mean activation", "Fires on", "Cluster",
                                            "Output score", "Input score", "Calibrated strength"]
    assert html.count('class="ex-row"') >= len(page.top_examples)
    assert f"{page.intervals[0].activations_in_interval:,} activations in this range" in html
    assert "through the final layer norm" in html
    assert not at.get("plotly_chart") and html.count('<div class="hist" ') == 2  # no Plotly bundle to load
    assert html.count('<div class="bar" ') == len(page.activation_hist.counts) + len(page.logit_hist.counts)
    peak = max(page.activation_hist.counts)
    assert 'height:100.00%;background:#ff7f0e" title="' in html and f": {peak:,} tokens" in html
    assert any(f"#{page.cosine_neighbours[0].feature_id}" in link.value for link in at.get("page_link"))
    assert share_link(at)["id"] == [str(fid)]


def test_feature_page_try_it_runs_the_model_on_the_text(index, open_page):
    at = open_page("feature", id=3, text="def add(a, b):\n    return a + b")
    assert_clean(at)
    assert at.text_area(key="feature.text").value == "def add(a, b):\n    return a + b"
    strip = next(h.value for h in at.get("html") if 'class="strip wrap"' in h.value)
    assert strip.count('class="tok') >= 10 and "Fires on" in rendered(at)


def test_features_page_finds_features_by_team_label_sorted_with_the_rest(index, open_page):
    store = IndexStore.open(index)
    by_max = store.list_features(FeatureQuery(sort="max_act", descending=True, limit=5000)).rows
    low, high = by_max[-1].feature_id, by_max[0].feature_id
    team = TeamStore.for_index(index)
    team.set_label(low, "zebra crossing (weak)")
    team.set_label(high, "zebra crossing (strong)")
    at = open_page("features", q="zebra", sort="max_act", desc="1")
    assert_clean(at)
    frame = at.dataframe[0].value
    assert list(frame["id"]) == [high, low]  # in the page's order, not team matches first
    assert list(frame["label"]) == ["✎ zebra crossing (strong)", "✎ zebra crossing (weak)"]
    assert "2 matching" in rendered(at)


def test_map_page_renders_a_webgl_scatter_of_every_live_feature(index, open_page):
    at = open_page("map", q="a", color="search")
    assert_clean(at)
    chart = at.get("plotly_chart")[0]
    assert '"type":"scattergl"' in chart.proto.spec.replace(" ", "")
    assert at.text_input(key="map.q").value == "a" and "features match" in rendered(at)


def test_map_page_zoomed_to_a_box_from_the_link_draws_only_that_box(index, open_page):
    store = IndexStore.open(index)
    pts = store.map_points()
    x0, x1 = float(np.quantile(pts.x, 0.25)), float(np.quantile(pts.x, 0.75))
    y0, y1 = float(np.quantile(pts.y, 0.25)), float(np.quantile(pts.y, 0.75))
    at = open_page("map", view=f"{x0},{x1},{y0},{y1}", color="cluster")
    assert_clean(at)
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    (trace,) = spec["data"]
    inside = ((pts.x >= x0) & (pts.x <= x1) & (pts.y >= y0) & (pts.y <= y1) & ~pts.dead).sum()
    drawn = int(trace["customdata"]["shape"].split(",")[0])  # plotly sends numpy arrays base64-encoded
    assert drawn == inside and 0 < inside < store.d_sae / 2
    assert spec["layout"]["xaxis"]["range"] == pytest.approx([x0, x1], rel=1e-6)
    assert any(b.label == "Whole map" for b in at.button)
    assert "view" in share_link(at)  # the zoom travels with a shared link
    bad = open_page("map", view="1,0,0,1")
    assert "The link's 'view' must be" in rendered(bad)
    assert len(bad.get("plotly_chart")) == 1  # a bad zoom falls back to the whole map


def test_trace_page_restores_prompt_token_and_filters(index, open_page):
    at = open_page("trace", prompt="for i in range(10):\n    print(i)", pos=3, density="0.5", n=7)
    assert_clean(at)
    assert at.text_area(key="trace.prompt").value.startswith("for i in range")
    assert at.number_input(key="trace.n").value == 7 and at.number_input(key="trace.density").value == 0.5
    assert any(m.value.startswith("**Features at token 3**") for m in at.markdown)
    tables = at.dataframe
    assert len(tables) == 3 and all(len(t.value) <= 7 for t in tables[1:])
    assert all(d is None or d <= 0.5 for d in tables[1].value["density"])
    assert "the model predicts" in rendered(at)


def test_the_trace_toggle_and_its_link_agree_on_bos_and_old_links_still_count_it(index, open_page):
    def ranked_positions(at: AppTest) -> set[int]:
        return {int(t.split(":")[0]) for t in at.dataframe[1].value["at token"]}

    prompt = "import os\nimport sys"
    counted = open_page("trace", prompt=prompt, n=200, bos=1)  # a link written before the toggle was renamed
    assert_clean(counted)
    assert counted.toggle(key="trace.bos").value is True and 0 in ranked_positions(counted)
    left_out = open_page("trace", prompt=prompt, n=200)
    assert_clean(left_out)
    assert left_out.toggle(key="trace.bos").value is False and 0 not in ranked_positions(left_out)
    assert "bos" not in share_link(left_out)
    left_out.toggle(key="trace.bos").set_value(True)
    next(b for b in left_out.button if b.label == "Trace").click().run()  # the toggle sits in the form
    assert_clean(left_out)
    assert left_out.query_params["bos"] == "1" and share_link(left_out)["bos"] == ["1"]
    assert 0 in ranked_positions(left_out)


def test_trace_page_shades_by_the_top_feature_in_one_model_call(index, open_page, monkeypatch):
    from backend.inference.engine import LocalInference

    calls = []
    real_trace = LocalInference.trace
    monkeypatch.setattr(LocalInference, "trace", lambda self, request: calls.append(request) or real_trace(self,
                                                                                                          request))
    at = open_page("trace", prompt="while True:\n    break  # one call")
    assert_clean(at)
    assert len(calls) == 1 and calls[0].trace_top_feature and calls[0].feature_ids == []
    top = at.selectbox(key="trace.hl").value
    assert top == at.dataframe[1].value["feature"][0]  # the prompt's top feature by max activation
    assert "hl" not in at.query_params  # the default shading keeps the link short


def test_picking_a_token_and_a_feature_on_the_trace_page_rewrites_the_link(index, open_page):
    at = open_page("trace", prompt="import os\nimport sys")
    assert_clean(at)
    pills = next(w for w in at.get("button_group") if w.key == "trace.pos")
    pills.set_value(2).run()
    assert_clean(at)
    assert at.query_params["pos"] == "2"
    assert any(m.value.startswith("**Features at token 2**") for m in at.markdown)
    assert "After token 2" in rendered(at)

    shade = at.selectbox(key="trace.hl")
    other = int(shade.options[1].split()[0].lstrip("#"))  # options read "#<id> <label>"
    shade.select(other).run()
    assert_clean(at)
    assert at.query_params["hl"] == str(other) and at.selectbox(key="trace.hl").value == other


def test_steer_page_restores_a_shared_link_and_gives_the_same_text(index, open_page):
    params = dict(prompt="def add(a, b):", f="3:6,7", mode="add", at="all", n=10, temp="0.8", seed=5)
    first = open_page("steer", **params)
    assert_clean(first)
    editor = first.dataframe[0].value  # the features editor, filled from the link's f=3:6,7
    assert list(editor["feature"]) == [3, 7] and editor["strength"][0] == 6.0 and editor["strength"].isna()[1]
    assert first.segmented_control(key="steer.mode").value == "add"
    assert first.number_input(key="steer.n").value == 10 and first.number_input(key="steer.seed").value == 5
    steered = [h.value for h in first.get("html") if 'class="strip wrap"' in h.value]
    assert len(steered) == 2
    link = share_link(first)
    assert link["f"] == ["3:6,7"] and link["temp"] == ["0.8"]

    again = open_page("steer", **{k: v[0] for k, v in link.items()})  # a fresh session opens the link
    assert_clean(again)
    assert [h.value for h in again.get("html") if 'class="strip wrap"' in h.value] == steered
    assert again.dataframe[0].value.equals(editor)


def test_steer_page_says_which_added_features_never_registered(index, open_page):
    dead = IndexStore.open(index).d_sae - 1  # the tiny SAE's dead feature can never win a top-k slot
    at = open_page("steer", prompt="def add(a, b):", f=f"7:50,{dead}:5", n=6)
    assert_clean(at)
    hints = [i.value for i in at.info]
    assert len(hints) == 1 and hints[0].startswith(f"#{dead} never fired after the edit") and "#7" not in hints[0]
    clamped = open_page("steer", prompt="def add(a, b):", f=f"{dead}:5", n=6, mode="clamp")
    assert_clean(clamped)
    assert not any("never fired" in i.value for i in clamped.info)  # clamp sets the activation itself


def test_a_quick_list_link_shows_its_features_and_saves_them_as_a_team_list(index, open_page):
    at = open_page("lists", quick="5,3,5,9")
    assert_clean(at)
    table = at.dataframe[0].value
    assert list(table["feature"]) == [5, 3, 9]  # link order, repeats dropped
    assert TeamStore.for_index(index).lists() == []  # nothing stored by opening the link
    at.text_input(key="quick_list.name").input("from a link")
    next(b for b in at.button if b.label == "Save").click().run()
    assert_clean(at)
    (saved,) = TeamStore.for_index(index).lists()
    assert saved.name == "from a link" and saved.item_count == 3


def test_quick_list_links_are_built_only_for_what_fits_in_one():
    from ui.lists_view import MAX_QUICK_LIST, quick_list_url

    assert quick_list_url([3, 17]).split("?")[1].startswith("quick=3%2C17")
    assert quick_list_url(list(range(MAX_QUICK_LIST + 1))) is None and quick_list_url([]) is None


def test_lists_page_shows_lists_from_the_team_store(index, open_page):
    team = TeamStore.for_index(index)
    listed = team.create_list("brackets")
    team.add_to_list(listed.list_id, 4, "opens a call")
    at = open_page("lists", list=listed.list_id)
    assert_clean(at)
    assert at.radio(key="lists.list").value == listed.list_id
    notes = at.dataframe[0].value
    assert list(notes["note"]) == ["opens a call"]
    assert [b.label for b in at.get("download_button")] == ["Export all (JSON)", "Export CSV", "Export JSON"]


def test_labels_and_lists_are_saved_from_the_feature_page(index, open_page):
    at = open_page("feature", id=6)
    widget(at.sidebar.text_input, "Your name (signs labels and notes)").input("Ada <b>").run()
    widget(at.text_input, "Label (shared with the team; overrides the automatic label everywhere)").input("colons")
    widget(at.button, "Save").click().run()
    assert_clean(at)
    team = TeamStore.for_index(index)
    assert (team.get_labels([6])[6].text, team.get_labels([6])[6].author) == ("colons", "Ada <b>")
    assert '#6</span>colons<span class="label-source">team label by Ada &lt;b&gt; · 20' in rendered(at)

    widget(at.text_input, "…or a new list named").input("punctuation")
    widget(at.text_area, "Note").input("ends a def line")
    next(b for b in at.button if b.label == "Save" and b.proto.is_form_submitter and "add_to_list" in b.form_id) \
        .click().run()
    assert_clean(at)
    (saved,) = team.lists()
    (item,) = team.list_items(saved.list_id)
    assert (saved.name, item.note, item.added_by) == ("punctuation", "ends a def line", "Ada <b>")
    listed = open_page("lists", list=saved.list_id)
    notes = listed.dataframe[0].value
    assert list(notes["by"]) == ["Ada <b>"]

    table = open_page("features", q="colons")
    assert "✎ colons" in list(table.dataframe[0].value["label"])


# ---- bad links ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("page", "params", "message"),
    [
        ("feature", {"id": "abc"}, "must be a whole number"),
        ("feature", {"id": "99999"}, "Feature 99999 does not exist"),
        ("feature", {"id": "-4"}, "does not exist"),
        ("features", {"dmin": "lots"}, "must be a number"),
        ("features", {"sort": "drop table"}, "must be one of"),
        ("map", {"color": "purple"}, "must be one of"),
        ("trace", {"prompt": "x", "hl": "70000"}, "must be between"),
        ("steer", {"prompt": "x", "f": "3:abc"}, "should look like 12 or 12:4.5"),
        ("steer", {"prompt": "x", "f": "99999"}, "99999"),
        ("steer", {"prompt": "x", "f": "3", "temp": "hot"}, "must be a number"),
        # bounds the form takes from SteerRequest / TraceRequest
        ("steer", {"prompt": "x", "f": "3", "temp": "9"}, "'temp' must be between 0.0 and 5.0, not 9"),
        ("steer", {"prompt": "x", "f": "3", "n": "600"}, "'n' must be between 1 and 512, not 600"),
        ("trace", {"prompt": "x", "n": "0"}, "'n' must be between 1 and 200, not 0"),
        ("lists", {"list": "12345"}, "does not exist"),
        ("lists", {"quick": "3,x"}, "must be feature ids separated by commas"),
        ("lists", {"quick": "3,99999"}, "Feature 99999 does not exist"),
        ("lists", {"quick": ",".join(str(i) for i in range(151))}, "at most 150 features"),
        ("features", {"index": "/no/such/index.duckdb"}, NOT_OFFERED),
    ],
)
def test_bad_link_parameters_show_a_sentence_not_a_traceback(index, open_page, page, params, message):
    if page == "lists":
        TeamStore.for_index(index).create_list("one")
    at = open_page(page, **params)
    assert not at.exception, [e.value for e in at.exception]
    assert any(message in e.value.replace("\\", "") for e in at.error), [e.value for e in at.error]


def test_a_missing_default_index_says_how_to_build_one(index, open_page, monkeypatch, tmp_path):
    missing = tmp_path / "not_built.duckdb"
    monkeypatch.setenv("SAE_EXPLORER_INDEX", str(missing))
    at = open_page("feature", id=1)
    assert not at.exception
    assert any(f"python -m backend index --source <source> --out {missing}" in i.value for i in at.info)


def test_a_link_names_only_an_offered_index_and_never_a_path(index, open_page, tmp_path_factory, monkeypatch):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    outside = elsewhere / "x.duckdb"
    shutil.copy(index, outside)
    (elsewhere / "junk.duckdb").write_bytes(b"not an index")
    for name in (str(outside), str(elsewhere / "junk.duckdb"), str(elsewhere / "missing.duckdb"), "/etc/passwd",
                 "../" + outside.stem, "x", "tiny.duckdb", str(index)):
        at = open_page("feature", id=1, index=name)
        assert not at.exception
        assert [e.value for e in at.error] == [NOT_OFFERED]  # one answer for a file that exists, junk or nothing
        assert not at.get("plotly_chart")
    assert sorted(p.name for p in elsewhere.iterdir()) == ["junk.duckdb", "x.duckdb"]  # no team file was created

    monkeypatch.setenv("SAE_EXPLORER_INDEX_DIRS", str(elsewhere))  # a folder the server's configuration offers
    at = open_page("feature", id=1, index="x")
    assert_clean(at)
    assert '<span class="fid">#1</span>' in rendered(at)
    assert share_link(at)["index"] == ["x"]  # links carry the name, never the path
    options = at.sidebar.selectbox[0].options
    assert options[0] == "tiny" and options[-2:] == ["junk", "x"]


def test_a_token_position_past_the_prompt_falls_back_to_the_last_token(index, open_page):
    at = open_page("trace", prompt="abc", pos=500)
    assert not at.exception and any("outside the prompt" in w.value for w in at.warning)


# ---- escaping -------------------------------------------------------------------------------------------

def test_hostile_labels_and_tokens_are_shown_as_text(index, open_page):
    store = IndexStore.open(index)
    fid = store.random_feature_id(seed=2)
    neighbour = store.feature_page(fid).cosine_neighbours[0].feature_id
    team = TeamStore.for_index(index)
    team.set_label(fid, HOSTILE)
    hostile_list = team.create_list(HOSTILE)
    team.add_to_list(hostile_list.list_id, fid, HOSTILE)

    pages = [
        open_page("feature", id=fid, text=HOSTILE_PROMPT),
        open_page("feature", id=neighbour),  # the hostile label as a neighbour link
        open_page("trace", prompt=HOSTILE_PROMPT, hl=fid),
        open_page("steer", prompt=HOSTILE_PROMPT, f=f"{fid}:4", n=6),
        open_page("lists", list=hostile_list.list_id),
        open_page("map", q="script", color="search"),
    ]
    for at in pages:
        assert_clean(at)
        raw = [line for line in rendered(at).splitlines() if any(tag in line.lower() for tag in RAW_TAGS)]
        assert raw == []
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered(pages[0])  # the title, escaped
    assert "&lt;script&gt;" in rendered(pages[1])  # the neighbour link label, escaped
    assert "&lt;" in rendered(pages[2]) and "script" in rendered(pages[2])  # the prompt's tokens, escaped
    hover = pages[5].get("plotly_chart")[0].proto.spec
    assert "<script" not in hover and "&lt;script&gt;" in hover


def test_corpus_tokens_with_html_in_examples_are_escaped(index, open_page):
    """The tiny corpus holds '<script>alert(1)</script>'; find a feature whose examples show '<' tokens."""
    store = IndexStore.open(index)
    fid = next(
        i for i in range(store.d_sae)
        if any("<" in t.text for ex in store.feature_page(i).top_examples for t in ex.tokens)
    )
    at = open_page("feature", id=fid)
    assert_clean(at)
    text = rendered(at)
    assert "&lt;" in text and not any(tag in text for tag in RAW_TAGS)


# ---- speed and caching ----------------------------------------------------------------------------------

def test_feature_page_renders_within_a_second_and_never_reloads_the_model(index, open_page):
    import backend.sources as sources

    at = open_page("feature", id=1, text="import os")  # warm: index open, model loaded
    assert_clean(at)
    loaded = dict(sources._CACHE)
    timings = []
    for fid in (2, 9, 17, 30, 41):
        at.query_params["id"] = str(fid)
        start = time.perf_counter()
        at.run()
        timings.append(time.perf_counter() - start)
        assert_clean(at)
        assert f'<span class="fid">#{fid}</span>' in rendered(at)
    assert statistics.median(timings) <= 1.0, timings
    assert dict(sources._CACHE) == loaded  # same model objects: switching features loaded nothing


def test_an_index_built_from_other_sae_weights_is_flagged_with_the_rebuild_command(index, open_page, tiny_dirs,
                                                                                   monkeypatch):
    weights = tiny_dirs.sae_dir / "sae_weights.safetensors"
    stale = index.with_name("stale.duckdb")
    shutil.copy(index, stale)
    with duckdb.connect(str(stale)) as con:  # as if the SAE had been retrained after this index was built
        (recorded,) = con.execute("SELECT value FROM meta WHERE key = 'sae_weights_sha256'").fetchone()
        con.execute("UPDATE meta SET value = ? WHERE key = 'sae_weights_sha256'", [json.dumps("0" * 64)])
    assert json.loads(recorded) == hashlib.sha256(weights.read_bytes()).hexdigest()

    assert not [w for w in open_page("features").sidebar.warning if "other SAE weights" in w.value]
    monkeypatch.setenv("SAE_EXPLORER_INDEX", str(stale))
    at = open_page("features")
    assert_clean(at)
    (warning,) = [w.value for w in at.sidebar.warning if "other SAE weights" in w.value]
    assert f"python -m backend index --source {tiny_dirs.spec} --out {stale}" in warning
