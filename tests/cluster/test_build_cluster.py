"""The signal build on a LocalCluster(2): identical signals on an export whose devices
cross shards, and never a partial output file."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features import build, build_cli, build_cluster, cluster, io, registry, signals_devices
from features.signals_devices import SHARED_DEVICES
from tests.cluster.conftest import DEVICE_TABLES, killer, local_client

AS_OF = "2023-07-01,2023-12-01"


@pytest.fixture(scope="module")
def in_process(cross_shard_export: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("signals") / "in_process.parquet"
    args = argparse.Namespace(data=cross_shard_export, as_of=AS_OF, out=out, buyers_limit=None, cluster=None)
    assert build_cli.run(args) == 0
    return out


def test_the_export_has_devices_crossing_shards_that_change_signals(cross_shard_export, in_process):
    parts = io.shard_parts(cross_shard_export)
    assert len(parts) == 8 and -(-len(parts) // build_cluster.SHARDS_PER_BUCKET) >= 2
    uses = pd.concat(
        [
            io.read_table(cross_shard_export, name, part=k)[["device_id"]].assign(part=k)
            for name in DEVICE_TABLES
            for k in parts
        ]
    ).dropna()
    assert (uses.groupby("device_id")["part"].nunique() > 1).sum() >= 20
    # without the cross-shard index (each shard alone) device signals come out different
    alone = pd.concat(
        [
            build.build_signals(tables, build.make_spine(tables["buyers"], build.parse_dates(AS_OF)))
            for tables in (io.load_tables(cross_shard_export, part=k) for k in parts)
        ],
        ignore_index=True,
    )
    whole = pd.read_parquet(in_process)
    device = [s.name for s in registry.signals() if s.table == SHARED_DEVICES.name]
    assert device
    differs = ~np.isclose(alone[device].to_numpy(), whole[device].to_numpy(), equal_nan=True)
    assert differs.any(axis=1).sum() >= 20


def test_cluster_build_is_identical_to_the_in_process_build(cross_shard_export, in_process, tmp_path):
    out = tmp_path / "cluster.parquet"
    args = argparse.Namespace(
        data=cross_shard_export, as_of=AS_OF, out=out, buyers_limit=None, cluster="local:2"
    )
    assert build_cli.run(args) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(in_process), check_exact=True)
    assert out.read_bytes() == in_process.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cluster.parquet"]


def test_a_worker_killed_mid_build_is_recovered_with_identical_signals(
    cross_shard_export, in_process, tmp_path
):
    out = tmp_path / "cluster.parquet"
    with local_client() as client:
        client.register_plugin(killer(tmp_path / "killed", "signals-part-", once=True))
        rows = build_cli.write_signals(cross_shard_export, build.parse_dates(AS_OF), out, client=client)
    assert (tmp_path / "killed").exists()
    assert rows == len(pd.read_parquet(in_process))
    assert out.read_bytes() == in_process.read_bytes()


def test_workers_dying_every_time_fail_cleanly_without_output(cross_shard_export, tmp_path):
    out = tmp_path / "cluster.parquet"
    with local_client(allowed_failures=1) as client:
        client.register_plugin(killer(tmp_path / "kills", "signals-part-", once=False))
        # the scheduler blames the tasks it had placed on the dying worker: the build task, or a
        # piece of the shuffle queued there beside it
        with pytest.raises(cluster.WorkerLost, match="task '(signals-part|shared-piece|device-piece)-"):
            build_cli.write_signals(cross_shard_export, build.parse_dates(AS_OF), out, client=client)
    assert len((tmp_path / "kills").read_text().splitlines()) >= 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kills"]  # no output, no temp file, no parts


@pytest.mark.parametrize("buckets", [1, 3, 8])
def test_device_shuffle_steps_equal_the_whole_index(cross_shard_export, buckets):
    parts = io.shard_parts(cross_shard_export)
    first_use = [
        signals_devices.device_first_use(
            {name: io.read_table(cross_shard_export, name, part=k) for name in DEVICE_TABLES}
        ).assign(part=k)
        for k in parts
    ]
    whole = signals_devices.shared_devices(pd.concat(first_use, ignore_index=True).drop(columns="part"))
    mapped = [signals_devices.split_by_device(f, buckets) for f in first_use]
    reduced = [
        signals_devices.split_by_part(pd.concat([m[j] for m in mapped], ignore_index=True), parts)
        for j in range(buckets)
    ]
    for i, k in enumerate(parts):
        got = signals_devices.gather_shared([r[i] for r in reduced])
        owned = whole[whole["buyer_id"].between(k * 100 + 1, (k + 1) * 100)].reset_index(drop=True)
        assert len(owned) > 0
        pd.testing.assert_frame_equal(got, owned, check_exact=True)


def test_a_shard_breaking_the_contract_fails_the_build_with_its_problems(
    cross_shard_export, tmp_path, capsys
):
    data = tmp_path / "export"
    shutil.copytree(cross_shard_export, data)
    (data / "buyers" / "part-00002.parquet").unlink()
    out = tmp_path / "signals.parquet"
    args = argparse.Namespace(data=data, as_of=AS_OF, out=out, buyers_limit=None, cluster="local:2")
    assert build_cli.run(args) == 1
    assert "raw data breaks the contract" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]
