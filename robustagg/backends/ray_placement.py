"""Placing k actors across a Ray cluster's nodes with a placement group (Ray's public API).

A ``SPREAD`` placement group of k one-actor bundles puts the bundles on as many different
nodes as the cluster has (several per node when k exceeds the nodes); each actor is then
scheduled into its own bundle. Used for the shards of a sharded parameter server, so that on a
multi-node cluster each node holds and aggregates its slice of the model.
"""
from __future__ import annotations


def spread(k: int, resources: dict, timeout_s: float = 120.0):
    """A ready ``SPREAD`` placement group of k bundles of ``resources`` each (e.g.
    ``{"memory": 2**26}``). Raises ``TimeoutError`` naming the request when the cluster cannot
    place it in ``timeout_s`` seconds."""
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    pg = placement_group([dict(resources)] * k, strategy="SPREAD")
    ready, _ = ray.wait([pg.ready()], timeout=timeout_s)
    if not ready:
        remove_placement_group(pg)
        raise TimeoutError(f"placement group of {k} bundles of {resources} not placed within "
                           f"{timeout_s} s; free resources: {ray.available_resources()}")
    return pg


def bundle(pg, index: int) -> dict:
    """Actor options scheduling it into bundle ``index`` of ``pg``."""
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    return {"scheduling_strategy": PlacementGroupSchedulingStrategy(
        placement_group=pg, placement_group_bundle_index=index)}


def remove(pg) -> None:
    """Release the group's reservation (its actors should be killed first)."""
    from ray.util.placement_group import remove_placement_group

    remove_placement_group(pg)
