"""The online snapshot copied into Redis for the per-request scoring target (d), and removed after it."""

from __future__ import annotations

import numpy as np


def publish_redis(url: str, prefix: str, snapshot, names: list[str]) -> None:
    """Copy the file snapshot's rows (the model's signals) into Redis under ``prefix``."""
    from serving.snapshot import RedisWriter

    position = {name: j for j, name in enumerate(snapshot.meta.signal_names)}
    columns = [position[name] for name in names]
    writer = RedisWriter(url, prefix, names, snapshot.meta.as_of)
    ids = np.asarray(snapshot.buyer_ids)
    for start in range(0, len(ids), 5000):
        chunk = ids[start : start + 5000]
        writer.append(chunk, np.stack([snapshot.row(int(b))[columns] for b in chunk]))
    writer.commit()


def drop_redis(url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"{prefix}*", count=5000))
    for start in range(0, len(keys), 5000):
        client.delete(*keys[start : start + 5000])
