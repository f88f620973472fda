"""Scan positions and mini-batch grouping.

Positions are ``(N, 2)`` float64 arrays of (y, x) window top-left corners in object pixels,
in scan order (row-major, fast axis x). An object pixel is the simulation's real-space pixel
``dx`` (Angstrom); positions given in other pixels are rescaled to it by the caller
(``ptyrad_core.setup.initialize.initial_positions``, docs/conventions.md).
"""

from __future__ import annotations

import math

import numpy as np

from ptyrad_core.kernel.errors import DataError


def affine_matrix(scale=1.0, asymmetry=0.0, rotation_deg=0.0, shear_deg=0.0) -> np.ndarray:
    """2 x 2 matrix applied to (y, x) row vectors (``pos @ A``), as PtychoShelves and PtyRAD compose it."""
    r, s = math.radians(rotation_deg), math.radians(shear_deg)
    a1 = np.diag([scale, scale])
    a2 = np.diag([1 + asymmetry / 2, 1 - asymmetry / 2])
    a3 = np.array([[math.cos(r), math.sin(r)], [-math.sin(r), math.cos(r)]])
    a4 = np.array([[1.0, 0.0], [math.tan(s), 1.0]])
    return a1 @ a2 @ a3 @ a4


def raster_positions(
    n_slow: int, n_fast: int, step_px: float, affine: np.ndarray | None = None
) -> np.ndarray:
    """Raster scan ``(n_slow * n_fast, 2)`` centred at 0, optionally distorted by ``affine``."""
    yy, xx = np.meshgrid(np.arange(n_slow), np.arange(n_fast), indexing="ij")
    pos = step_px * np.stack([yy.ravel(), xx.ravel()], axis=1).astype(np.float64)
    pos -= pos.mean(axis=0)
    return pos @ affine if affine is not None else pos


