"""A seeded mutator of trace files, for the fuzz test and benchmarks/fuzz_analyze.py.

Each mutant is the bytes of a file (plain JSON or gzip) made from a real or synthetic trace by
one hostile change: flipped bytes, a truncation, a field of the wrong type, an absurd number, a
huge string, a deleted key, duplicated events, an odd header field, or a gzip variant (several
members, a lying trailer, trailing garbage, a bomb). The same seed gives the same mutants.
"""

from __future__ import annotations

import copy
import gzip
import json
import random
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

ABSURD_NUMBERS: tuple[Any, ...] = (
    -1e18, 1e18, 1e300, -1e300, 2**70, -(2**70), 2**63, -1, 0, 1e15, 4e15, 1.5e-300, 2**53 + 1)
ODD_VALUES: tuple[Any, ...] = (
    None, True, "", "abc", "12", "0x1f", [], [1, 2], {}, {"a": 1}, 2**70, -1.5, 1e308)
EVENT_FIELDS = ("ph", "cat", "name", "pid", "tid", "ts", "dur", "id", "args")
ARG_FIELDS = ("External id", "correlation", "stream", "device", "Python id", "Python parent id",
              "Input Dims", "grid", "block", "bytes", "Collective name", "In msg nelems")


@dataclass(frozen=True)
class Mutant:
    kind: str
    name: str  # file name (its suffix says gzip or not)
    data: bytes


def _events(doc: Any) -> list[Any]:
    if isinstance(doc, dict) and isinstance(doc.get("traceEvents"), list):
        return doc["traceEvents"]  # type: ignore[no-any-return]
    return doc if isinstance(doc, list) else []


def _dicts(doc: Any) -> list[dict[str, Any]]:
    return [e for e in _events(doc) if isinstance(e, dict)]


def _timed(doc: Any) -> list[dict[str, Any]]:
    return [e for e in _dicts(doc) if e.get("ph") == "X"] or _dicts(doc)


def _text(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


# ---------------------------------------------------------------- structured mutations
def absurd_time(doc: Any, rng: random.Random, huge: int) -> str:
    events = _timed(doc)
    for e in rng.sample(events, min(len(events), rng.choice((1, 1, 3, 50)))):
        e[rng.choice(("ts", "ts", "dur"))] = rng.choice(ABSURD_NUMBERS)
    return "absurd-number"


def same_time(doc: Any, rng: random.Random, huge: int) -> str:
    """Many events at one instant: what a clock bug or a hostile trace produces."""
    value = rng.choice((0, 1.0, 1e18))
    for e in _dicts(doc):
        if "ts" in e:
            e["ts"] = value
    return "same-timestamp"


def type_swap(doc: Any, rng: random.Random, huge: int) -> str:
    events = _dicts(doc)
    for e in rng.sample(events, min(len(events), rng.choice((1, 5, 200)))):
        if rng.random() < 0.3 and isinstance(e.get("args"), dict):
            e["args"][rng.choice(ARG_FIELDS)] = rng.choice(ODD_VALUES)
        else:
            e[rng.choice(EVENT_FIELDS)] = rng.choice(ODD_VALUES)
    return "type-swap"


def delete_keys(doc: Any, rng: random.Random, huge: int) -> str:
    events = _dicts(doc)
    for e in rng.sample(events, min(len(events), rng.choice((1, 20, len(events))))):
        for key in rng.sample(EVENT_FIELDS, rng.randint(1, 3)):
            e.pop(key, None)
    return "deleted-keys"


def huge_string(doc: Any, rng: random.Random, huge: int) -> str:
    events = _timed(doc)
    if events:
        e = rng.choice(events)
        text = "A" * huge
        where = rng.choice(("name", "name", "cat", "args"))
        if where == "args":
            e.setdefault("args", {})
            if isinstance(e["args"], dict):
                e["args"][rng.choice(("Input Dims", "Collective name", "kernel_file"))] = text
        else:
            e[where] = text
    return "huge-string"


def duplicate(doc: Any, rng: random.Random, huge: int) -> str:
    events = _events(doc)
    if events:
        k = rng.randrange(len(events))
        events[k:k] = [copy.deepcopy(events[k]) for _ in range(rng.choice((2, 100, 2000)))]
    return "duplicated-events"


def odd_header(doc: Any, rng: random.Random, huge: int) -> str:
    if not isinstance(doc, dict):
        return "odd-header"
    key = rng.choice(("distributedInfo", "deviceProperties", "displayTimeUnit", "schemaVersion",
                      "baseTimeNanoseconds", "traceEvents"))
    if key == "distributedInfo":
        doc[key] = rng.choice(({"rank": 2**70}, {"rank": -5}, {"rank": "x", "world_size": [1]},
                               {"world_size": 2**70}, {"world_size": 10**9}, [1, 2], "rank 0",
                               {"rank": 1.5, "world_size": True}))
    elif key == "deviceProperties":
        doc[key] = rng.choice(([{"id": "zero", "name": 5, "totalGlobalMem": "big"}],
                               [{"id": 2**70, "numSms": -5, "computeMajor": "x"}], "oops",
                               [None, 3, {"id": 0, "numSms": 1e308}], {"id": 0}))
    elif key == "traceEvents":
        doc[key] = rng.choice(({}, "x", None, [[1]], [1, 2, 3]))
    else:
        doc[key] = rng.choice(ODD_VALUES)
    return "odd-header"


STRUCTURED: tuple[Callable[[Any, random.Random, int], str], ...] = (
    absurd_time, absurd_time, same_time, type_swap, type_swap, delete_keys, huge_string,
    duplicate, odd_header)


# ---------------------------------------------------------------- byte mutations
def byte_flips(text: bytes, rng: random.Random) -> bytes:
    data = bytearray(text)
    for _ in range(rng.choice((1, 4, 64))):
        if data:
            data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data)


