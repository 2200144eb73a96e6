"""``python -m serving.publish`` end to end: simulated export -> snapshot -> service decisions."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from serving.publish import main
from serving.snapshot import FileSnapshot

KEY = {"X-API-Key": "test-key"}


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    out = tmp_path_factory.mktemp("market") / "export"
    cmd = [sys.executable, "-m", "simulator", "generate", "--buyers", "300", "--months", "6", "--seed", "5"]
    subprocess.run([*cmd, "--shard-size", "150", "--out", str(out), "--quiet"], check=True)
    return out


@pytest.fixture(scope="module")
def registry_model(tmp_path_factory) -> tuple[str, list[str]]:
    """A tiny real model over real registry signals, policy signals included."""
    from bench.tiny import save_tiny_rating
    from features.registry import signal_names

    policy = [
        "balances_unpaid_7d_count_365d",
        "balances_overdue_open",
        "violations_confirmed_fraud_count_all",
        "reviews_malicious_count_365d",
    ]
    names = [n for n in signal_names() if n not in policy][:8] + policy
    return save_tiny_rating(tmp_path_factory.mktemp("model") / "rating", names, seed=1), names


def test_publish_file_matches_the_batch_builder(export, registry_model, tmp_path, capsys):
    uri, names = registry_model
    out = tmp_path / "snapshot.parquet"
    assert main(["--data", str(export), "--model-uri", uri, "--out", str(out)]) == 0
    assert "published" in capsys.readouterr().out
    snap = FileSnapshot.load(out)
    assert snap.meta.signal_names == tuple(names)
    assert snap.meta.as_of.startswith("2023-07-01")

    from features import io
    from features.build import build_signals, make_spine

    tables = io.load_tables(export)
    spine = make_spine(tables["buyers"], [pd.Timestamp(snap.meta.as_of)])
    assert snap.meta.n_buyers == len(spine)
    batch = build_signals(tables, spine)
    some = batch["buyer_id"].to_numpy()[::37]
    for buyer in some:
        expected = batch.loc[batch["buyer_id"] == buyer, names].to_numpy(dtype=np.float32)[0]
        np.testing.assert_allclose(snap.row(int(buyer)), expected, rtol=1e-6, equal_nan=True)


def test_published_file_carries_exact_reasons_the_service_uses(
    make_app, export, registry_model, tmp_path, config
):
    uri, names = registry_model
    out = tmp_path / "snapshot.parquet"
    assert main(["--data", str(export), "--model-uri", uri, "--out", str(out)]) == 0
    snap = FileSnapshot.load(out)
    assert snap.meta.reasons_model == f"uri:{uri}" and snap.reasons is not None
    app = make_app(config | {"model_uri": uri, "snapshot": str(out)})
    live = app.extensions["buyer_trust"].runtime.live
    model = live.rating.model
    rows = np.arange(0, len(snap.buyer_ids), 11)
    exact = model.booster.predict(snap.matrix[rows], pred_contrib=True)[:, :-1]
    points = model.reason_points(exact)  # the reason catalogue's score points (registry signals)
    assert model.catalogue is not None and points.shape[1] == len(model.catalogue.codes)
    for r, row_points in zip(rows, points, strict=True):
        got = live.rate(int(snap.buyer_ids[r])).reasons
        order = [j for j in np.argsort(-row_points, kind="stable") if row_points[j] > 0][: len(got)]
        assert [g.code for g in got] == [model.reason_entry(j)[0] for j in order]
        np.testing.assert_allclose([g.contribution for g in got], row_points[order], rtol=1e-4)


def test_exact_reasons_of_another_model_are_ignored(make_app, export, registry_model, tmp_path, config):
    uri, _ = registry_model
    out = tmp_path / "snapshot.parquet"
    assert main(["--data", str(export), "--model-uri", uri, "--out", str(out), "--no-exact-reasons"]) == 0
    plain = FileSnapshot.load(out)
    assert plain.reasons is None
    from serving.snapshot import FileWriter

    forged = tmp_path / "forged.parquet"
    writer = FileWriter(
        forged, list(plain.meta.signal_names), plain.meta.as_of, reasons_model="run:another-model"
    )
    k = 10
    writer.append(
        plain.buyer_ids,
        plain.matrix,
        (np.zeros((len(plain.buyer_ids), k), np.int16), np.ones((len(plain.buyer_ids), k), np.float32)),
    )
    writer.commit()
    live = (
        make_app(config | {"model_uri": uri, "snapshot": str(forged)}).extensions["buyer_trust"].runtime.live
    )
    buyer = int(plain.buyer_ids[3])
    want = live.rating.model.reasons(plain.matrix[3], k=live.policy.max_reasons)
    assert [r.code for r in live.rate(buyer).reasons] == [r.code for r in want]


def test_published_snapshot_serves_decisions(make_app, export, registry_model, tmp_path, config):
    uri, _ = registry_model
    out = tmp_path / "snapshot.parquet"
    assert main(["--data", str(export), "--model-uri", uri, "--out", str(out)]) == 0
    app = make_app(config | {"model_uri": uri, "snapshot": str(out)})
    client = app.test_client()
    assert client.get("/readyz").status_code == 200
    buyer = int(FileSnapshot.load(out).buyer_ids[0])
    rating = client.get(f"/v1/buyers/{buyer}/rating", headers=KEY).json
    assert rating["rated"] and 1 <= rating["star"] <= 5
    body = {
        "request_id": "pub-1",
        "service": "fast_refund",
        "buyer_id": buyer,
        "refund": {
            "refund_id": 1,
            "order_id": 1,
            "amount": 20,
            "reason": "damaged",
            "kind": "refund_only",
            "evidence_photos": 0,
            "order_amount": 40,
            "category": "apparel",
            "ordered_at": "2025-06-01T00:00:00Z",
        },
    }
    answer = client.post("/v1/decisions", json=body, headers=KEY).json
    assert answer["decision"] in ("approve", "decline") and answer["star"] == rating["star"]


def test_publish_without_a_model_fails_clearly(export, tmp_path, capsys):
    code = main(
        ["--data", str(export), "--model-uri", str(tmp_path / "none"), "--out", str(tmp_path / "s.parquet")]
    )
    assert code == 1
    assert "--all-signals" in capsys.readouterr().err


def test_bad_as_of(export, tmp_path):
    assert (
        main(["--data", str(export), "--all-signals", "--as-of", "yesterday", "--out", str(tmp_path / "s")])
        == 2
    )
