"""Request bodies: decision requests over a snapshot's buyers, and ``mlflow models serve`` rows of their signals."""

from __future__ import annotations

import json

import numpy as np


def decision_bodies(buyers: np.ndarray, n: int, rng: np.random.Generator, run: str) -> list[bytes]:
    """``n`` decision bodies over random buyers, half presale, half fast refund, unique request ids."""
    out = []
    for i in range(n):
        buyer = int(rng.choice(buyers))
        if i % 2 == 0:
            amount = float(rng.integers(50, 3000))
            body = {
                "request_id": f"{run}-{i}",
                "service": "presale_ship_before_balance",
                "buyer_id": buyer,
                "order": {
                    "order_id": i,
                    "amount": amount,
                    "currency": "CNY",
                    "category": "beauty",
                    "deposit_amount": round(amount * 0.1, 2),
                    "balance_due_at": "2030-11-11T00:00:00Z",
                },
            }
        else:
            body = {
                "request_id": f"{run}-{i}",
                "service": "fast_refund",
                "buyer_id": buyer,
                "refund": {
                    "refund_id": i,
                    "order_id": i,
                    "amount": float(rng.integers(10, 400)),
                    "reason": "damaged",
                    "kind": "return_and_refund",
                    "evidence_photos": 1,
                    "order_amount": 400.0,
                    "category": "apparel",
                    "ordered_at": "2025-06-01T00:00:00Z",
                },
            }
        out.append(json.dumps(body).encode())
    return out


def mlflow_bodies(
    snapshot, names: list[str], buyers: np.ndarray, n: int, rng: np.random.Generator
) -> list[bytes]:
    """``n`` one-row ``dataframe_split`` bodies of the chosen buyers' signals."""
    position = {name: j for j, name in enumerate(snapshot.meta.signal_names)}
    columns = [position[name] for name in names]
    cache: dict[int, bytes] = {}
    out = []
    for _ in range(n):
        buyer = int(rng.choice(buyers[:2000]))
        if buyer not in cache:
            row = snapshot.row(buyer)[columns]
            values = [None if not np.isfinite(v) else float(v) for v in row]
            cache[buyer] = json.dumps({"dataframe_split": {"columns": names, "data": [values]}}).encode()
        out.append(cache[buyer])
    return out
