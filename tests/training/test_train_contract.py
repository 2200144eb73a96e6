"""train.py checks the export against the contract before any step reads it: an export whose
``orders`` lack ``buyer_id`` stops it with exit 2 naming ``orders.buyer_id`` (the device index of
the assembly used to read the column first and die with a ``KeyError``), and nothing is logged."""

from __future__ import annotations

import pyarrow.parquet as pq

from simulator.config import RunConfig
from simulator.write import write_export
from training import train


def test_an_export_without_orders_buyer_id_exits_2_naming_it(tmp_path, monkeypatch, capsys):
    export = tmp_path / "export"
    write_export(RunConfig(buyers=300, months=24, seed=1), export)
    orders = export / "orders" / "part-00000.parquet"
    pq.write_table(pq.read_table(orders).drop(["buyer_id"]), orders)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")

    assert train.main(["--data", str(export), "--cache-dir", ""]) == 2
    err = capsys.readouterr().err
    assert f"cannot train on {export}" in err and "orders.buyer_id: missing_column" in err
    assert not (tmp_path / "mlflow.db").exists()  # stopped before MLflow was touched
