"""Fuzzing helpers shared by the test areas: the Hypothesis profile, and mutations that turn a
valid record into the kinds of bad input a topic can carry (wrong types, out-of-range and
non-finite numbers, extreme timestamps, NUL and control characters in ids, deep nesting,
huge strings, truncated and flipped bytes).

Hypothesis draws a valid record and a seed; each example then derives ``MUTANTS`` records
from it with ``random.Random(seed)``, so a topic's 10,000 records cost about 170 Hypothesis
examples. ``VIGIL_FUZZ_PROFILE=deep`` runs ten times as many."""

from __future__ import annotations

import contextlib
import json
import os
import random
from typing import Any

from hypothesis import HealthCheck, settings

MUTANTS = 60
RECORDS_PER_TOPIC = 10_000

settings.register_profile(
    "vigil", max_examples=RECORDS_PER_TOPIC // MUTANTS + 10, deadline=None, derandomize=True,
    database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("deep", parent=settings.get_profile("vigil"),
                          max_examples=10 * RECORDS_PER_TOPIC // MUTANTS)
FUZZ = settings.get_profile(os.environ.get("VIGIL_FUZZ_PROFILE", "vigil"))

# A timestamp near the test run's: the decoders bound epoch seconds to 1970-2100.
NOW_S = 1_790_000_000.0


class Nan:
    """Placeholder for a JSON NaN/Infinity literal (json.dumps writes them for floats)."""


def deep(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


NASTY: list[Any] = [
    None, True, 0, -1, 2**63, 10**40, -(10**40), 1e308, -1e308, float("nan"), float("inf"),
    float("-inf"), 5.8e17, 6e17, -1.0, 0.5, NOW_S + 10 * 365 * 86_400, "", " ", "\x00",
    "d\x00", "\x1b[31m", "\ud800", "é", "x" * 5000, "1.5", "NaN", [], {}, [1, 2], {"a": 1},
    deep(40), deep(500),  # deeper: mutate_bytes (json.dumps itself recurses)
]


def nasty(rng: random.Random) -> Any:
    value = rng.choice(NASTY)
    # A fresh copy of lists and dicts: a later mutation inside the record must not change (or
    # loop back into) the shared value.
    return json.loads(json.dumps(value)) if isinstance(value, list | dict) else value


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a value inside ``obj`` (dict keys and list indices), 6 levels deep."""
    out = [prefix] if prefix else []
    if len(prefix) >= 6:
        return out
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*prefix, i))
    return out


def _set(obj: Any, path: tuple, value: Any) -> None:
    for step in path[:-1]:
        obj = obj[step]
    obj[path[-1]] = value


def _delete(obj: Any, path: tuple) -> None:
    for step in path[:-1]:
        obj = obj[step]
    del obj[path[-1]]


def dumps(obj: Any) -> bytes:
    # allow_nan: NaN/Infinity literals are part of what a bad producer may send.
    return json.dumps(obj, allow_nan=True).encode("utf-8", "surrogatepass")


def mutate_json(base: dict[str, Any], rng: random.Random) -> bytes:
    """One bad (or, by chance, still valid) variant of the JSON record ``base``."""
    obj = json.loads(json.dumps(base))
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        paths = _paths(obj)
        kind = rng.randrange(6)
        if kind <= 2 and paths:
            _set(obj, rng.choice(paths), nasty(rng))
        elif kind == 3 and paths:
            path = rng.choice(paths)
            with contextlib.suppress(KeyError, IndexError, TypeError):
                _delete(obj, path)
        elif kind == 4:
            obj[rng.choice(("extra", "schema", "driver_id", "captured_at"))] = nasty(rng)
        else:
            return mutate_bytes(dumps(obj), rng)
    return dumps(obj)


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    """Byte-level damage: truncation, flips, insertions, garbage, nesting, huge values."""
    kind = rng.randrange(7)
    if kind == 0:
        return data[: rng.randrange(len(data) + 1)]
    if kind == 1:
        buf = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            if buf:
                buf[rng.randrange(len(buf))] = rng.randrange(256)
        return bytes(buf)
    if kind == 2:
        at = rng.randrange(len(data) + 1)
        return data[:at] + rng.randbytes(rng.randint(1, 64)) + data[at:]
    if kind == 3:
        return b"[" * rng.choice((33, 1000, 100_000)) + b"]"
    if kind == 4:
        return b'{"schema": "' + b"\\u0001" * rng.choice((10, 100_000)) + b'"}'
    if kind == 5:
        return rng.randbytes(rng.randint(0, 256))
    return data.replace(b"}", b', "extra": NaN}', 1)
