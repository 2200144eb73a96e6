"""``python -m serving.publish --cluster`` on a LocalCluster(2): the same snapshot as in-process
(file: ids, signals, exact reasons; Redis on the real server at 127.0.0.1:6379, which must be
running), and a worker killed mid-publish never leaves a committed partial version or a file."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest
import redis

from features import cluster, io, registry
from features.signals_devices import SHARED_DEVICES
from serving import publish as publish_cli
from serving.snapshot import (
    FileSnapshot,
    RedisSnapshot,
    RedisWriter,
    SnapshotMeta,
    abort_key,
    meta_key,
    rows_prefix,
)
from tests.cluster.conftest import killer, local_client
from tests.serving.test_snapshot import REDIS_URL, redis_prefix  # noqa: F401 - the fixture (Redis must run)


@pytest.fixture(scope="module")
def model_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny real model over device signals (they need the cross-shard index) and a few others."""
    from bench.tiny import save_tiny_rating

    device = [s.name for s in registry.signals() if s.table == SHARED_DEVICES.name][:4]
    others = [n for n in registry.signal_names() if n not in device][:6]
    assert len(device) == 4
    return save_tiny_rating(tmp_path_factory.mktemp("model") / "rating", device + others, seed=1)


@pytest.fixture(scope="module")
def in_process(cross_shard_export: Path, model_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("published") / "snapshot.parquet"
    assert (
        publish_cli.main(["--data", str(cross_shard_export), "--model-uri", model_uri, "--out", str(out)])
        == 0
    )
    return out


def _publish(export: Path, model_uri: str, location: str, client, prefix: str = "") -> SnapshotMeta:
    """``serving.publish.publish`` as the CLI calls it, on ``client``."""
    args = publish_cli.parse_args(["--data", str(export), "--model-uri", model_uri, "--out", "unused"])
    names, _, rating = publish_cli.load_signals_source(args)
    as_of = io.export_time(export, None)
    return publish_cli.publish(export, location, prefix, names, as_of, rating=rating, client=client)


def _live_version(prefix: str) -> SnapshotMeta:
    """Commit a small Redis version under ``prefix`` (buyers 1 and 2), to find intact after a failure."""
    writer = RedisWriter(REDIS_URL, prefix, ["a", "b"], "2023-01-01T00:00:00+00:00")
    writer.append(np.array([1, 2]), np.ones((2, 2), np.float32))
    return writer.commit()


def _assert_same_file(got: Path, want: Path) -> None:
    a, b = FileSnapshot.load(got), FileSnapshot.load(want)
    assert a.meta.signal_names == b.meta.signal_names and a.meta.as_of == b.meta.as_of
    assert a.meta.n_buyers == b.meta.n_buyers > 0 and a.meta.reasons_model == b.meta.reasons_model
    np.testing.assert_array_equal(a.buyer_ids, b.buyer_ids)
    np.testing.assert_array_equal(a.matrix, b.matrix)  # NaN where NaN, every value exact
    assert a.reasons is not None and b.reasons is not None
    np.testing.assert_array_equal(a.reasons[0], b.reasons[0])
    np.testing.assert_array_equal(a.reasons[1], b.reasons[1])


def _rows(prefix: str) -> tuple[SnapshotMeta, dict[bytes, bytes]]:
    """The live version's metadata and its rows (buyer id -> packed row) under ``prefix``."""
    client = redis.Redis.from_url(REDIS_URL)
    meta = SnapshotMeta.from_json(client.get(meta_key(prefix)))
    head = rows_prefix(prefix, meta.version).encode()
    keys = list(client.scan_iter(match=head + b"*", count=5000))
    return meta, {k[len(head) :]: v for k, v in zip(keys, client.mget(keys), strict=True)}


def test_cluster_file_snapshot_equals_the_in_process_one(
    cross_shard_export, model_uri, in_process, tmp_path, capsys
):
    out = tmp_path / "snapshot.parquet"
    argv = ["--data", str(cross_shard_export), "--model-uri", model_uri, "--out", str(out)]
    assert publish_cli.main([*argv, "--cluster", "local:2"]) == 0
    captured = capsys.readouterr()
    assert [line for line in captured.err.splitlines() if line.startswith("part ")][-1].startswith(
        "part 8/8: 100 buyers in "
    )
    assert captured.out.startswith("published 800 buyers x 10 signals") and "exact reasons" in captured.out
    _assert_same_file(out, in_process)
    snap = FileSnapshot.load(out)
    device = [j for j, n in enumerate(snap.meta.signal_names) if registry.get(n).table == SHARED_DEVICES.name]
    assert len(device) == 4 and np.nanmax(snap.matrix[:, device]) > 0  # devices shared across shards
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snapshot.parquet"]  # no part, no temp file


def test_cluster_redis_publish_equals_the_in_process_one(
    cross_shard_export,
    model_uri,
    redis_prefix,  # noqa: F811 - the fixture
):
    argv = ["--data", str(cross_shard_export), "--model-uri", model_uri, "--redis", REDIS_URL]
    assert publish_cli.main([*argv, "--prefix", f"{redis_prefix}a:"]) == 0
    assert publish_cli.main([*argv, "--prefix", f"{redis_prefix}b:", "--cluster", "local:2"]) == 0
    (meta_a, rows_a), (meta_b, rows_b) = _rows(f"{redis_prefix}a:"), _rows(f"{redis_prefix}b:")
    assert meta_b.n_buyers == meta_a.n_buyers == len(rows_a) == 800
    assert (meta_b.signal_names, meta_b.as_of) == (meta_a.signal_names, meta_a.as_of)
    assert rows_b == rows_a  # the same buyers, the same bytes
    snap = RedisSnapshot.connect(REDIS_URL, f"{redis_prefix}b:")
    assert snap.row(1) is not None and snap.row(1).size == len(meta_a.signal_names)


def test_a_worker_killed_mid_publish_is_recovered_with_the_same_file(
    cross_shard_export, model_uri, in_process, tmp_path
):
    out = tmp_path / "snapshot.parquet"
    with local_client() as client:
        client.register_plugin(killer(tmp_path / "killed", "publish-part-", once=True))
        meta = _publish(cross_shard_export, model_uri, str(out), client)
    assert (tmp_path / "killed").exists() and meta.n_buyers == 800
    _assert_same_file(out, in_process)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["killed", "snapshot.parquet"]


def test_workers_dying_every_time_fail_without_a_file_or_a_committed_redis_version(
    cross_shard_export,
    model_uri,
    in_process,
    tmp_path,
    redis_prefix,  # noqa: F811 - the fixture
):
    live = _live_version(redis_prefix)
    out = tmp_path / "snapshot.parquet"
    out.write_bytes(in_process.read_bytes())  # the previous snapshot, to be left as it is
    with local_client(allowed_failures=0) as client:  # the first worker lost fails the publish
        client.register_plugin(killer(tmp_path / "kills", "publish-part-", once=False))
        for location in (str(out), REDIS_URL):
            with pytest.raises(cluster.WorkerLost, match="workers died while running task"):
                _publish(cross_shard_export, model_uri, location, client, redis_prefix)
        time.sleep(1)  # a partition still running elsewhere when the publish failed writes nothing
    assert len((tmp_path / "kills").read_text().splitlines()) >= 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kills", "snapshot.parquet"]
    assert out.read_bytes() == in_process.read_bytes()
    meta, rows = _rows(redis_prefix)
    assert meta == live and sorted(rows) == [b"1", b"2"]  # the previous version, still live
    client = redis.Redis.from_url(REDIS_URL)
    keys = {k.decode() for k in client.scan_iter(match=f"{redis_prefix}*", count=1000)}
    fences = {k for k in keys if k.startswith(abort_key(redis_prefix, ""))}
    assert len(fences) == 1  # the aborted version: fenced off, none of its rows left
    assert keys - fences == {meta_key(redis_prefix)} | {
        f"{rows_prefix(redis_prefix, live.version)}{b}" for b in (1, 2)
    }


def test_without_cluster_dask_is_never_imported(cross_shard_export, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # any import of it would fail
    monkeypatch.setitem(sys.modules, "dask", None)
    out = tmp_path / "snapshot.parquet"
    assert publish_cli.main(["--data", str(cross_shard_export), "--all-signals", "--out", str(out)]) == 0
    assert FileSnapshot.load(out).meta.n_buyers == 800


def test_buyers_limit_is_refused_on_a_cluster(cross_shard_export, tmp_path, capsys):
    argv = ["--data", str(cross_shard_export), "--all-signals", "--out", str(tmp_path / "s.parquet")]
    assert publish_cli.main([*argv, "--buyers-limit", "5", "--cluster", "local:1"]) == 2
    assert "--buyers-limit" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_no_row_lands_in_an_aborted_redis_version(redis_prefix):  # noqa: F811 - the fixture
    from serving.snapshot import RedisRows, SnapshotError

    rows = RedisRows(REDIS_URL, redis_prefix, "v1", batch=2)
    client = rows.connect()
    assert rows.write(client, np.arange(3), np.ones((3, 2), np.float32)) == 3
    rows.abort(client)  # what a failed publish does while a partition may still be running
    with pytest.raises(SnapshotError, match="v1 was aborted"):
        rows.write(client, np.arange(5), np.ones((5, 2), np.float32))
    assert list(client.scan_iter(match=f"{rows_prefix(redis_prefix, 'v1')}*")) == []
    assert 0 < client.ttl(abort_key(redis_prefix, "v1")) <= 3600
