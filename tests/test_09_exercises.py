"""Grading tests for the exercise of notebook 09 (file responses).

The test grades one function whose body the student edition removes; it fails with
NotImplementedError on the student stub and passes on a correct solution.
"""
import pytest

from lowserver.ranges import RangeNotSatisfiable, parse_byte_range


def test_exercise_1_parse_byte_range():
    # the three shapes of RFC 9110 §14.1.2, as half-open slices
    assert parse_byte_range("bytes=0-499", 1000) == slice(0, 500)
    assert parse_byte_range("bytes=0-0", 1000) == slice(0, 1)
    assert parse_byte_range("bytes=500-", 1000) == slice(500, 1000)
    assert parse_byte_range("bytes=-100", 1000) == slice(900, 1000)
    assert parse_byte_range("bytes=999-999", 1000) == slice(999, 1000)
    # cut to the end; a suffix longer than the file is the whole file
    assert parse_byte_range("bytes=500-5000", 1000) == slice(500, 1000)
    assert parse_byte_range("bytes=-5000", 1000) == slice(0, 1000)
    assert parse_byte_range("bytes=-1", 1) == slice(0, 1)
    # the unit is case-insensitive; empty list elements are allowed (RFC 9110 §5.6.1)
    assert parse_byte_range("BYTES=1-2", 10) == slice(1, 3)
    assert parse_byte_range("bytes=1-2, ", 10) == slice(1, 3)
    # another unit: ignored
    assert parse_byte_range("items=0-5", 10) is None
    assert parse_byte_range("", 10) is None
    # not satisfiable, or not one range: 416, with a reason
    for value, size in [("bytes=10-", 10), ("bytes=10-20", 10), ("bytes=0-", 0),
                        ("bytes=-5", 0), ("bytes=-0", 10), ("bytes=5-4", 10),
                        ("bytes=0-1,3-4", 10), ("bytes=", 10), ("bytes=-", 10),
                        ("bytes=a-b", 10), ("bytes=1-2-3", 10), ("bytes= , ", 10),
                        ("bytes=+1-2", 10), ("bytes=0x1-2", 10)]:
        with pytest.raises(RangeNotSatisfiable) as caught:
            parse_byte_range(value, size)
        assert str(caught.value), value
        assert isinstance(caught.value, ValueError)
    # the reason names the problem
    with pytest.raises(RangeNotSatisfiable, match="2 ranges"):
        parse_byte_range("bytes=0-1,3-4", 10)
    with pytest.raises(RangeNotSatisfiable, match="past the end"):
        parse_byte_range("bytes=10-", 10)
    # large numbers are just numbers
    assert parse_byte_range(f"bytes={2**40}-", 2**41) == slice(2**40, 2**41)
