"""Show a result as a text table, or write it to CSV/Parquet atomically (temporary file, then rename)."""
from __future__ import annotations

import contextlib
import datetime as dt
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

if TYPE_CHECKING:
    from core.config import Paths

OutputFormat = Literal["csv", "parquet"]
_FORMATS: dict[str, OutputFormat] = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


class OutputWriteError(OSError, ValueError):
    """The output file could not be written. Still an OSError; a ValueError as well, so that the
    commands report it in one line with status 2 like any other bad output."""


def output_format(path: str | Path) -> OutputFormat:
    """The format a path's extension names: .csv, or .parquet / .pq."""
    suffix = Path(path).suffix.lower()
    if suffix not in _FORMATS:
        raise ValueError(f"output {str(path)!r} must end with .csv or .parquet")
    return _FORMATS[suffix]


def check_outside_pipeline(path: str | Path, paths: "Paths") -> None:
    """Refuse an output file inside a folder the pipeline owns (warehouse, staging, raw, models).

    The analyst commands only read those: a result written there could replace a table's live
    data file (`--output warehouse/user_tag_profiles/dt=.../part-....parquet`) or land among them.
    """
    target = Path(os.path.realpath(path))
    roots = {"warehouse": paths.warehouse, "staging": paths.staging_root, "raw": paths.raw, "models": paths.models}
    for name, root in roots.items():
        if not root or ("://" in root and not root.startswith("file://")):
            continue  # an object store: a local output file cannot be inside it
        folder = Path(os.path.realpath(root.removeprefix("file://")))
        if target == folder or folder in target.parents:
            raise ValueError(f"output {str(path)!r} is inside paths.{name} ({root}), which the analyst commands "
                             "only read; write it somewhere else")


def write_atomically(table: pa.Table, path: str | Path) -> Path:
    """Write `table` to `path` (CSV or Parquet by extension): readers see the old file or the whole new one.

    The file is written beside its target under a hidden temporary name and renamed over it
    only once complete; on any failure the temporary file is removed and `path` is untouched.
    """
    target = Path(path)
    fmt = output_format(target)
    if target.is_dir():
        raise ValueError(f"output {str(target)!r} is a directory")
    if fmt == "csv":
        check_csv_columns(table, target)
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "csv":
            pcsv.write_csv(table, tmp)
        else:
            pq.write_table(table, tmp)
        os.replace(tmp, target)
    except OSError as exc:  # a folder that is a file, no permission, a full disk: one line, not a traceback
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise OutputWriteError(f"output {str(target)!r} cannot be written: {exc.strerror or exc}") from exc
    except pa.ArrowNotImplementedError as exc:  # a column type the format has no form for (DuckDB's INTERVAL)
        tmp.unlink(missing_ok=True)
        types = ", ".join(f"{f.name} ({f.type})" for f in table.schema)
        raise ValueError(f"output {str(target)!r}: {fmt} cannot hold a column of this result ({exc}); its columns: "
                         f"{types}; cast that column in the query (e.g. CAST(x AS VARCHAR), or epoch(x) for "
                         f"an interval's seconds)") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def check_csv_columns(table: pa.Table, path: str | Path) -> None:
    """A CSV cell holds one value: refuse nested columns (lists, structs, maps) with a clear message."""
    nested = [f"{f.name} ({f.type})" for f in table.schema if pa.types.is_nested(f.type)]
    if nested:
        raise ValueError(f"output {str(path)!r}: CSV cannot hold the nested column(s) {', '.join(nested)}; "
                         "write a .parquet file instead")


def format_table(table: pa.Table, max_rows: int = 100) -> str:
    """An aligned text table of the first `max_rows` rows, then the row count."""
    names = table.column_names
    shown = table.slice(0, max_rows)
    columns = [column.to_pylist() for column in shown.columns]  # by position: names can repeat
    cells = [[_cell(column[i]) for column in columns] for i in range(shown.num_rows)]
    numeric = [pa.types.is_integer(f.type) or pa.types.is_floating(f.type) or pa.types.is_decimal(f.type)
               for f in table.schema]
    widths = [max([len(n), *(len(r[i]) for r in cells)]) for i, n in enumerate(names)]

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)).rstrip()

    lines = [line(names), line(["-" * w for w in widths]), *(line(r) for r in cells)]
    more = table.num_rows - shown.num_rows
    count = f"({table.num_rows} row{'s' if table.num_rows != 1 else ''}"
    lines.append(f"{count}; {more} more not shown, use --output or --max-rows)" if more > 0 else f"{count})")
    return "\n".join(lines)


def _cell(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return str(value)
