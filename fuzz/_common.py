"""Helpers shared by the atheris harnesses in this directory (see README.md).

Each harness is a script run as `python fuzz/fuzz_<target>.py [libFuzzer flags] [corpus]`;
Python puts this directory first on `sys.path`, so `import _common` works from all of them.
"""

from __future__ import annotations

import json
import re
import sys
import warnings
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import atheris

# Values that parsers tend to mishandle, offered alongside purely random ones.
AWKWARD: tuple[Any, ...] = (
    None,
    True,
    False,
    0,
    -1,
    1,
    2**31,
    2**32,
    2**64,
    -(2**63),
    0.0,
    -0.0,
    0.5,
    1e308,
    -1e308,
    float("inf"),
    float("-inf"),
    float("nan"),
    "",
    " ",
    "\x00",
    "\ud800",  # a lone surrogate: valid in JSON text, not in UTF-8
    "é",
    "🙂",
    "x" * 9000,  # over the 8000-character limits
    [],
    {},
    [1, 2],
    {"type": "start"},
)


def split_mode(data: bytes, modes: int) -> tuple[int, bytes]:
    """The first byte picks what a harness does with the rest, so a seed file is readable:
    one mode byte, then e.g. a JSON message as it goes over the wire."""
    if not data:
        return 0, b""
    return data[0] % modes, data[1:]


def deep_json(fdp: atheris.FuzzedDataProvider, key: str) -> str:
    """An object whose `key` holds arrays or objects nested up to 5000 deep: beyond the
    recursion limit of json.loads (~1000), far beyond what mutation reaches by itself."""
    depth = fdp.ConsumeIntInRange(0, 5000)
    opener, closer = ("[", "]") if fdp.ConsumeBool() else ('{"a":', "}")
    tail = closer * depth if fdp.ConsumeBool() else ""  # unterminated, too
    return "{" + json.dumps(key) + ": " + opener * depth + "0" + tail + "}"


def json_value(fdp: atheris.FuzzedDataProvider, keys: Sequence[str], depth: int = 0) -> Any:
    """A JSON-like value drawn from the fuzzer's bytes; objects favour `keys`, so the
    fuzzer reaches field validation instead of stopping at "unknown type"."""
    kind = fdp.ConsumeIntInRange(0, 8 if depth < 4 else 5)
    if kind == 0:
        return fdp.PickValueInList(list(AWKWARD))
    if kind == 1:
        return fdp.ConsumeBool()
    if kind == 2:
        return fdp.ConsumeIntInRange(-(2**40), 2**40)
    if kind == 3:
        return fdp.ConsumeFloat()  # includes inf and nan
    if kind == 4:
        return fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 32))
    if kind == 5:
        return fdp.PickValueInList(list(keys)) if keys else None
    if kind == 6:
        return [json_value(fdp, keys, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 4))]
    return json_object(fdp, keys, depth + 1)


def json_object(fdp: atheris.FuzzedDataProvider, keys: Sequence[str], depth: int = 0) -> dict:
    out: dict[str, Any] = {}
    for _ in range(fdp.ConsumeIntInRange(0, 6)):
        key = (
            fdp.PickValueInList(list(keys)) if keys and fdp.ConsumeBool() else fdp.ConsumeUnicode(8)
        )
        out[key] = json_value(fdp, keys, depth)
    return out


def dumps(value: Any) -> str:
    """JSON text for a generated value (NaN and Infinity included, as json.loads reads)."""
    return json.dumps(value)


# `feature` below: one instrumented `if` per bucket, so each bucket is its own edge.
_BUCKETS = 64
_SOURCE = "def _bucket(n):\n" + "".join(
    f"    if n == {i}:\n        return\n" for i in range(_BUCKETS)
)
_namespace: dict[str, Any] = {}
exec(compile(_SOURCE, "<fuzz-feature-buckets>", "exec"), _namespace)
_bucket = atheris.instrument_func(_namespace["_bucket"])


def feature(tag: str) -> None:
    """Report an outcome that coverage cannot see, such as which format a C library
    decoded, or which of its errors it raised: libFuzzer then keeps the inputs that reach
    new outcomes instead of dropping them as redundant."""
    _bucket(zlib.crc32(tag.encode("utf-8", "surrogatepass")) % _BUCKETS)


def error_shape(message: str) -> str:
    """An error message without its specifics (numbers, quoted input), for `feature`."""
    return re.sub(r"'[^']*'|\"[^\"]*\"|\d+", "_", message)[:120]


def run(test_one_input: Callable[[bytes], None]) -> None:
    """Start libFuzzer on `test_one_input` with sys.argv's flags and corpus dirs.

    Warnings are errors: a RuntimeWarning from numpy (an invalid cast, an overflow) marks
    input the code does not really handle, and should fail like an exception would."""
    warnings.simplefilter("error")
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
