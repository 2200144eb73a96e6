"""The simulator on a LocalCluster(2): the same bytes, and never a partial export."""

from __future__ import annotations

from pathlib import Path

import pytest

from features import cluster
from simulator import __main__ as simulator_cli
from simulator.config import RunConfig
from simulator.write import write_export
from tests.cluster.conftest import killer, local_client

CFG = RunConfig(buyers=600, months=8, seed=5, shard_size=150)
ARGS = ["--buyers", "600", "--months", "8", "--seed", "5", "--shard-size", "150", "--quiet"]


def _files(out: Path) -> dict[str, bytes]:
    return {str(f.relative_to(out)): f.read_bytes() for f in sorted(out.rglob("*")) if f.is_file()}


@pytest.fixture(scope="module")
def in_process(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("sim") / "in_process"
    write_export(CFG, out)
    return _files(out)


def test_cluster_run_writes_the_same_bytes(tmp_path, in_process):
    out = tmp_path / "cluster"
    assert simulator_cli.main([*ARGS, "--out", str(out), "--cluster", "local:2"]) == 0
    got = _files(out)
    assert len(got) == 11 * 4 + 5 + 1  # 11 tables x 4 parts, 5 truth files, the manifest
    assert got.keys() == in_process.keys()
    assert [name for name in got if got[name] != in_process[name]] == []


def test_a_worker_killed_once_is_recovered_with_the_same_bytes(tmp_path, in_process):
    with local_client() as client:
        client.register_plugin(killer(tmp_path / "killed", "simulate-shard-", once=True))
        write_export(CFG, tmp_path / "out", client=client)
    assert (tmp_path / "killed").exists()
    assert _files(tmp_path / "out") == in_process


def test_workers_dying_every_time_fail_cleanly_and_keep_the_previous_export(tmp_path, in_process):
    out = tmp_path / "out"
    write_export(CFG, out)  # a complete earlier export must survive the failed run untouched
    with local_client(allowed_failures=1) as client:
        client.register_plugin(killer(tmp_path / "kills", "simulate-shard-", once=False))
        with pytest.raises(cluster.WorkerLost, match="simulate-shard-"):
            write_export(RunConfig(buyers=600, months=8, seed=6, shard_size=150), out, client=client)
    assert len((tmp_path / "kills").read_text().splitlines()) >= 2
    assert _files(out) == in_process  # no staging folder, no mixed parts, the old manifest
