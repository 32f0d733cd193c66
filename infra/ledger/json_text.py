"""JSON column values as text: the very text `json.dumps` writes, faster.

`json.dumps` builds a new C encoder for every call, about half of what it costs for the small
documents a decision stores (its votes, their contributions), and a backtest stores hundreds of
thousands. Here one encoder is built once, with json.dumps's own defaults (separators, ASCII
escaping, NaN and infinities written as JavaScript does), so the text is byte for byte the same.
It skips the circular-reference check: a column value is plain data, never a cycle."""

from __future__ import annotations

import json
from json.encoder import JSONEncoder, c_make_encoder, encode_basestring_ascii
from typing import Any

_DEFAULTS = JSONEncoder()


def _build() -> Any:
    if c_make_encoder is None:  # a Python built without the _json accelerator
        return None
    return c_make_encoder(
        None,  # markers: no circular-reference check
        _DEFAULTS.default,  # raises TypeError for what JSON cannot hold, as json.dumps does
        encode_basestring_ascii,
        None,  # indent
        _DEFAULTS.key_separator,
        _DEFAULTS.item_separator,
        False,  # sort_keys
        False,  # skipkeys
        True,  # allow_nan
    )


_ENCODE = _build()


def dumps(value: Any) -> str:
    """`json.dumps(value)`, the same text."""
    if _ENCODE is None:
        return json.dumps(value)
    return "".join(_ENCODE(value, 0))


class JsonText(str):
    """A JSON value already written as its text (by `dumps`, or pieced from its pieces): a
    column stores it as it is (infra.ledger.driver_insert)."""

    __slots__ = ()


def text_of(value: str) -> str:
    """`dumps(value)` of a string: json.dumps's own function for strings."""
    return encode_basestring_ascii(value)


def pieces_around(value: Any, holes: list[str]) -> list[str]:
    """`dumps(value)` cut where each string of `holes` (values inside `value`, in the order
    they are written) is: the text of `value` with other strings in their place is the pieces
    joined by their `text_of`."""
    text, out = dumps(value), []
    for hole in holes:
        before, found, text = text.partition(text_of(hole))
        if not found or text_of(hole) in text:
            raise ValueError(f"{hole!r} is not once in the JSON text of {value!r}")
        out.append(before)
    return [*out, text]
