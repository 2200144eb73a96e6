"""Read a raw-table export into contract-typed frames: the one loader everything uses.

Layout of an export directory ``DIR``: each table is ``DIR/<table>.parquet``, a folder
``DIR/<table>/`` of ``part-00000.parquet``, ... (buyer-partitioned: part k of every
table holds the same contiguous buyer range, so a part is self-contained), or
``DIR/<table>.csv``. ``DIR/manifest.json`` may hold ``exported_at`` (ISO-8601 UTC) and
``shards``: ``[{"part": k, "buyer_id_min": ..., "buyer_id_max": ...}]``.

Types after reading: timestamps ``datetime64[us, UTC]`` (naive values are taken as UTC),
ints ``int64`` (nullable: ``Int64``), floats ``float64``, bools ``bool`` (nullable:
``boolean``), strings ``str``. Values that cannot be coerced become problems
(``wrong_type``, ``unparseable_timestamp``) rather than pandas exceptions.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features import contract
from features.memory import release_free_memory
from features.validate import ContractError, Problem, example_keys, merge, validate

_TIMESTAMP = pd.DatetimeTZDtype("us", "UTC")
_PART = re.compile(r"part-(\d+)\.(parquet|csv)$")
_BOOL_WORDS = {"true": True, "false": False, "t": True, "f": False, "1": True, "0": False}
_BOOL_WORDS |= {"yes": True, "no": False, "1.0": True, "0.0": False}


def read_manifest(data_dir: str | Path) -> dict:
    """Return ``DIR/manifest.json`` as a dict, or ``{}`` when there is none.

    Raises:
        ValueError: If the file is not a JSON object.
    """
    path = Path(data_dir) / "manifest.json"
    if not path.is_file():
        return {}
    try:
        manifest = json.loads(path.read_text())
    except ValueError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(manifest, dict):
        raise ValueError(f"{path} must hold a JSON object")
    return manifest


def export_time(data_dir: str | Path, override: str | datetime | None = None) -> pd.Timestamp:
    """The export time in UTC: ``override``, else manifest ``exported_at``, else now.

    Raises:
        ValueError: If the chosen value is not an ISO-8601 time.
    """
    value = override if override is not None else read_manifest(data_dir).get("exported_at")
    if value is None:
        return pd.Timestamp.now(tz="UTC")
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as err:
        raise ValueError(f"exported_at {value!r} is not an ISO-8601 time") from err
    if pd.isna(ts):
        raise ValueError(f"exported_at {value!r} is not an ISO-8601 time")
    return ts.tz_localize("UTC") if ts.tz is None else ts.tz_convert("UTC")


def _part_files(folder: Path) -> dict[int, Path]:
    return {int(m.group(1)): p for p in sorted(folder.iterdir()) if (m := _PART.search(p.name))}


def _locate(data_dir: Path, name: str) -> Path | None:
    for path in (data_dir / f"{name}.parquet", data_dir / name, data_dir / f"{name}.csv"):
        if path.exists():
            return path
    return None


def shard_parts(data_dir: str | Path) -> list[int]:
    """Part numbers of a folder export (union over tables), or of manifest shards; ``[0]`` otherwise."""
    data_dir = Path(data_dir)
    parts: set[int] = set()
    for name in contract.TABLE_NAMES:
        path = _locate(data_dir, name)
        if path is not None and path.is_dir():
            parts |= set(_part_files(path))
    parts |= {int(s["part"]) for s in read_manifest(data_dir).get("shards", [])}
    return sorted(parts) or [0]


def _read_file(path: Path, wanted: tuple[str, ...]) -> pd.DataFrame:
    if path.suffix == ".csv":
        return pd.read_csv(path, dtype=str, usecols=lambda c: c in wanted)
    present = [c for c in pq.read_schema(path).names if c in wanted]
    arrow = pq.read_table(path, columns=present)
    columns = {}
    for name, chunks in zip(arrow.column_names, arrow.columns, strict=True):
        nullable = (
            {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}.get if chunks.null_count else None
        )
        columns[name] = chunks.to_pandas(types_mapper=nullable)
    return pd.DataFrame(columns, index=pd.RangeIndex(arrow.num_rows), copy=False)


def _shard_range(manifest: dict, part: int) -> tuple[int, int] | None:
    for shard in manifest.get("shards", []):
        if int(shard["part"]) == part and "buyer_id_min" in shard and "buyer_id_max" in shard:
            return int(shard["buyer_id_min"]), int(shard["buyer_id_max"])
    return None


def _read_raw(
    data_dir: Path, table: contract.Table, part: int | None
) -> tuple[pd.DataFrame | None, list[Problem]]:
    """Read one table's contract columns as stored (untyped), or ``None`` if absent."""
    path = _locate(data_dir, table.name)
    if path is None:
        return None, []
    wanted = table.column_names
    try:
        if path.is_dir():
            files = _part_files(path)
            chosen = list(files.values()) if part is None else [files[part]] if part in files else []
            if not chosen:
                return contract.arrow_schema(table.name).empty_table().to_pandas(), []
            frames = [_read_file(f, wanted) for f in chosen]
            # A part without a column its siblings have would read as nulls once concatenated: the
            # column is missing (and left out, so no other check reads those nulls).
            absent = []
            for c in wanted:
                lacking = [f.name for f, frame in zip(chosen, frames, strict=True) if c not in frame.columns]
                if 0 < len(lacking) < len(frames):
                    msg = f"required column absent in {', '.join(lacking)}"
                    absent.append(Problem(table.name, c, "missing_column", 1, (), msg))
            if len(frames) == 1:
                return frames[0], []
            frame = pd.concat(frames, ignore_index=True)
            return frame.drop(columns=[p.column for p in absent]), absent
        frame = _read_file(path, wanted)
    except (OSError, ValueError, pa.ArrowException) as err:
        return None, [Problem(table.name, None, "unreadable", 1, (), f"cannot read {path}: {err}")]
    if part is None:
        return frame, []
    bounds = _shard_range(read_manifest(data_dir), part)
    if bounds is None and part != 0:
        msg = f"single file {path.name} cannot give part {part}: manifest.json has no buyer range for it"
        return None, [Problem(table.name, None, "unsharded", 1, (), msg)]
    if bounds is None or "buyer_id" not in frame.columns:
        return frame, []
    ids = pd.to_numeric(frame["buyer_id"], errors="coerce")
    return frame[ids.between(*bounds).to_numpy()].reset_index(drop=True), []


