"""The commands that read a raw export check it against the contract before anything else reads it:
an export whose ``orders`` lack ``buyer_id`` stops ``python -m serving.publish`` and ``python -m
serving backtest`` with exit 2 and a message naming ``orders.buyer_id`` (as ``python -m features
validate`` does), not with a traceback from the first step that needed the column."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from simulator.config import RunConfig
from simulator.write import write_export

POLICY_SIGNALS = [
    "balances_unpaid_7d_count_365d",
    "balances_overdue_open",
    "violations_confirmed_fraud_count_all",
    "reviews_malicious_count_365d",
]


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    """Two shards; the second shard's ``orders`` part has no ``buyer_id`` column."""
    out = tmp_path_factory.mktemp("market") / "export"
    write_export(RunConfig(buyers=300, months=6, seed=5, shard_size=150), out)
    part = out / "orders" / "part-00001.parquet"
    pq.write_table(pq.read_table(part).drop(["buyer_id"]), part)
    return out


@pytest.fixture(scope="module")
def model_uri(tmp_path_factory) -> str:
    """A tiny real model over registry signals, the shipped policy's signals included."""
    from bench.tiny import save_tiny_rating
    from features.registry import signal_names

    names = [n for n in signal_names() if n not in POLICY_SIGNALS][:8] + POLICY_SIGNALS
    return save_tiny_rating(tmp_path_factory.mktemp("model") / "rating", names, seed=1)


def test_features_validate_names_the_missing_column(export, capsys):
    from features.__main__ import main

    assert main(["validate", str(export)]) == 2
    assert "orders.buyer_id: missing_column" in capsys.readouterr().out


def test_publish_stops_before_reading_the_export(export, tmp_path, capsys):
    from serving.publish import main

    out = tmp_path / "snapshot.parquet"
    assert main(["--data", str(export), "--all-signals", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "orders.buyer_id: missing_column" in err
    assert not out.exists() and list(tmp_path.iterdir()) == []  # nothing written, not even a temporary


def test_backtest_stops_before_reading_the_export(export, model_uri, capsys):
    from serving.__main__ import main

    args = ["backtest", "--data", str(export), "--from", "2023-03-01", "--to", "2023-05-01"]
    assert main([*args, "--model-uri", model_uri]) == 2
    assert "orders.buyer_id: missing_column" in capsys.readouterr().err
