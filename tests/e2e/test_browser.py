"""The dashboard in a real headless Chromium: a `streamlit run app.py` server on the tiny index, driven by
Playwright. Every page opens; a map point clicks through to its feature page; a trace and a steer run;
a copied steering link opened in a fresh browser gives the same steered text. Screenshots go to
test-artifacts/e2e/ (git-ignored)."""

from __future__ import annotations

import csv
import io
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from backend.team import TeamStore
from tests.support.tiny_source import streamlit_server

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "e2e"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
STEER_PROMPT = "def add(a, b):"


@pytest.fixture(scope="module")
def index(tiny_index, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("e2e_index")
    index = folder / "tiny.duckdb"
    shutil.copy(tiny_index, index)  # its own team store beside it
    return index


@pytest.fixture(scope="module")
def server(index) -> Iterator[str]:
    env = {"SAE_EXPLORER_INDEX": str(index), "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    with streamlit_server(ROOT / "app.py", env, index.parent / "streamlit.log", timeout=60) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("Chromium is not installed, so the browser tests cannot run: './run.sh test' installs "
                    "Debian's chromium (or run 'apt-get install -y chromium' as root).")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def new_context(browser):
    """A fresh browser profile; generous timeouts because a loaded 2-core CI machine is slow to serve."""
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    context.set_default_timeout(120_000)
    context.set_default_navigation_timeout(120_000)
    return context


@pytest.fixture()
def page(browser):
    context = new_context(browser)
    yield context.new_page()
    context.close()


def settle(page, timeout: float = 60) -> None:
    """Wait until the script run is over: no running indicator and no spinner for 0.6 s."""
    page.get_by_text("SAE feature explorer").first.wait_for(timeout=timeout * 1000)  # the page script has started
    time.sleep(0.3)
    quiet, deadline = 0, time.monotonic() + timeout
    while quiet < 3:
        busy = page.locator("[data-testid='stStatusWidgetRunningIcon'], [data-testid='stSpinner']").count()
        quiet = 0 if busy else quiet + 1
        assert time.monotonic() < deadline, "the page kept running"
        time.sleep(0.2)
    exceptions = page.locator("[data-testid='stException']")
    assert exceptions.count() == 0, exceptions.first.inner_text()


def shoot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def steered_texts(page) -> list[str]:
    return page.locator("div.strip.wrap").all_inner_texts()


def test_the_first_link_a_fresh_server_opens_is_drawn_inside_the_frame(server, page):
    """First in this file, so this link is the server's first script run: the one Streamlit makes in its legacy
    pages/ mode, running pages/lists.py without app.py (ui/frame._run_through_entrypoint). What shows must be
    app.py's frame: its browser title and the navigation's page titles, not the pages/ file names."""
    page.goto(f"{server}/lists")
    settle(page)
    assert page.title() == "SAE feature explorer"
    nav = page.locator("[data-testid='stSidebarNav'] a")
    paths = [urlsplit(href).path.strip("/") for href in nav.evaluate_all("links => links.map(a => a.href)")]
    assert paths == ["", "feature", "map", "trace", "steer", "concepts", "lists"]  # the root, then st.Page paths
    assert page.get_by_text("Lists", exact=True).first.is_visible()


@pytest.mark.parametrize(
    ("path", "expect"),
    [("", "Features"), ("map", "Feature map"), ("lists", "Lists")],  # feature, trace, steer: opened below
)
def test_every_page_opens(server, page, path, expect):
    page.goto(f"{server}/{path}")
    settle(page)
    assert page.get_by_text(expect, exact=True).first.is_visible()
    shoot(page, f"page-{path.split('?')[0] or 'features'}")


def test_clicking_a_map_point_opens_its_feature_page(server, page):
    page.goto(f"{server}/map")
    settle(page)
    plot = page.locator(".js-plotly-plot").first
    plot.wait_for()
    point = page.evaluate(
        """() => {
            const gd = document.querySelector('.js-plotly-plot');
            const layout = gd._fullLayout, trace = gd._fullData[0], box = gd.getBoundingClientRect();
            const i = Math.floor(trace.x.length / 2);
            return {x: box.left + layout.xaxis._offset + layout.xaxis.l2p(trace.x[i]),
                    y: box.top + layout.yaxis._offset + layout.yaxis.l2p(trace.y[i]),
                    id: trace.customdata[i][0]};
        }"""
    )
    page.mouse.move(point["x"], point["y"])
    time.sleep(0.3)
    page.mouse.click(point["x"], point["y"])
    page.locator("p.feature-title").wait_for(timeout=30_000)
    settle(page)
    assert page.locator("p.feature-title").inner_text().startswith(f"#{point['id']}")
    assert f"/feature?id={point['id']}" in page.url
    shoot(page, "map-click-feature")


def test_a_box_selection_on_the_map_is_saved_as_a_list(server, page, index):
    page.goto(f"{server}/map")
    settle(page)
    page.locator("[data-title='Box Select']").first.click()
    area = page.locator(".js-plotly-plot .nsewdrag").first.bounding_box()
    page.mouse.move(area["x"] + 5, area["y"] + 5)
    page.mouse.down()
    page.mouse.move(area["x"] + area["width"] * 0.6, area["y"] + area["height"] * 0.6, steps=8)
    page.mouse.up()
    page.get_by_text("features selected").wait_for(timeout=30_000)
    settle(page)
    selected = int(page.get_by_text("features selected").inner_text().split()[0])
    quick = page.get_by_role("link", name="Open as a quick list").get_attribute("href")
    assert len(unquote(quick.split("quick=")[1].split("&")[0]).split(",")) == selected
    page.get_by_role("button", name="as a list").click()
    page.get_by_label("…or a new list named").fill("top-left corner")
    page.locator("[data-testid='stPopoverBody'] button", has_text="Save").click()
    settle(page)
    shoot(page, "map-selection-saved")
    saved = {t.name: t for t in TeamStore.for_index(index).lists()}
    assert selected > 0 and saved["top-left corner"].item_count == selected


def test_a_list_downloads_as_csv_with_team_labels(server, page, index):
    team = TeamStore.for_index(index)
    chosen = team.create_list("to export")
    team.add_many_to_list(chosen.list_id, [2, 5], "exported note")
    team.set_label(5, "team label, with a comma")
    page.goto(f"{server}/lists?list={chosen.list_id}")
    settle(page)
    with page.expect_download() as download:  # the CSV is built on the click, not when the page runs
        page.get_by_role("button", name="Export CSV").click()
    assert download.value.suggested_filename == "to-export.csv"
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text(encoding="utf-8"))))
    assert [(int(r["feature_id"]), r["note"]) for r in rows] == [(2, "exported note"), (5, "exported note")]
    assert rows[1]["label"] == "team label, with a comma" and rows[0]["label"]  # the automatic label


