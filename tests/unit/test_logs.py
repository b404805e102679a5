"""The redaction filter: configured secrets and bearer tokens never reach a formatted line."""

from __future__ import annotations

import io
import json
import logging

from agent.logs import setup_logging


def test_json_lines_redact_secrets_in_message_args_extras_and_tracebacks() -> None:
    stream = io.StringIO()
    setup_logging("DEBUG", secrets=["topsecretvalue"], stream=stream, json_lines=True)
    log = logging.getLogger("t")
    log.info("calling with %s", "topsecretvalue", extra={"header": "Bearer abcdefghijklmnop"})
    try:
        raise ValueError("bad key topsecretvalue")
    except ValueError:
        log.exception("failed")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0]["msg"] == "calling with ***"
    assert lines[0]["header"] == "Bearer ***"
    assert "topsecretvalue" not in stream.getvalue()
    assert "ValueError" in lines[1]["exc"]


def test_readable_lines_on_a_tty() -> None:
    stream = io.StringIO()
    setup_logging("INFO", stream=stream, json_lines=False)
    logging.getLogger("x").info("hello", extra={"component": "pos"})
    assert "INFO  x: hello  component=pos" in stream.getvalue()
