"""JSON for hostile input: depth checked before parsing, no duplicate keys, no NaN/Infinity,
no strings that cannot be written back as UTF-8."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from semcodec.constants import MAX_HEADER_DEPTH
from semcodec.container.primitives import _fail

_BRACKETS = re.compile(r"[\[\]{}]")


def _json_depth_ok(text: str, limit: int) -> bool:
    """True when no array/object nests deeper than ``limit``; no recursion, linear time.

    Escapes are removed first so that the quotes left toggle string state exactly as a JSON
    parser would (up to the first syntax error, after which a parser stops anyway)."""
    text = text.replace("\\\\", "").replace('\\"', "")
    depth = 0
    for i, part in enumerate(text.split('"')):
        if i % 2:  # inside a string
            continue
        for match in _BRACKETS.finditer(part):
            if match.group() in "[{":
                depth += 1
                if depth > limit:
                    return False
            else:
                depth -= 1
    return True


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"non-finite number {text}")
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _check_strings(obj: Any) -> None:
    """Reject strings that cannot be written back as UTF-8 (lone surrogates from \\ud800)."""
    if isinstance(obj, str):
        obj.encode("utf-8")
    elif isinstance(obj, dict):
        for key, value in obj.items():
            key.encode("utf-8")
            _check_strings(value)
    elif isinstance(obj, list):
        for value in obj:
            _check_strings(value)


def _parse_json(raw: bytes, what: str) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _fail(f"{what}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    if not _json_depth_ok(text, MAX_HEADER_DEPTH):
        raise _fail(f"{what}: JSON nested deeper than {MAX_HEADER_DEPTH} levels")
    try:
        obj = json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_float=_finite_float,
            parse_constant=_reject_constant,
        )
        _check_strings(obj)
    except (ValueError, RecursionError, UnicodeEncodeError) as exc:
        raise _fail(f"{what}: invalid JSON ({exc})") from None
    return obj


def _dump_json(obj: Any, what: str) -> bytes:
    try:
        text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        raw = text.encode("utf-8")
    except (TypeError, ValueError, UnicodeEncodeError, RecursionError) as exc:
        raise _fail(f"{what}: cannot be stored as JSON ({exc})") from None
    if not _json_depth_ok(text, MAX_HEADER_DEPTH):
        raise _fail(f"{what}: JSON nested deeper than {MAX_HEADER_DEPTH} levels")
    return raw
