"""The command line: generate (the default), summary, and argument errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simulator.__main__ import main


def test_generate_is_the_default_subcommand(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert (
        main(["--buyers", "300", "--months", "3", "--seed", "2", "--out", str(tmp_path / "a"), "--quiet"])
        == 0
    )
    assert (
        main(["generate", "--buyers", "300", "--months", "3", "--seed", "2", "--out", str(tmp_path / "b")])
        == 0
    )
    a = (tmp_path / "a" / "orders" / "part-00000.parquet").read_bytes()
    assert a == (tmp_path / "b" / "orders" / "part-00000.parquet").read_bytes()
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["exported_at"] == "2023-04-01T00:00:00Z" and manifest["buyers"] == 300
    assert "shard 1/1 written" in capsys.readouterr().err


def test_summary_prints_the_analyst_marginals(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    main(["--buyers", "600", "--months", "6", "--out", str(tmp_path), "--quiet"])
    assert main(["summary", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for needle in ["rows per table", "orders per buyer", "presale share", "presale opportunities",
                   "refund requests", "old-rule approval", "truth p_bad_90d", "realised 90-day bad rate",
                   "default rate, shipped early", "default rate, held", "legacy fast-refund rule",
                   "exploration ships early", "loss rate"]:  # fmt: skip
        assert needle in out, needle


def test_invalid_configuration_is_exit_code_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["--buyers", "0", "--out", str(tmp_path)]) == 2
    assert "buyers must be >= 1" in capsys.readouterr().err
    assert main(["--buyers", "10", "--start", "2023-01-15", "--out", str(tmp_path)]) == 2
