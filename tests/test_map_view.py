"""The map at the scale of real SAEs (the demo has 4,096 features; gpt2-small-res-jb has 24,576 and
Gemma Scope up to 131k): one WebGL trace, built fast, compact enough to send, and selections read
back to the right feature ids after dead features are hidden."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest

from backend.map_layout import POINT_LIMIT, Viewport
from backend.payloads import MapPoints
from ui.map_view import MapView, build_map, features_in_box, read_selection

N_POINTS = 32_768


@dataclass
class FakeMapStore:
    points: MapPoints

    def map_points(self) -> MapPoints:
        return self.points


def big_context(n: int) -> SimpleNamespace:
    rng = np.random.default_rng(0)
    points = MapPoints(
        feature_id=np.arange(n), x=rng.normal(size=n).astype(np.float32), y=rng.normal(size=n).astype(np.float32),
        cluster=rng.integers(0, 40, size=n), density=10 ** rng.uniform(-6, -1, size=n),
        label=np.array([f"feature {i} <b>" for i in range(n)], dtype=object), dead=np.arange(n) % 10 == 0,
    )
    return SimpleNamespace(store=FakeMapStore(points), key=f"big-{n}")


@pytest.fixture(scope="module")
def ctx() -> SimpleNamespace:
    return big_context(N_POINTS)


def test_a_32k_feature_map_is_one_compact_webgl_trace_built_fast(ctx):
    build_map(ctx, "density", show_dead=True, matches=set(), labels={})  # warm the cached points
    for colour in ("density", "cluster", "search"):
        start = time.perf_counter()
        view = build_map(ctx, colour, show_dead=False, matches={1, 2, 3}, labels={5: "team <i>label</i>"})
        spec = view.figure.to_json()
        elapsed = time.perf_counter() - start
        (trace,) = view.figure.data
        assert not view.decimated and view.points_trace == 0
        live = sum(f % 10 != 0 for f in range(N_POINTS))
        assert trace.type == "scattergl" and len(trace.x) == len(view.feature_ids) == live
        assert elapsed < 3.0, f"{colour}: {elapsed:.2f} s to build and serialise"
        assert len(spec) < 12_000_000, f"{colour}: {len(spec) / 1e6:.1f} MB sent to the browser"
        assert "<b>" not in spec and "<i>" not in spec  # labels go out escaped
    assert json.loads(spec)["data"][0]["text"][4] == "team &lt;i&gt;label&lt;/i&gt;"  # feature 5 sits at index 4


def test_selection_indices_map_back_to_feature_ids_with_dead_features_hidden(ctx):
    view = build_map(ctx, "cluster", show_dead=False, matches=set(), labels={})
    click = SimpleNamespace(selection={"points": [{"point_index": 9}]})
    assert read_selection(click, view).clicked == 11  # features 0 and 10 are hidden: point 9 is feature 11
    box = SimpleNamespace(selection={"points": [{"point_index": i} for i in (0, 9, 29_000)], "box": [{}]})
    live = [f for f in range(N_POINTS) if f % 10]
    assert read_selection(box, view).selected == [1, 11, live[29_000]]


def test_a_rerun_reuses_the_built_map_until_a_setting_or_a_team_label_changes():
    small = big_context(64)
    first = build_map(small, "search", show_dead=False, matches={3}, labels={5: "old"})
    assert build_map(small, "search", show_dead=False, matches={3}, labels={5: "old"}) is first
    relabelled = build_map(small, "search", show_dead=False, matches={3}, labels={5: "new"})
    assert relabelled is not first and "new" in relabelled.figure.data[0].text
    assert build_map(small, "search", show_dead=False, matches={4}, labels={5: "new"}) is not relabelled


def test_a_million_features_draw_a_sample_over_the_density_of_all_and_zoom_shows_every_point():
    n = 1_048_576
    ctx = big_context(n)
    live = n - len(range(0, n, 10))
    start = time.perf_counter()
    view = build_map(ctx, "search", show_dead=False, matches={7, 123_457}, labels={})
    spec = view.figure.to_json()
    elapsed = time.perf_counter() - start
    heat, dots = view.figure.data
    assert view.decimated and view.in_view == live and view.points_trace == 1
    assert heat.type == "heatmap" and dots.type == "scattergl"
    assert len(dots.x) == len(view.feature_ids) == POINT_LIMIT
    assert {7, 123_457} <= set(view.feature_ids.tolist())  # search matches are always drawn
    assert not np.isin(view.feature_ids, np.arange(0, n, 10)).any()  # dead stay hidden
    counts = np.nan_to_num(10 ** (np.asarray(heat.z, float) - 1)).round().sum()
    assert counts == live  # the grid counts every live feature in view, drawn or not
    assert len(spec) < 8_000_000, f"{len(spec) / 1e6:.1f} MB sent to the browser"
    assert elapsed < 10.0, f"{elapsed:.1f} s to plan, build and serialise"
    # a click on the sample opens the right feature; the heatmap's own points are ignored
    click = SimpleNamespace(selection={"points": [{"point_index": 5, "curve_number": 1}]})
    assert read_selection(click, view).clicked == int(view.feature_ids[5])
    stray = SimpleNamespace(selection={"points": [{"point_index": 5, "curve_number": 0}]})
    assert read_selection(stray, view).clicked is None
    # a box: every live feature inside it, then zoomed to it all of them are drawn
    box_event = SimpleNamespace(selection={"points": [{"point_index": 1, "curve_number": 1}],
                                           "box": [{"x": [0.2, 0.0], "y": [0.0, 0.1]}]})
    box = read_selection(box_event, view).box
    assert box == Viewport(0.0, 0.2, 0.0, 0.1)
    pts = ctx.store.points
    inside = features_in_box(ctx, box, show_dead=False)
    expected = np.flatnonzero((pts.x >= 0) & (pts.x <= 0.2) & (pts.y >= 0) & (pts.y <= 0.1) & ~pts.dead)
    assert inside == expected.tolist() and 0 < len(inside) < POINT_LIMIT
    zoomed: MapView = build_map(ctx, "density", show_dead=False, matches=set(), labels={}, viewport=box)
    assert not zoomed.decimated and sorted(zoomed.feature_ids.tolist()) == inside
    assert list(zoomed.figure.layout.xaxis.range) == [0.0, 0.2]