def truncate(text: bytes, rng: random.Random) -> bytes:
    return text[:rng.randrange(len(text))] if text else text


def gzip_variant(text: bytes, rng: random.Random, bomb: int) -> tuple[str, bytes]:
    gz = gzip.compress(text, compresslevel=1)
    pick = rng.randrange(6)
    if pick == 0:
        return "gzip-truncated", gz[:rng.randrange(10, max(11, len(gz)))]
    if pick == 1:  # the trailer claims 4 GiB - 1 bytes
        return "gzip-lying-trailer", gz[:-4] + (0xFFFFFFFF).to_bytes(4, "little")
    if pick == 2:
        half = len(text) // 2
        return "gzip-members", gzip.compress(text[:half]) + gzip.compress(text[half:])
    if pick == 3:
        return "gzip-trailing-garbage", gz + b"\x00garbage" * rng.choice((1, 100))
    if pick == 4:
        return "gzip-bytes-flipped", byte_flips(gz, rng)
    # A bomb: a valid head, then far more blank space than any trace holds.
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [comp.compress(b'{"traceEvents":[')]
    block = b" " * (1 << 20)
    for _ in range(max(1, bomb >> 20)):
        parts.append(comp.compress(block))
    parts.append(comp.compress(b"]}"))
    parts.append(comp.flush())
    return "gzip-bomb", b"".join(parts)


def mutants(base: bytes, count: int, seed: int, huge: int = 1 << 20, bomb: int = 1 << 24,
            stem: str = "trace") -> list[Mutant]:
    """`count` mutants of the JSON text `base` (huge: the length of huge strings; bomb: the
    inflated size of gzip bombs)."""
    rng = random.Random(seed)
    doc = json.loads(base)
    out = []
    for k in range(count):
        pick = rng.random()
        gz = rng.random() < 0.3
        if pick < 0.6:
            d = copy.deepcopy(doc)
            kind = rng.choice(STRUCTURED)(d, rng, huge)
            data = _text(d)
        elif pick < 0.75:
            kind, data = "byte-flips", byte_flips(base, rng)
        elif pick < 0.85:
            kind, data = "truncated", truncate(base, rng)
        else:
            kind, data = gzip_variant(base, rng, bomb)
            gz = False  # already a gzip file
            out.append(Mutant(kind, f"{stem}-{k:04d}-{kind}.json.gz", data))
            continue
        if gz:
            data = gzip.compress(data, compresslevel=1)
        out.append(Mutant(kind, f"{stem}-{k:04d}-{kind}.json{'.gz' if gz else ''}", data))
    return out