def _failed(
    frame: pd.DataFrame, table: contract.Table, col: contract.Column, check: str, bad, msg: str
) -> Problem:
    bad = np.asarray(bad, dtype=bool)
    return Problem(table.name, col.name, check, int(bad.sum()), example_keys(frame, table, bad), msg)


def _to_timestamp(s: pd.Series) -> tuple[pd.Series, np.ndarray | None, str]:
    if s.dtype == _TIMESTAMP:
        return s, None, ""
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        return s.dt.tz_convert("UTC").dt.as_unit("us"), None, ""
    if pd.api.types.is_datetime64_dtype(s.dtype):
        return s.dt.tz_localize("UTC").dt.as_unit("us"), None, ""
    if not (pd.api.types.is_string_dtype(s.dtype) or s.dtype == object):
        return s, np.ones(len(s), dtype=bool), "wrong_type"
    out = pd.to_datetime(s, utc=True, errors="coerce", format="ISO8601")
    bad = (s.notna() & out.isna()).to_numpy()
    return out.dt.as_unit("us"), (bad if bad.any() else None), "unparseable_timestamp"


def _to_number(s: pd.Series) -> tuple[pd.Series, np.ndarray | None]:
    if pd.api.types.is_bool_dtype(s.dtype) or not (
        pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_string_dtype(s.dtype) or s.dtype == object
    ):
        return s, np.ones(len(s), dtype=bool)
    if pd.api.types.is_numeric_dtype(s.dtype):
        return s, None
    out = pd.to_numeric(s, errors="coerce")
    bad = (s.notna() & out.isna()).to_numpy()
    return out, (bad if bad.any() else None)


def _to_int(s: pd.Series, nullable: bool) -> tuple[pd.Series, np.ndarray | None]:
    s, bad = _to_number(s)
    if bad is not None:
        return s, bad
    if pd.api.types.is_float_dtype(s.dtype):
        values = s.to_numpy(dtype="float64", na_value=np.nan)
        fractional = ~np.isnan(values) & ((values != np.round(values)) | np.isinf(values))
        if fractional.any():
            return s, fractional
        s = s.astype("Int64")
    if nullable or s.isna().any():
        return s.astype("Int64"), None
    return s.astype("int64"), None


