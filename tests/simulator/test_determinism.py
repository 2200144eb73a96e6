"""Same seed, same bytes; another seed, other data."""

from __future__ import annotations

from pathlib import Path

from simulator.config import RunConfig
from simulator.write import write_export


def _files(out: Path) -> dict[str, bytes]:
    return {str(f.relative_to(out)): f.read_bytes() for f in sorted(out.rglob("*")) if f.is_file()}


def test_same_seed_writes_identical_bytes(tmp_path: Path) -> None:
    cfg = RunConfig(buyers=400, months=8, seed=5, shard_size=150)
    write_export(cfg, tmp_path / "a")
    write_export(cfg, tmp_path / "b")
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert len(a) == 11 * 3 + 5 + 1  # 11 tables x 3 parts, 5 truth files, the manifest
    assert a == b


def test_different_seed_differs(tmp_path: Path) -> None:
    write_export(RunConfig(buyers=400, months=8, seed=5, shard_size=150), tmp_path / "a")
    write_export(RunConfig(buyers=400, months=8, seed=6, shard_size=150), tmp_path / "b")
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert a.keys() == b.keys()
    assert a["orders/part-00000.parquet"] != b["orders/part-00000.parquet"]
    assert a["truth/risk.parquet"] != b["truth/risk.parquet"]


def test_rerun_into_same_folder_replaces_previous_output(tmp_path: Path) -> None:
    write_export(RunConfig(buyers=400, months=4, seed=1, shard_size=100), tmp_path / "x")
    write_export(RunConfig(buyers=200, months=4, seed=1, shard_size=100), tmp_path / "x")
    assert sorted(p.name for p in (tmp_path / "x" / "orders").iterdir()) == [
        "part-00000.parquet",
        "part-00001.parquet",
    ]
