"""The one bounded JSON reader (base.jsonread): every way a body can be bad is one error."""

from __future__ import annotations

import pytest

from base.jsonread import MAX_DEPTH, JsonInputError, read_json


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested deeper"),  # RecursionError inside json.loads
        (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), "nested deeper"),
        (b'{"a":' * (MAX_DEPTH + 1) + b"1" + b"}" * (MAX_DEPTH + 1), "nested deeper"),
        (b"\xff", "not UTF-8"),
        (b"{", "not JSON"),
        (b"NaN", "NaN is not valid JSON"),
        (b'{"x": Infinity}', "Infinity"),
        (b"1" * 5000, "not JSON"),  # over Python's int digit limit: ValueError
        (b" " * 2000, "over the 1000 byte limit"),
    ],
)
def test_bad_input_is_one_error_that_names_the_problem(raw: bytes, why: str) -> None:
    with pytest.raises(JsonInputError, match=why):
        read_json(raw, max_bytes=1000 if len(raw) == 2000 else 1 << 21)


def test_values_within_the_limits_parse() -> None:
    nested = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert read_json(nested, max_bytes=1000) is not None
    assert read_json(b'{"a": [1, 2.5, "\xc3\xa9", null, true]}', max_bytes=1000) == {
        "a": [1, 2.5, "é", None, True]
    }
