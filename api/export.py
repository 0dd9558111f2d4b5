"""Streamed exports: rows in chunks -> CSV text or a Parquet file, written as they come (a
Parquet row group per chunk), so an export of any size never sits whole in memory.

Nested values (an alert's evidence, a window's AU rates) are JSON text in both formats.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from api.schemas import ExportFormat
from streams.schemas import WindowMetrics
from streams.store import StoredAlert

MEDIA_TYPES = {
    ExportFormat.CSV: "text/csv; charset=utf-8",
    ExportFormat.PARQUET: "application/vnd.apache.parquet",
}

# column -> Arrow type name; the CSV has the same columns in this order.
ALERT_COLUMNS: dict[str, str] = {
    "alert_id": "string", "driver_id": "string", "vehicle_id": "string",
    "reason": "string", "severity": "string", "status": "string",
    "started_at": "float64", "detected_at": "float64", "message": "string",
    "evidence": "json", "acked_at": "float64", "acked_by": "string",
    "resolved_at": "float64", "resolved_by": "string", "flag": "string",
    "flagged_at": "float64", "flagged_by": "string",
}  # fmt: skip
SERIES_COLUMNS: dict[str, str] = {
    "driver_id": "string", "vehicle_id": "string",
    "window_start": "float64", "window_end": "float64",
    "frames": "int64", "face_frames": "int64", "perclos": "float64", "blink_count": "int64",
    "blink_rate_per_min": "float64", "blink_duration_mean_s": "float64",
    "blink_duration_max_s": "float64", "long_closures": "int64", "yawns": "int64",
    "off_road_s": "float64", "au_rates": "json", "fatigue_score": "float64", "kss": "int64",
    "fatigue_source": "string", "au_source": "string", "drowsiness_state": "string",
    "drowsiness_score": "float64", "drowsiness_kss": "int64",
    "drowsiness_probabilities": "json", "drowsiness_model": "string", "degraded_s": "float64",
    "sensing": "string", "state": "string", "state_reasons": "json",
}  # fmt: skip


def alert_row(a: StoredAlert) -> dict[str, Any]:
    return {
        "alert_id": a.alert_id, "driver_id": a.driver_id, "vehicle_id": a.vehicle_id,
        "reason": a.reason.value, "severity": a.severity.value, "status": a.state.value,
        "started_at": a.started_at, "detected_at": a.detected_at, "message": a.message,
        "evidence": a.evidence, "acked_at": a.acked_at, "acked_by": a.acked_by,
        "resolved_at": a.resolved_at, "resolved_by": a.resolved_by,
        "flag": None if a.flag is None else a.flag.value, "flagged_at": a.flagged_at,
        "flagged_by": a.flagged_by,
    }  # fmt: skip


def series_row(w: WindowMetrics) -> dict[str, Any]:
    return w.model_dump(mode="json", exclude={"schema_"})


def stream(chunks: Iterable[Iterable[Mapping[str, Any]]], columns: Mapping[str, str],
           fmt: ExportFormat) -> Iterator[bytes]:
    """The bytes of the export, a piece per chunk of rows."""
    if fmt is ExportFormat.PARQUET:
        return _parquet(chunks, columns)
    return _csv(chunks, columns)


def _flat(row: Mapping[str, Any], columns: Mapping[str, str]) -> dict[str, Any]:
    return {c: (json.dumps(row.get(c), separators=(",", ":")) if kind == "json"
                else row.get(c)) for c, kind in columns.items()}


def _csv(chunks: Iterable[Iterable[Mapping[str, Any]]],
         columns: Mapping[str, str]) -> Iterator[bytes]:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for chunk in chunks:
        writer.writerows(_flat(r, columns) for r in chunk)
        yield out.getvalue().encode("utf-8")
        out.seek(0)
        out.truncate()
    if out.tell():
        yield out.getvalue().encode("utf-8")


class _Pieces(io.RawIOBase):
    """A write-only file that hands out what was written since the last :meth:`take`, and
    tells the total so far (the Parquet writer records offsets from it)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.position = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        piece = bytes(data)
        self.parts.append(piece)
        self.position += len(piece)
        return len(piece)

    def tell(self) -> int:
        return self.position

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


def _parquet(chunks: Iterable[Iterable[Mapping[str, Any]]],
             columns: Mapping[str, str]) -> Iterator[bytes]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    types = {"string": pa.string(), "float64": pa.float64(), "int64": pa.int64(),
             "json": pa.string()}
    schema = pa.schema([(c, types[kind]) for c, kind in columns.items()])
    sink = _Pieces()
    with pq.ParquetWriter(sink, schema, compression="zstd") as writer:
        for chunk in chunks:
            rows = [_flat(r, columns) for r in chunk]
            if rows:
                writer.write_table(pa.Table.from_pylist(rows, schema=schema))
                yield sink.take()
    yield sink.take()
