"""Synthetic traffic: periodic speeds on a random road graph with travelling congestion waves.

Generated offline and deterministically from a seed; used by ``demo`` and the fast tests. The
registered dataset ``synthetic`` is ``generated``: it has no folder and nothing to download. The
signal has what real loop data has and what a good model must use:

* a daily profile with morning and evening rush hours, lighter on weekends (weekly period);
* congestion waves: a jam starts at a random sensor and travels upstream along the road graph,
  reaching a sensor ``k`` hops away ``k * hop_delay`` steps later, so neighbours' recent speeds
  predict a sensor's near future;
* sensor-specific free-flow speeds and measurement noise.
"""

from __future__ import annotations

import numpy as np

from pentad_traffic.data.core import STEPS_PER_DAY_5MIN, TrafficData
from pentad_traffic.registry import DATASETS


def random_road_graph(num_nodes: int, rng: np.random.Generator, neighbours: int = 3) -> np.ndarray:
    """A connected, symmetric road graph: sensors on a plane linked to their nearest neighbours.

    Returns:
        ``(N, N)`` float32 weights in ``(0, 1]`` (Gaussian kernel of distance), 1 on the diagonal.
    """
    points = rng.uniform(0.0, 1.0, size=(num_nodes, 2))
    distance = np.linalg.norm(points[:, None] - points[None], axis=-1)
    links = np.zeros((num_nodes, num_nodes), dtype=bool)
    order = np.argsort(distance, axis=1)[:, 1 : neighbours + 1]
    links[np.repeat(np.arange(num_nodes), order.shape[1]), order.ravel()] = True
    for node in range(1, num_nodes):  # a chain through a random order keeps the graph connected
        links[node - 1, node] = True
    links |= links.T
    sigma = distance[links].std() if links.any() else 1.0
    weights = np.where(links, np.exp(-np.square(distance / max(sigma, 1e-6))), 0.0)
    np.fill_diagonal(weights, 1.0)
    return weights.astype(np.float32)


def hop_distances(adjacency: np.ndarray) -> np.ndarray:
    """``(N, N)`` shortest path lengths in hops (breadth-first search on edges with weight > 0)."""
    num_nodes = adjacency.shape[0]
    linked = adjacency > 0
    hops = np.full((num_nodes, num_nodes), np.iinfo(np.int64).max, dtype=np.int64)
    for source in range(num_nodes):
        frontier = np.zeros(num_nodes, dtype=bool)
        frontier[source] = True
        seen = frontier.copy()
        depth = 0
        while frontier.any():
            hops[source, frontier] = depth
            frontier = linked[frontier].any(axis=0) & ~seen
            seen |= frontier
            depth += 1
    return hops


def generate_synthetic(
    num_nodes: int = 20,
    num_days: int = 7,
    steps_per_day: int = STEPS_PER_DAY_5MIN,
    waves_per_day: float = 6.0,
    hop_delay: int = 2,
    noise: float = 1.0,
    seed: int = 0,
) -> TrafficData:
    """Generate a synthetic speed table.

    Args:
        num_nodes: Number of sensors ``N``.
        num_days: Length of the series in days (starts on a Monday at midnight).
        steps_per_day: Samples per day (288 = 5-minute steps).
        waves_per_day: Mean number of congestion waves started per day.
        hop_delay: Steps a wave needs to travel one hop.
        noise: Standard deviation of the measurement noise in mph.
        seed: Random seed; equal seeds give equal data.

    Returns:
        A :class:`TrafficData` named ``"synthetic"`` with speeds in mph.
    """
    rng = np.random.default_rng(seed)
    adjacency = random_road_graph(num_nodes, rng)
    hops = hop_distances(adjacency)
    num_steps = num_days * steps_per_day
    step = np.arange(num_steps)
    hour = (step % steps_per_day) * 24.0 / steps_per_day
    weekday = (step // steps_per_day) % 7 < 5

    free_flow = rng.uniform(55.0, 68.0, size=num_nodes)
    rush_depth = rng.uniform(8.0, 25.0, size=(2, num_nodes))
    rush_hours = np.stack([rng.normal(8.0, 0.4, num_nodes), rng.normal(17.5, 0.4, num_nodes)])
    rush = np.zeros((num_steps, num_nodes))
    for k in range(2):
        rush += rush_depth[k] * np.exp(-0.5 * np.square((hour[:, None] - rush_hours[k]) / 1.1))
    rush *= np.where(weekday, 1.0, 0.35)[:, None]
    speeds = free_flow - rush

    num_waves = rng.poisson(waves_per_day * num_days)
    for _ in range(num_waves):
        origin = rng.integers(num_nodes)
        start = rng.integers(num_steps)
        depth = rng.uniform(10.0, 25.0)
        duration = rng.uniform(6.0, 18.0)
        reach = rng.integers(2, 6)
        for node in np.flatnonzero(hops[origin] <= reach):
            arrival = start + hops[origin, node] * hop_delay
            shape = np.exp(-0.5 * np.square((step - arrival - duration / 2) / (duration / 2.5)))
            speeds[:, node] -= depth * (0.8 ** hops[origin, node]) * shape

    speeds += rng.normal(0.0, noise, size=speeds.shape)
    speeds = np.clip(speeds, 3.0, 75.0).astype(np.float32)
    return TrafficData(
        name="synthetic",
        speeds=speeds,
        adjacency=adjacency,
        sensor_ids=[f"s{i:03d}" for i in range(num_nodes)],
        steps_per_day=steps_per_day,
        start_step=0,
        source=f"generated (seed {seed})",
    )


@DATASETS.register("synthetic", generated=True)
def load_synthetic(num_nodes: int = 20, num_days: int = 7, seed: int = 0) -> TrafficData:
    """Generated offline: periodic speeds with congestion waves travelling along a random road graph.

    Args:
        num_nodes: Number of sensors.
        num_days: Length of the series in days.
        seed: Random seed; equal seeds give equal data.
    """
    return generate_synthetic(num_nodes=num_nodes, num_days=num_days, seed=seed)
