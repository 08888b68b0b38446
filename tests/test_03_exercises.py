"""Grading tests for the exercises of notebook 03 (status codes and the exception mapping).

Each test grades one function whose body the student edition removes; each fails with
NotImplementedError on the student stub and passes on a correct solution.
"""
import logging

import pytest

from lowserver import exceptions as ex
from lowserver.response import Response


def test_exercise_1_exception_class():
    assert ex.exception_class(404) is ex.HTTPNotFound
    assert ex.exception_class(200) is ex.HTTPOk
    assert ex.exception_class(302) is ex.HTTPFound
    assert ex.exception_class(304) is ex.HTTPNotModified
    assert ex.exception_class(431) is ex.HTTPRequestHeaderFieldsTooLarge
    assert ex.exception_class(500) is ex.HTTPInternalServerError
    assert ex.exception_class(511) is ex.HTTPNetworkAuthenticationRequired
    for status in (418, 600, 0, -1, 299):
        with pytest.raises(LookupError):
            ex.exception_class(status)

    class HTTPTeapot(ex.HTTPClientError):      # a subclass defined later is found too
        status_code = 418

    assert ex.exception_class(418) is HTTPTeapot

    class SpecialNotFound(ex.HTTPNotFound):     # the class nearest the root wins
        pass

    assert ex.exception_class(404) is ex.HTTPNotFound


def test_exercise_2_internal_error_body():
    try:
        raise KeyError("database-password")
    except KeyError as error:
        caught = error
    plain = ex.internal_error_body(caught)
    assert plain == "500 Internal Server Error\n\nServer got itself in trouble"
    assert ex.internal_error_body(None) == plain
    debug = ex.internal_error_body(caught, debug=True)
    assert debug.startswith("500 Internal Server Error\n\nTraceback (most recent call last):")
    assert "KeyError: 'database-password'" in debug
    page = ex.internal_error_body(caught, html_page=True)
    assert page == ("<html><head><title>500 Internal Server Error</title></head><body>\n"
                    "<h1>500 Internal Server Error</h1>\nServer got itself in trouble\n"
                    "</body></html>\n")
    try:
        raise ValueError("<b>&</b>")
    except ValueError as error:
        html_debug = ex.internal_error_body(error, debug=True, html_page=True)
    assert "<h2>Traceback:</h2>\n<pre>Traceback" in html_debug
    assert "ValueError: &lt;b&gt;&amp;&lt;/b&gt;" in html_debug and "<b>&</b>" not in html_debug


def test_exercise_3_response_for_result(caplog):
    async def handler(request):
        pass

    response = Response(text="ok")
    assert ex.response_for_result(handler, response) is response
    with pytest.warns(DeprecationWarning):
        assert ex.response_for_result(handler, ex.HTTPNotFound()).status == 404
    with caplog.at_level(logging.ERROR, logger="lowserver.server"):
        for bad in (None, "text", 42, b"bytes", {"a": 1}):
            answer = ex.response_for_result(handler, bad)
            assert isinstance(answer, ex.HTTPInternalServerError)
            assert answer.text == "500 Internal Server Error\n\nServer got itself in trouble"
    assert len(caplog.records) == 5
    assert all("handler" in record.getMessage() for record in caplog.records)
    assert "Missing return statement" in caplog.records[0].getMessage()
    assert "test_exercise_3_response_for_result.<locals>.handler" in caplog.records[1].getMessage()
