"""Map planning at any size: viewports from links and boxes, decimation with priorities, the density grid."""

from __future__ import annotations

import numpy as np
import pytest

from backend.errors import UserError
from backend.map_layout import Viewport, density_grid, plan_map


def test_viewport_round_trips_through_the_link_and_rejects_bad_ones():
    view = Viewport.parse("-1.5,2,0,3.25")
    assert view == Viewport(-1.5, 2.0, 0.0, 3.25) and Viewport.parse(str(view)) == view
    for bad in ("1,2,3", "a,b,c,d", "2,1,0,1", "0,1,nan,1", "0,1,1,1"):
        with pytest.raises(UserError, match="The link's 'view'"):
            Viewport.parse(bad)
    assert Viewport.from_box({"x": [3, 1], "y": [0, 2]}) == Viewport(1.0, 3.0, 0.0, 2.0)
    assert Viewport.from_box({"x": [1, 1], "y": [0, 2]}) is None and Viewport.from_box({}) is None


def test_plan_draws_everything_under_the_limit_and_decimates_above_it():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=5000), rng.normal(size=5000)
    eligible = np.arange(5000) % 4 != 0
    small = plan_map(x, y, eligible, None, limit=10_000)
    assert not small.decimated and small.grid is None
    assert small.drawn.tolist() == np.flatnonzero(eligible).tolist()
    first = np.zeros(5000, bool)
    first[[1, 2, 4999]] = True
    big = plan_map(x, y, eligible, None, first=first, limit=500)
    assert big.decimated and len(big.drawn) == 500 and len(big.in_view) == eligible.sum()
    assert {1, 2, 4999} <= set(big.drawn.tolist()) and eligible[big.drawn].all()
    again = plan_map(x, y, eligible, None, first=first, limit=500)
    assert np.array_equal(again.drawn, big.drawn)  # the same sample on every rerun
    # zoomed: only points inside the box count, and a small box draws them all
    box = Viewport(0.0, 0.5, 0.0, 0.5)
    zoomed = plan_map(x, y, eligible, box, limit=500)
    assert zoomed.drawn.tolist() == np.flatnonzero(eligible & (x >= 0) & (x <= 0.5) & (y >= 0) & (y <= 0.5)).tolist()


def test_density_grid_counts_each_point_once_in_its_cell():
    x = np.array([0.05, 0.05, 0.95, 0.5])
    y = np.array([0.05, 0.06, 0.95, 0.5])
    grid = density_grid(x, y, Viewport(0.0, 1.0, 0.0, 1.0), bins=10)
    assert grid.counts.shape == (10, 10) and grid.counts.sum() == 4
    assert grid.counts[0, 0] == 2 and grid.counts[9, 9] == 1 and grid.counts[5, 5] == 1
    assert np.allclose(grid.x, np.arange(10) / 10 + 0.05)
    wide = density_grid(x, y, Viewport(0.0, 2.0, 0.0, 1.0), bins=10)
    assert wide.counts.shape == (5, 10)  # cells stay square on a wide view
