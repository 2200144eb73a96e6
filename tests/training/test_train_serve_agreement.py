"""A buyer's signals at an instant are the same in training and at publish, device signals included."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features import io, signals_devices
from features.build import build_shards, export_shared_devices
from features.registry import signals
from simulator.config import RunConfig
from simulator.write import write_export
from training.dataset import SNAPSHOTS, assemble


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    out = tmp_path_factory.mktemp("sharded")
    write_export(RunConfig(buyers=900, months=14, seed=5, shard_size=300), out)
    # the simulator draws devices within a shard; on a real platform they cross shards: make some do
    donors = [
        d
        for d in pq.read_table(out / "orders" / "part-00000.parquet")["device_id"].to_pylist()
        if d is not None
    ]
    donors = list(dict.fromkeys(donors))[:40]
    path = out / "orders" / "part-00001.parquet"
    table = pq.read_table(path)
    devices = table["device_id"].to_pylist()
    devices[: len(donors)] = donors
    column = table.schema.get_field_index("device_id")
    pq.write_table(
        table.set_column(
            column, table.schema.field(column), pa.array(devices, table.schema.field(column).type)
        ),
        path,
    )
    return out


def test_devices_cross_shards_in_this_export(export):
    whole = export_shared_devices(export)
    per_shard = pd.concat(
        [
            signals_devices.shared_devices(
                signals_devices.device_first_use(
                    {n: io.read_table(export, n, part=k) for n in ("account_events", "orders")}
                )
            )
            for k in io.shard_parts(export)
        ],
        ignore_index=True,
    )
    assert len(io.shard_parts(export)) == 3
    assert len(whole) > len(per_shard)  # a shard alone misses devices shared with other shards


def test_training_and_publish_build_the_same_signals(export):
    as_of = pd.Timestamp("2024-01-01", tz="UTC")
    trained = assemble(export, [as_of])[SNAPSHOTS].sort_values("buyer_id").reset_index(drop=True)
    published = (
        pd.concat(list(build_shards(export, [as_of])), ignore_index=True)
        .sort_values("buyer_id")
        .reset_index(drop=True)
    )
    assert trained["buyer_id"].tolist() == published["buyer_id"].tolist()
    names = [s.name for s in signals()]
    for name in names:
        np.testing.assert_array_equal(trained[name].to_numpy(), published[name].to_numpy(), err_msg=name)
    device = [n for n in names if "device" in n]
    assert device and any(published[n].fillna(0).gt(0).any() for n in device)
