"""What the map draws at 1M features: past POINT_LIMIT points in view, a density grid of everything in
view plus the POINT_LIMIT most telling points (search matches first, then a random but fixed subset), so
the browser gets a few MB, not 100; zoom in (a box) and every point in the box is drawn.

Pure numpy, no Streamlit: the views in ui/map_view.py turn a MapPlan into Plotly traces."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backend.errors import UserError

POINT_LIMIT = 30_000  # points sent to the browser at most (WebGL draws more, the page's JSON is the limit)
GRID_BINS = 160  # density grid cells along the longer side


@dataclass(frozen=True)
class Viewport:
    """A rectangle of map coordinates; the URL carries it as `view=x0,x1,y0,y1`."""

    x0: float
    x1: float
    y0: float
    y1: float

    @classmethod
    def parse(cls, text: str) -> Viewport:
        try:
            x0, x1, y0, y1 = (float(v) for v in text.split(","))
        except ValueError:
            raise UserError(f"The link's 'view' must be four numbers x0,x1,y0,y1, not '{text}'.") from None
        if not all(np.isfinite([x0, x1, y0, y1])) or x0 >= x1 or y0 >= y1:
            raise UserError(f"The link's 'view' must be four finite numbers with x0 < x1 and y0 < y1, not '{text}'.")
        return cls(x0, x1, y0, y1)

    @classmethod
    def from_box(cls, box: dict) -> Viewport | None:
        """Plotly's box selection ({"x": [a, b], "y": [c, d]}) as a viewport; None when it is not a box."""
        try:
            xs, ys = [float(v) for v in box["x"]], [float(v) for v in box["y"]]
        except (KeyError, TypeError, ValueError):
            return None
        if len(xs) < 2 or len(ys) < 2 or min(xs) == max(xs) or min(ys) == max(ys):
            return None
        return cls(min(xs), max(xs), min(ys), max(ys))

    @classmethod
    def around(cls, x: np.ndarray, y: np.ndarray) -> Viewport:
        """The smallest box holding all points, with a small margin (the whole map)."""
        if len(x) == 0:
            return cls(-1.0, 1.0, -1.0, 1.0)
        pad_x, pad_y = max(float(np.ptp(x)) * 0.02, 1e-3), max(float(np.ptp(y)) * 0.02, 1e-3)
        return cls(float(x.min()) - pad_x, float(x.max()) + pad_x, float(y.min()) - pad_y, float(y.max()) + pad_y)

    def contains(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return (x >= self.x0) & (x <= self.x1) & (y >= self.y0) & (y <= self.y1)

    def __str__(self) -> str:
        return ",".join(f"{v:.4g}" for v in (self.x0, self.x1, self.y0, self.y1))


@dataclass(frozen=True)
class DensityGrid:
    """Feature counts per cell of a regular grid over the viewport (cell centres in map coordinates)."""

    x: np.ndarray  # [nx] cell centres
    y: np.ndarray  # [ny]
    counts: np.ndarray  # [ny, nx] int64 (rows are y, as Plotly's heatmap wants)


@dataclass(frozen=True)
class MapPlan:
    drawn: np.ndarray  # indices (into the points' arrays) of the points to draw, in drawing order
    in_view: np.ndarray  # indices of every eligible point inside the viewport
    viewport: Viewport
    grid: DensityGrid | None  # only when decimated

    @property
    def decimated(self) -> bool:
        return len(self.drawn) < len(self.in_view)


def plan_map(x: np.ndarray, y: np.ndarray, eligible: np.ndarray, viewport: Viewport | None,
             first: np.ndarray | None = None, limit: int = POINT_LIMIT, seed: int = 0) -> MapPlan:
    """Which points to draw. `eligible` masks the points shown at all (e.g. live ones), `first` the points
    that must be drawn before the others when decimating (search matches)."""
    view = viewport or Viewport.around(x[eligible], y[eligible])
    in_view = np.flatnonzero(eligible & view.contains(x, y))
    if len(in_view) <= limit:
        return MapPlan(in_view, in_view, view, None)
    # a fixed random priority per point: the same points stay when zooming, no flicker between reruns
    priority = np.random.default_rng(seed).random(len(x))[in_view]
    if first is not None:
        priority = priority - first[in_view].astype(np.float64)  # matches sort before everything else
    drawn = np.sort(in_view[np.argpartition(priority, limit - 1)[:limit]])
    return MapPlan(drawn, in_view, view, density_grid(x[in_view], y[in_view], view))


def density_grid(x: np.ndarray, y: np.ndarray, view: Viewport, bins: int = GRID_BINS) -> DensityGrid:
    width, height = view.x1 - view.x0, view.y1 - view.y0
    nx = max(1, round(bins * min(1.0, width / height)))
    ny = max(1, round(bins * min(1.0, height / width)))
    counts, y_edges, x_edges = np.histogram2d(y, x, bins=(ny, nx), range=((view.y0, view.y1), (view.x0, view.x1)))
    return DensityGrid((x_edges[:-1] + x_edges[1:]) / 2, (y_edges[:-1] + y_edges[1:]) / 2, counts.astype(np.int64))