def _to_float(s: pd.Series) -> tuple[pd.Series, np.ndarray | None]:
    s, bad = _to_number(s)
    if bad is not None:
        return s, bad
    return pd.Series(s.to_numpy(dtype="float64", na_value=np.nan), index=s.index), None


def _to_bool(s: pd.Series, nullable: bool) -> tuple[pd.Series, np.ndarray | None]:
    if not pd.api.types.is_bool_dtype(s.dtype):
        if pd.api.types.is_datetime64_any_dtype(s.dtype):
            return s, np.ones(len(s), dtype=bool)
        words = s.astype("str").str.strip().str.lower().map(_BOOL_WORDS)
        bad = (s.notna() & words.isna()).to_numpy()
        if bad.any():
            return s, bad
        s = words.astype("boolean")
    if nullable or s.isna().any():
        return s.astype("boolean"), None
    return s.astype(bool), None


def _to_str(s: pd.Series) -> tuple[pd.Series, np.ndarray | None]:
    if s.dtype == object and pd.api.types.infer_dtype(s, skipna=True) in ("string", "empty"):
        return s.astype("str"), None
    if pd.api.types.is_string_dtype(s.dtype) and s.dtype != object:
        return s, None
    return s, np.ones(len(s), dtype=bool)


def coerce(frame: pd.DataFrame, table: contract.Table) -> tuple[pd.DataFrame, list[Problem]]:
    """Cast a frame's contract columns to the contract types; pure.

    Args:
        frame: The table as stored (extra columns are dropped, missing ones left out).
        table: Its contract declaration.

    Returns:
        The typed frame and the coercion problems. A column that fails keeps its
        stored values, so ``validate`` sees it as ``wrong_type``.
    """
    out, found = {}, []
    for col in table.columns:
        if col.name not in frame.columns:
            continue
        s, check = frame[col.name], "wrong_type"
        if col.kind == "timestamp":
            typed, bad, check = _to_timestamp(s)
        elif col.kind == "int":
            typed, bad = _to_int(s, col.nullable)
        elif col.kind == "float":
            typed, bad = _to_float(s)
        elif col.kind == "bool":
            typed, bad = _to_bool(s, col.nullable)
        else:
            typed, bad = _to_str(s)
        if bad is None:
            out[col.name] = typed
            continue
        out[col.name] = s
        stored = f"stored as {s.dtype}"
        msg = (
            f"values not readable as {col.kind} ({stored})"
            if check == "wrong_type"
            else f"not ISO-8601 ({stored})"
        )
        found.append(_failed(frame, table, col, check, bad, msg))
    return pd.DataFrame(out, index=frame.index, copy=False), found


def _read(data_dir: Path, name: str, part: int | None) -> tuple[pd.DataFrame | None, list[Problem]]:
    table = contract.table(name)
    raw, found = _read_raw(data_dir, table, part)
    if raw is None:
        return None, found
    typed, problems = coerce(raw, table)
    return typed, found + problems


def read_table(data_dir: str | Path, name: str, part: int | None = None) -> pd.DataFrame:
    """Read one table, typed per the contract (no cross-table checks).

    Args:
        data_dir: Export directory.
        name: Contract table name.
        part: Only shard ``part`` of a folder export; ``None`` reads the whole table.

    Raises:
        ContractError: If the table is missing or unreadable, or values cannot be coerced.
    """
    frame, found = _read(Path(data_dir), name, part)
    if frame is None and not found:
        found = [Problem(name, None, "missing_table", 1, (), f"no {name}.parquet, {name}/ or {name}.csv")]
    if found:
        raise ContractError(found)
    return frame


def with_references(names: Iterable[str]) -> list[str]:
    """``names`` plus every table their foreign keys point to, in contract order."""
    needed, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name not in needed:
            needed.add(name)
            todo += [c.references.split(".")[0] for c in contract.table(name).columns if c.references]
    return [n for n in contract.TABLE_NAMES if n in needed]