def place_in_object(pos: np.ndarray, window: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    """Shift centred positions into an object canvas 1.2 times the scanned extent (PtyRAD's rule).

    :return: (positions in object pixels, object shape (NY, NX))
    """
    win = np.asarray(window)
    extent = (1.2 * np.ceil(pos.max(0) - pos.min(0) + win)).astype(int)
    shift = extent // 2 - win // 2
    return pos - (pos.max(0) + pos.min(0)) / 2 + shift, (int(extent[0]), int(extent[1]))


def fitting_object_shape(pos: np.ndarray, window: tuple[int, int]) -> tuple[int, int]:
    """The smallest object that holds every window (with one pixel to spare for sub-pixel shifts)."""
    top = np.floor(pos).max(axis=0).astype(int) + np.asarray(window) + 1
    return int(top[0]), int(top[1])


def scanned_region(positions_px: np.ndarray, window: tuple[int, int]) -> tuple[slice, slice]:
    """The box (object pixels) spanned by the probe-window centres: what the scan illuminated best."""
    centres = np.floor(positions_px) + np.asarray(window) // 2
    (y0, x0), (y1, x1) = centres.min(0).astype(int), centres.max(0).astype(int)
    return slice(y0, y1 + 1), slice(x0, x1 + 1)


def scan_step(pos: np.ndarray, max_queries: int = 2048) -> float:
    """The scan step: the median distance from a position to its nearest neighbour, in the units of ``pos``.

    ``pos`` is ``(N, 2)``. Exact for ``N <= max_queries``; for larger scans the median is taken
    over ``max_queries`` evenly spaced positions (each against all ``N``), which bounds the time
    and memory (``max_queries x N`` distances, in blocks). ``nan`` for fewer than two positions.
    """
    pos = np.asarray(pos, dtype=np.float64)
    n = len(pos)
    if n < 2:
        return float("nan")
    queries = np.arange(n) if n <= max_queries else np.linspace(0, n - 1, max_queries).round().astype(int)
    nearest = np.empty(len(queries))
    block = max(1, (1 << 22) // n)  # about 4 M distances at a time
    for start in range(0, len(queries), block):
        q = queries[start : start + block]
        d2 = ((pos[q, None, :] - pos[None, :, :]) ** 2).sum(-1)
        d2[np.arange(len(q)), q] = np.inf
        nearest[start : start + len(q)] = d2.min(1)
    return float(np.sqrt(np.median(nearest)))


def scan_extent(pos: np.ndarray, window: tuple[int, int]) -> tuple[float, float]:
    """Field of view (y, x) covered by the probe windows: ``max - min`` of ``pos`` plus the window, in
    pixels."""
    pos = np.asarray(pos, dtype=np.float64)
    span = pos.max(0) - pos.min(0) + np.asarray(window, dtype=np.float64)
    return float(span[0]), float(span[1])


def check_positions(pos: np.ndarray, window: tuple[int, int], shape: tuple[int, int], source: str) -> None:
    """Every window must lie inside the object."""
    if pos.ndim != 2 or pos.shape[1] != 2:
        raise DataError(f"{source}: positions must have shape (N, 2), got {pos.shape}")
    if not np.isfinite(pos).all():
        raise DataError(f"{source}: positions hold NaN or infinite values")
    low = np.floor(pos).min(axis=0)
    high = np.floor(pos).max(axis=0) + np.asarray(window)
    if (low < 0).any() or high[0] > shape[0] or high[1] > shape[1]:
        raise DataError(
            f"{source}: probe windows ({window[0]} x {window[1]} px) reach object pixels "
            f"y {low[0]:.0f}..{high[0]:.0f}, x {low[1]:.0f}..{high[1]:.0f}, outside the object "
            f"(0..{shape[0]}, 0..{shape[1]}); enlarge model.object.shape or shift the positions"
        )


def flip_grid(
    pos: np.ndarray, scan_shape: tuple[int, int], flipud: bool, fliplr: bool, transpose: bool
) -> np.ndarray:
    """PtyRAD's ``pos_scan_flipT``: reverse the scan order along the slow / fast axis, swap (y, x)."""
    if not (flipud or fliplr or transpose):
        return pos
    grid = pos.reshape(*scan_shape, 2)
    if flipud:
        grid = grid[::-1]
    if fliplr:
        grid = grid[:, ::-1]
    if transpose:
        grid = grid[..., ::-1]
    return np.ascontiguousarray(grid.reshape(-1, 2))


def select_indices(scan_shape: tuple[int, int], mode: str, subscan: tuple[int, int] | None) -> np.ndarray:
    """The scan positions that take part (PtyRAD's INDICES_MODE).

    ``full``: all; ``sub``: an evenly spaced ``subscan`` grid over the whole field (every other
    position for half); ``center``: the central ``subscan`` block. ``subscan`` defaults to half
    of each scan dimension.
    """
    n_slow, n_fast = scan_shape
    if mode == "full":
        return np.arange(n_slow * n_fast)
    s_slow, s_fast = subscan if subscan is not None else (n_slow // 2, n_fast // 2)
    if not (1 <= s_slow <= n_slow and 1 <= s_fast <= n_fast):
        raise DataError(f"recon.indices.subscan {subscan} must lie within the scan ({n_slow}, {n_fast})")
    grid = np.arange(n_slow * n_fast).reshape(n_slow, n_fast)
    if mode == "center":
        y0, x0 = (n_slow - s_slow) // 2, (n_fast - s_fast) // 2
        return grid[y0 : y0 + s_slow, x0 : x0 + s_fast].ravel()
    rows = np.linspace(0, n_slow - 1, s_slow).astype(int)
    cols = np.linspace(0, n_fast - 1, s_fast).astype(int)
    return grid[np.ix_(rows, cols)].ravel()


# --------------------------------------------------------------------------------------------
# grouping
# --------------------------------------------------------------------------------------------


def _hilbert_keys(pos: np.ndarray, order: int = 16) -> np.ndarray:
    """Hilbert-curve index of each position (vectorised)."""
    span = np.ptp(pos, axis=0)
    norm = (pos - pos.min(0)) / np.where(span > 0, span, 1)
    n = 1 << order
    x = (norm[:, 1] * (n - 1)).astype(np.int64)
    y = (norm[:, 0] * (n - 1)).astype(np.int64)
    d = np.zeros(len(pos), dtype=np.int64)
    s = n >> 1
    while s > 0:
        rx = (x & s) > 0
        ry = (y & s) > 0
        d += s * s * ((3 * rx) ^ ry)
        flip = ~ry & rx
        x = np.where(flip, n - 1 - x, x)
        y = np.where(flip, n - 1 - y, y)
        swap = ~ry
        x, y = np.where(swap, y, x), np.where(swap, x, y)
        s >>= 1
    return d


def _kmeans_groups(
    pos: np.ndarray, n_groups: int, rng: np.random.Generator, iters: int = 20
) -> list[np.ndarray]:
    """Spatially compact groups: Lloyd's k-means seeded along the Hilbert curve."""
    order = np.argsort(_hilbert_keys(pos), kind="stable")
    centres = np.array([pos[chunk].mean(0) for chunk in np.array_split(order, n_groups)])
    labels = np.zeros(len(pos), dtype=np.int64)
    for _ in range(iters):
        d2 = ((pos[:, None, :] - centres[None]) ** 2).sum(-1)
        labels = d2.argmin(1)
        for g in range(n_groups):
            members = pos[labels == g]
            centres[g] = members.mean(0) if len(members) else pos[rng.integers(len(pos))]
    return [np.flatnonzero(labels == g) for g in range(n_groups) if (labels == g).any()]


def _fps_groups(pos: np.ndarray, n_groups: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Farthest-point-sampling partition of ``pos`` ``(N, 2)`` into ``n_groups`` groups (PtyRAD's ``fps``).

    A greedy maximin partition: every group grows in turn (round robin) by the not yet assigned
    position farthest from the group's own members, so the positions of a group are as far
    apart as the greedy choice makes them. Bookkeeping, as PtyRAD's ``sparse_sampler_fps``: a
    ``(G, N)`` table of each position's squared distance to the nearest member of each group,
    with assigned positions marked -1. The group seeds are themselves chosen by farthest-point
    sampling (the first one at random from ``rng``, each next one farthest from all seeds so
    far), so the groups start spread over the field; PtyRAD takes every seed farthest from the
    first group only. Ties go to the lowest index, so the result depends only on ``pos``,
    ``n_groups`` and ``rng``. Group sizes differ by at most one.

    Cost: ``O(N^2)`` time and ``4 G N`` bytes (65536 positions in groups of 32: 512 MiB); the
    table drops assigned columns whenever they are half of it.
    """
    n = len(pos)
    if n_groups <= 1:
        return [np.arange(n)]
    if n_groups >= n:
        return [np.array([i]) for i in range(n)]
    centred = np.asarray(pos, dtype=np.float64) - np.asarray(pos, dtype=np.float64).mean(0)
    py, px = centred[:, 0].astype(np.float32), centred[:, 1].astype(np.float32)
    ids = np.arange(n)  # original index of each table column
    table = np.empty((n_groups, n), dtype=np.float32)
    groups: list[list[int]] = [[] for _ in range(n_groups)]

    def dist2(col: int) -> np.ndarray:
        dy, dx = py - py[col], px - px[col]
        return dy * dy + dx * dx

    seed_dist = np.full(n, np.inf, dtype=np.float32)
    col = int(rng.integers(n))
    seeds = []
    for g in range(n_groups):
        d2 = dist2(col)
        table[g] = d2
        np.minimum(seed_dist, d2, out=seed_dist)
        seeds.append(col)
        groups[g].append(col)
        seed_dist[seeds] = -1.0
        col = int(np.argmax(seed_dist))
    table[:, seeds] = -1.0
    assigned_in_table = len(seeds)
    for count in range(n_groups, n):
        g = count % n_groups
        row = table[g]
        col = int(np.argmax(row))
        groups[g].append(int(ids[col]))
        np.minimum(row, dist2(col), out=row)
        table[:, col] = -1.0
        assigned_in_table += 1
        width = table.shape[1]
        if width > 1024 and 2 * assigned_in_table >= width:  # drop assigned columns
            keep = table[0] >= 0
            table, py, px, ids = np.ascontiguousarray(table[:, keep]), py[keep], px[keep], ids[keep]
            assigned_in_table = 0
    return [np.asarray(members, dtype=np.int64) for members in groups]


def make_batches(
    pos: np.ndarray, indices: np.ndarray, batch_size: int, mode: str, rng: np.random.Generator
) -> list[np.ndarray]:
    """Split ``indices`` into mini-batches of about ``batch_size`` positions.

    ``random``: a fresh random partition; ``spread``: each batch takes every G-th position
    along a Hilbert curve, so its positions are spread over the field of view; ``fps``:
    farthest-point sampling, each batch grown greedily by the position farthest from its
    members (:func:`_fps_groups`; mutually farther apart than ``spread``'s, at ``O(N^2)`` cost);
    ``compact``: k-means clusters of neighbouring positions. ``pos`` ``(N, 2)`` (unused for
    ``random``), ``indices`` into it; every index lands in exactly one batch.
    """
    n_groups = max(1, len(indices) // batch_size)
    if mode == "random":
        return np.array_split(rng.permutation(indices), n_groups)
    sub = pos[indices]
    if mode == "spread":
        order = np.argsort(_hilbert_keys(sub), kind="stable")
        return [indices[order[g::n_groups]] for g in range(n_groups)]
    if mode == "fps":
        return [indices[g] for g in _fps_groups(sub, n_groups, rng)]
    if mode == "compact":
        return [indices[g] for g in _kmeans_groups(sub, n_groups, rng)]
    raise ValueError(f"unknown grouping {mode!r}: expected random, spread, fps or compact")