@pytest.mark.xfail(strict=False, reason="known gap: typing into st.data_editor's canvas grid with synthetic keys is "
                   "unreliable in headless Chromium (passes in some runs); saving notes is covered by AppTest")
def test_a_note_is_edited_on_the_lists_page(server, page, index):
    team = TeamStore.for_index(index)
    chosen = team.create_list("to annotate")
    team.add_many_to_list(chosen.list_id, [4, 9], "first draft")
    page.goto(f"{server}/lists?list={chosen.list_id}")
    settle(page)
    grid = page.locator("[data-testid='stDataFrame'] canvas").first.bounding_box()
    page.mouse.click(grid["x"] + 110, grid["y"] + 35 + 17)  # row 1, "feature" column (header row is 35 px)
    time.sleep(1.0)  # the canvas grid takes focus asynchronously; keys sent earlier are lost
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")  # the note column
    page.keyboard.press("Enter")  # opens the cell editor
    time.sleep(1.0)
    page.keyboard.press("Control+A")
    page.keyboard.type("fires on digits")
    page.keyboard.press("Enter")
    time.sleep(1.0)
    page.get_by_role("button", name="Save changes").click()
    settle(page)
    shoot(page, "lists-note-edited")
    expected = [(4, "fires on digits"), (9, "first draft")]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and [(i.feature_id, i.note) for i in team.list_items(chosen.list_id)] != expected:
        time.sleep(0.5)  # the save runs in the app's rerun; give a loaded machine time
    assert [(i.feature_id, i.note) for i in team.list_items(chosen.list_id)] == expected


def test_trace_runs_from_the_prompt_box(server, page):
    page.goto(f"{server}/trace")
    settle(page)
    page.get_by_label("Prompt").fill("for i in range(10):\n    print(i)")
    page.get_by_role("button", name="Trace").click()
    settle(page, timeout=90)
    assert "prompt=for+i+in+range" in page.url
    assert page.get_by_text("Next-token prediction", exact=True).is_visible()
    assert page.locator("div.strip.wrap span.tok").count() > 5
    shoot(page, "trace")


def test_a_shared_steering_link_gives_the_same_text_in_a_fresh_browser(server, page, browser):
    page.goto(f"{server}/steer?f=3:6,7")
    settle(page)
    page.get_by_label("Prompt").fill(STEER_PROMPT)
    page.get_by_label("Seed").fill("7")
    page.get_by_label("New tokens").fill("12")  # the tiny model's context is 32 tokens
    page.get_by_role("button", name="Steer").click()
    settle(page, timeout=90)
    first = steered_texts(page)
    alerts = page.locator("[data-testid='stAlert']").all_inner_texts()
    assert len(first) == 4 and first[3].strip(), alerts  # default and steered, each after the faint prompt
    shoot(page, "steer")

    page.get_by_role("button", name="Copy link").click()
    link = page.locator("[data-testid='stCode'] code").first.inner_text().strip()
    assert link.startswith(f"{server}/steer?") and "seed=7" in link and "n=12" in link and "f=3%3A6%2C7" in link

    fresh = new_context(browser)
    try:
        other = fresh.new_page()
        other.goto(link)
        other.locator("div.strip.wrap").nth(3).wait_for(timeout=90_000)
        settle(other, timeout=90)
        assert steered_texts(other) == first
        shoot(other, "steer-shared-link")
    finally:
        fresh.close()