def _outside_shard(frames: dict[str, pd.DataFrame], bounds: tuple[int, int]) -> list[Problem]:
    found = []
    for name, frame in frames.items():
        if "buyer_id" in frame.columns and pd.api.types.is_integer_dtype(frame["buyer_id"].dtype):
            table, col = contract.table(name), contract.table(name).column("buyer_id")
            outside = ~frame["buyer_id"].between(*bounds).fillna(True).to_numpy(dtype=bool)
            if outside.any():
                msg = f"buyer_id outside this shard's range {bounds[0]}..{bounds[1]}"
                found.append(_failed(frame, table, col, "outside_shard", outside, msg))
    return found


def load_tables(
    data_dir: str | Path,
    names: Iterable[str] | None = None,
    part: int | None = None,
    exported_at: str | datetime | None = None,
) -> dict[str, pd.DataFrame]:
    """Read, type and validate tables; all of them or none.

    Args:
        data_dir: Export directory.
        names: Tables wanted; default all. Tables their foreign keys need are read too.
        part: Only shard ``part`` (foreign keys then resolve within the shard).
        exported_at: Export time; default manifest ``exported_at``, else now (UTC).

    Returns:
        Table name -> typed frame, for ``names`` and the tables they reference.

    Raises:
        ContractError: Carrying every problem found; nothing is returned then.
        ValueError: If ``exported_at`` is not a time.
    """
    data_dir = Path(data_dir)
    wanted = with_references(contract.TABLE_NAMES if names is None else names)
    when = export_time(data_dir, exported_at)
    frames, found = {}, []
    for name in wanted:
        frame, problems = _read(data_dir, name, part)
        found += problems
        if frame is not None:
            frames[name] = frame
    flagged = {(p.table, p.column) for p in found}
    found += [p for p in validate(frames, when, wanted) if (p.table, p.column) not in flagged]
    bounds = None if part is None else _shard_range(read_manifest(data_dir), part)
    if bounds is not None:
        found += _outside_shard(frames, bounds)
    release_free_memory()  # the parquet buffers and the validation's temporaries
    if found:
        raise ContractError(found)
    return frames


def validate_export(
    data_dir: str | Path, exported_at: str | datetime | None = None, parts: Iterable[int] | None = None
) -> dict[str, int]:
    """Validate a whole export against the contract, shard by shard: the check every command runs on
    raw data before reading anything else of it (``python -m features validate``, ``training/train.py``,
    ``python -m serving.publish``).

    A folder export is loaded one part at a time (foreign keys resolve within the part), so memory
    stays bounded by the largest shard; problems are merged across parts.

    Args:
        data_dir: Export directory.
        exported_at: Export time; default manifest ``exported_at``, else now (UTC).
        parts: Only these shards (default all).

    Returns:
        Rows per table, over the shards validated.

    Raises:
        ContractError: Carrying every problem of every shard (table, column, check, offending rows).
        ValueError: If ``data_dir`` is not a directory, its manifest or ``exported_at`` is unreadable,
            or a part asked for does not exist.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise ValueError(f"{data_dir}: not a directory")
    when = export_time(data_dir, exported_at)
    available = shard_parts(data_dir)
    chosen = available if parts is None else list(parts)
    missing = [p for p in chosen if p not in available]
    if missing:
        raise ValueError(f"no part {missing[0]}; parts are {available}")
    sharded = parts is not None or len(chosen) > 1
    rows: dict[str, int] = {}
    problems: list[Problem] = []
    for part in chosen:
        try:
            frames = load_tables(data_dir, part=part if sharded else None, exported_at=when)
        except ContractError as err:
            problems += [_tag_rows(p, f"part {part}: ") if sharded else p for p in err.problems]
            continue
        for name, frame in frames.items():
            rows[name] = rows.get(name, 0) + len(frame)
        del frames
        release_free_memory()
    if problems:
        raise ContractError(merge(problems))
    return rows


def _tag_rows(problem: Problem, tag: str) -> Problem:
    """``problem`` with its row-number examples (``row 12``) prefixed by ``tag`` (``part 3: row 12``)."""
    if not any(e.startswith("row ") for e in problem.examples):
        return problem
    examples = tuple(tag + e if e.startswith("row ") else e for e in problem.examples)
    return Problem(problem.table, problem.column, problem.check, problem.count, examples, problem.message)
