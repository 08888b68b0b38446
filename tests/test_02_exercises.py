"""Grading tests for the exercises of notebook 02 (requests and responses).

Each test grades one function whose body the student edition removes; each fails with
NotImplementedError on the student stub and passes on a correct solution.
"""
import pytest

from lowserver.http_parser import HttpVersion, HttpVersion10, HttpVersion11
from lowserver.fields import format_http_date, parse_cookie_header
from lowserver.http_writer import must_be_empty_body, status_line


def test_exercise_1_format_http_date():
    assert format_http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert format_http_date(784111777) == "Sun, 06 Nov 1994 08:49:37 GMT"   # RFC 9110 §5.6.7
    assert format_http_date(784111777.999) == "Sun, 06 Nov 1994 08:49:37 GMT"
    assert format_http_date(951782400) == "Tue, 29 Feb 2000 00:00:00 GMT"
    assert format_http_date(4102444799) == "Thu, 31 Dec 2099 23:59:59 GMT"
    assert format_http_date(1_000_000_000) == "Sun, 09 Sep 2001 01:46:40 GMT"
    assert format_http_date(-86400) == "Wed, 31 Dec 1969 00:00:00 GMT"


def test_exercise_2_parse_cookie_header():
    assert parse_cookie_header("") == []
    assert parse_cookie_header("a=1") == [("a", "1")]
    assert parse_cookie_header("a=1; b=2") == [("a", "1"), ("b", "2")]
    assert parse_cookie_header("a=1;b=2 ;  c = 3 ") == [("a", "1"), ("b", "2"), ("c", "3")]
    assert parse_cookie_header('q="quoted value"') == [("q", "quoted value")]
    assert parse_cookie_header('e="a\\054b\\"c"') == [("e", 'a,b"c')]
    assert parse_cookie_header("x=a=b") == [("x", "a=b")]
    assert parse_cookie_header("x=") == [("x", "")]
    assert parse_cookie_header("junk; =noname; ok=1") == [("ok", "1")]
    assert parse_cookie_header("a=1; a=2") == [("a", "1"), ("a", "2")]
    assert parse_cookie_header('h="') == [("h", '"')]


def test_exercise_3_must_be_empty_body():
    for method in ("GET", "POST", "DELETE"):
        assert not must_be_empty_body(method, 200)
        assert not must_be_empty_body(method, 404)
        assert not must_be_empty_body(method, 500)
        assert not must_be_empty_body(method, 205)
        for status in (100, 101, 103, 199, 204, 304):
            assert must_be_empty_body(method, status), (method, status)
    for status in (200, 206, 301, 404, 500):
        assert must_be_empty_body("HEAD", status)
    assert must_be_empty_body("CONNECT", 200) and must_be_empty_body("CONNECT", 299)
    assert not must_be_empty_body("CONNECT", 407)
    assert not must_be_empty_body("head", 200)      # methods are case-sensitive (RFC 9110 §9.1)


def test_exercise_4_status_line():
    assert status_line(HttpVersion11, 200, "OK") == "HTTP/1.1 200 OK"
    assert status_line(HttpVersion10, 404, "Not Found") == "HTTP/1.0 404 Not Found"
    assert status_line(HttpVersion(1, 2), 200, "OK") == "HTTP/1.1 200 OK"
    assert status_line(HttpVersion(2, 0), 503, "Busy") == "HTTP/1.1 503 Busy"
    assert status_line(HttpVersion(0, 9), 200, "OK") == "HTTP/1.0 200 OK"
    assert status_line(HttpVersion11, 299, "") == "HTTP/1.1 299 "
    assert status_line(HttpVersion11, 100, "Continue") == "HTTP/1.1 100 Continue"
    assert status_line(HttpVersion11, 599, "") == "HTTP/1.1 599 "
    for bad in (0, 99, 600, 1000, -200):
        with pytest.raises(ValueError):
            status_line(HttpVersion11, bad, "X")
