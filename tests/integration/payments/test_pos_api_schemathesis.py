"""Property-based testing of the POS API from its own /openapi.json (schemathesis): whatever
the generated request, valid or not, the API answers without a 5xx and as its schema says."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from emulators.linepay import EmulatorServer
from pos_bridge.api import openapi_document
from tests.integration.payments.conftest import CHANNEL_ID, CHANNEL_SECRET
from tests.integration.payments.harness import TOKEN, make_config, running

schema = schemathesis.openapi.from_dict(openapi_document(make_config(Path("/tmp"), "http://127.0.0.1:1")))


@contextlib.contextmanager
def live_api() -> Iterator[str]:
    """Emulator + payment service + POS API on one background loop; yields the API URL."""
    loop = asyncio.new_event_loop()
    ready: list[str] = []
    stop = asyncio.Event()
    started = threading.Event()

    async def main(state_dir: Path) -> None:
        async with (
            EmulatorServer(channel_id=CHANNEL_ID, channel_secret=CHANNEL_SECRET) as emulator,
            running(state_dir, emulator.url) as h,
        ):
            ready.append(h.url)
            started.set()
            await stop.wait()

    with tempfile.TemporaryDirectory() as tmp:
        thread = threading.Thread(target=loop.run_until_complete, args=(main(Path(tmp)),), daemon=True)
        thread.start()
        assert started.wait(30), "POS API did not start"
        try:
            yield ready[0]
        finally:
            loop.call_soon_threadsafe(stop.set)
            thread.join(timeout=30)


@pytest.fixture(scope="module")
def api_url() -> Iterator[str]:
    with live_api() as url:
        yield url


@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_5xx_and_answers_match_the_schema(case: schemathesis.Case, api_url: str) -> None:
    session = requests.Session()
    if case.query and isinstance(case.query.get("wait"), int | float):
        case.query["wait"] = min(case.query["wait"], 0.5)  # long-polls of existing orders: keep it quick
    response = case.call(
        base_url=api_url, session=session, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=15
    )
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path}: {response.status_code} {response.text}"
    )
    case.validate_response(response, checks=[status_code_conformance, response_schema_conformance])
