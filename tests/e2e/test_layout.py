"""Layout in a real Chromium at several widths: on the feature page the framed (activating) token of every
top-example and interval-example row lies inside the visible box of its row, and no button label is cut
short. The index has the real default window shape (24 tokens before, 8 after), where a left-aligned row in
the page's narrow column used to be clipped before its framed token."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import TINY_INDEX_CONFIG
from tests.e2e.test_browser import ARTIFACTS, browser, server, settle  # noqa: F401  (fixtures)

pytestmark = pytest.mark.e2e

WIDTHS = [1280, 1400, 1920]

# every example row: its visible box (the strip clipped by the row and the viewport) and the framed token's box
_BOXES = """() => Array.from(document.querySelectorAll('.ex-row')).filter(r => r.offsetParent !== null).map(row => {
    const strip = row.querySelector('.strip').getBoundingClientRect();
    const tok = row.querySelector('.tok-max');
    const t = tok ? tok.getBoundingClientRect() : null;
    return {left: Math.max(strip.left, 0), right: Math.min(strip.right, window.innerWidth),
            tokLeft: t ? t.left : null, tokRight: t ? t.right : null, text: row.innerText.slice(0, 80)};
})"""

# button and link labels cut short (Streamlit draws an ellipsis) or broken over two lines
_CUT_LABELS = """() => Array.from(document.querySelectorAll('button p, [data-testid="stPageLink"] p'))
    .filter(p => p.offsetParent !== null && p.innerText.trim() !== '')
    .filter(p => p.scrollWidth > p.clientWidth + 1
                 || p.getBoundingClientRect().height > 1.6 * parseFloat(getComputedStyle(p).lineHeight))
    .map(p => p.innerText)"""


@pytest.fixture(scope="module")
def index(tiny_dirs, tiny_dataset, tmp_path_factory) -> Path:
    from backend.index.build import IndexConfig, build_index
    from backend.sources import SourceSpec

    config = {**TINY_INDEX_CONFIG, "window_before": 24, "window_after": 8}
    out = tmp_path_factory.mktemp("layout_index") / "wide.duckdb"
    return build_index(SourceSpec.parse(tiny_dirs.spec), IndexConfig(**config, dataset=str(tiny_dataset)), out)


def _rows_in_view(page) -> list[dict]:
    rows = page.evaluate(_BOXES)
    assert rows, "the feature page shows no example rows"
    return rows


@pytest.mark.parametrize("width", WIDTHS)
def test_framed_token_of_every_example_row_is_visible(server, browser, width):  # noqa: F811
    context = browser.new_context(viewport={"width": width, "height": 1100})
    context.set_default_timeout(120_000)
    page = context.new_page()
    try:
        page.goto(f"{server}/feature?id=3")
        settle(page)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"feature-{width}.png"), full_page=True)
        checked = 0
        for tab in ["Top activations", "By activation interval"]:
            page.get_by_role("tab", name=tab).first.click()
            page.wait_for_timeout(300)
            for row in _rows_in_view(page):
                assert row["tokLeft"] is not None, f"a row without a framed token: {row['text']!r}"
                assert row["left"] - 0.5 <= row["tokLeft"] and row["tokRight"] <= row["right"] + 0.5, (
                    f"at {width} px the framed token ({row['tokLeft']:.0f}-{row['tokRight']:.0f}) is outside its "
                    f"row's visible box ({row['left']:.0f}-{row['right']:.0f}): {row['text']!r}")
                checked += 1
        assert checked >= 2
        assert page.evaluate(_CUT_LABELS) == [], f"button labels cut short at {width} px"
        page.goto(f"{server}/lists")
        settle(page)
        page.screenshot(path=str(ARTIFACTS / f"lists-{width}.png"), full_page=True)
        assert page.evaluate(_CUT_LABELS) == [], f"button labels cut short on the lists page at {width} px"
    finally:
        context.close()
