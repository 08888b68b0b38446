"""Run the demo: ``python -m lowserver``.

Hand-written (not generated). Until the server stage exists this parses a sample request with
the stage-01 parser and prints what it found.
"""
from __future__ import annotations

import argparse
import sys

SAMPLE = (b"POST /echo?name=lowserver HTTP/1.1\r\nHost: example.com\r\n"
          b"Transfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n"
          b"5;note=first\r\nHello\r\n7\r\n, world\r\n0\r\nChecksum: 42\r\n\r\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lowserver", description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    from lowserver.http_parser import EndOfMessage, HttpRequestParser, RawRequestMessage

    print("feeding the parser:")
    print("   ", SAMPLE)
    for event in HttpRequestParser().feed(SAMPLE):
        if isinstance(event, RawRequestMessage):
            print(f"request  {event.method} {event.path} HTTP/{event.version.major}.{event.version.minor}")
            for name, value in event.headers.items():
                print(f"  header {name}: {value}")
        elif isinstance(event, EndOfMessage):
            print(f"end of message; trailers: {dict(event.trailers)}")
        else:
            print(f"body     {bytes(event)!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
