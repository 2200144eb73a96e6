"""Small simulated exports shared by the simulator tests (generated once per session)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from features import contract
from simulator.config import RunConfig
from simulator.write import write_export


@pytest.fixture(scope="session")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1,500 buyers x 12 months in 3 parts of 500 buyers."""
    out = tmp_path_factory.mktemp("market") / "export"
    write_export(RunConfig(buyers=1500, months=12, seed=11, shard_size=500), out)
    return out


@pytest.fixture(scope="session")
def manifest(export_dir: Path) -> dict:
    return json.loads((export_dir / "manifest.json").read_text())


@pytest.fixture(scope="session")
def tables(export_dir: Path) -> dict[str, pd.DataFrame]:
    """Every raw table with a ``part`` column saying which part file each row came from."""
    out = {}
    for name in contract.TABLE_NAMES:
        parts = sorted((export_dir / name).glob("part-*.parquet"))
        out[name] = pd.concat(
            [pd.read_parquet(f).assign(part=int(f.stem.split("-")[1])) for f in parts], ignore_index=True
        )
    return out


@pytest.fixture(scope="session")
def large_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A default-shaped run (8,000 buyers x 24 months) for rates and calibration."""
    out = tmp_path_factory.mktemp("large") / "export"
    write_export(RunConfig(buyers=8000, months=24, seed=3), out)
    return out


@pytest.fixture(scope="session")
def calibration_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Many opportunities for the calibration tests (30,000 buyers x 30 months, 5 presale seasons)."""
    out = tmp_path_factory.mktemp("calibration") / "export"
    write_export(RunConfig(buyers=30_000, months=30, seed=21, shard_size=15_000), out)
    return out
