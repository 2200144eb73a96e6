"""``--cluster``: parsing, the optional extra, unreachable schedulers."""

from __future__ import annotations

import sys

import pytest

from features import build_cli, cluster
from simulator import __main__ as simulator_cli


def test_parse_local_and_addresses():
    assert cluster.parse("local") == ("local", cluster.DEFAULT_LOCAL_WORKERS)
    assert cluster.parse("local:3") == ("local", 3)
    assert cluster.parse("tcp://10.0.0.1:8786") == ("address", "tcp://10.0.0.1:8786")
    for bad in ("", "local:0", "local:two", "local:-1"):
        with pytest.raises(cluster.ClusterError):
            cluster.parse(bad)


def test_without_cluster_dask_is_not_imported(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # any import of it would fail
    with cluster.connect(None) as client:
        assert client is None


def test_missing_extra_is_a_clear_error_naming_it(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(cluster.ClusterError, match=r"\.\[dask\]"), cluster.connect("local:1"):
        pass
    code = simulator_cli.main(
        ["--buyers", "10", "--months", "2", "--out", str(tmp_path / "m"), "--cluster", "local"]
    )
    assert code == 2
    assert ".[dask]" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_unreachable_scheduler_exits_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT_S", 1)
    args = ["build", "--data", str(tmp_path), "--as-of", "2024-01-01", "--out", str(tmp_path / "s.parquet")]
    from features import __main__ as features_cli

    assert features_cli.main([*args, "--cluster", "tcp://127.0.0.1:9"]) == 2
    assert "cannot reach a Dask scheduler" in capsys.readouterr().err
    assert features_cli.main([*args, "--cluster", "local:x"]) == 2
    assert "local:N" in capsys.readouterr().err
    assert not (tmp_path / "s.parquet").exists()


def test_buyers_limit_is_refused_on_a_cluster(tmp_path, capsys):
    args = build_cli.argparse.Namespace(
        data=tmp_path, as_of="2024-01-01", out=tmp_path / "s.parquet", buyers_limit=5, cluster="local:1"
    )
    assert build_cli.run(args) == 2
    assert "--buyers-limit" in capsys.readouterr().err


def test_a_running_scheduler_is_reached_by_its_address(tmp_path):
    from simulator.config import RunConfig
    from simulator.write import write_export
    from tests.cluster.conftest import local_client

    args = ["--buyers", "200", "--months", "3", "--seed", "2", "--shard-size", "100", "--quiet"]
    write_export(RunConfig(buyers=200, months=3, seed=2, shard_size=100), tmp_path / "a")
    with local_client() as client:
        address = client.scheduler.address
        assert simulator_cli.main([*args, "--out", str(tmp_path / "b"), "--cluster", address]) == 0
        assert len(client.cluster.workers) == 2  # the command used this cluster and left it running
    a, b = tmp_path / "a", tmp_path / "b"
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
