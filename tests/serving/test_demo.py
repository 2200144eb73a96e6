"""The README demo's last step: example calls for a buyer in the snapshot."""

import pyarrow as pa
import pyarrow.parquet as pq

from serving.demo import example_buyer, example_calls


def test_example_buyer_comes_from_the_snapshot(tmp_path):
    path = tmp_path / "snapshot.parquet"
    pq.write_table(pa.table({"buyer_id": pa.array([5, 8, 13], pa.int64())}), path)
    assert example_buyer(str(path)) == 13
    assert example_buyer(str(tmp_path / "missing.parquet")) == 1


def test_example_calls_carry_the_key_and_both_services():
    calls = example_calls("http://127.0.0.1:8000", "k3y", 42)
    assert calls.count("X-API-Key: k3y") == 4
    # the same buyer asks to ship a small and a large presale early, then for a fast refund
    assert calls.count('"service": "presale_ship_before_balance"') == 2 and '"service": "fast_refund"' in calls
    assert '"amount": 300' in calls and '"amount": 4900' in calls and "balance_due_at" in calls
    assert "/v1/buyers/42/rating" in calls
