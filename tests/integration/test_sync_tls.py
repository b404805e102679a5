"""TLS against a real Mosquitto: the device verifies the broker with `mqtt.ca_file` and proves
itself with a client certificate whose CN is its store id (`use_identity_as_username`), so the
example ACL applies unchanged. Certificates are made with the openssl CLI for each test."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.context import AgentContext
from agent.db import migrate, open_state_db
from agent.sync import SyncService
from base.health import Level
from offline_queue import Outbox
from tests.integration.sync_brokers import ACL_EXAMPLE, Broker, make_mosquitto
from tests.integration.sync_support import device_config


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(root: Path, name: str = "ca") -> Path:
    """A CA plus a server cert for 127.0.0.1 and a client cert with CN=store-001."""
    root.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
             "-keyout", "ca.key", "-out", "ca.crt", cwd=root)  # fmt: skip
    (root / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n", encoding="utf-8")
    for who, cn in (("server", "127.0.0.1"), ("client", "store-001")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}", "-keyout", f"{who}.key",
                 "-out", f"{who}.csr", cwd=root)  # fmt: skip
        ext = ["-extfile", "san.ext"] if who == "server" else []
        _openssl("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-days", "2", "-out", f"{who}.crt", *ext, cwd=root)  # fmt: skip
    return root


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[Broker, Path]]:
    pki = make_pki(tmp_path / "pki")
    broker = make_mosquitto(
        tmp_path / "tls",
        acl=ACL_EXAMPLE,
        extra=[
            f"cafile {pki / 'ca.crt'}",
            f"certfile {pki / 'server.crt'}",
            f"keyfile {pki / 'server.key'}",
            "require_certificate true",
            "use_identity_as_username true",
        ],
    )
    broker.start()
    try:
        yield broker, pki
    finally:
        broker.stop()


@contextlib.asynccontextmanager
async def sync_over(broker: Broker, tmp_path: Path, **mqtt: object):  # type: ignore[no-untyped-def]
    config = device_config(broker, tmp_path, tls=True, **mqtt)
    db = open_state_db(config.db_path)
    migrate(db)
    outbox = await Outbox.open(config.db_path)
    service = SyncService(AgentContext(config=config, db=db, services={"outbox": outbox}))
    task = asyncio.create_task(service.run())
    try:
        yield service, outbox
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await outbox.close()
        db.close()


async def test_device_connects_with_ca_and_client_cert_and_publishes(
    tls_broker: tuple[Broker, Path], tmp_path: Path
) -> None:
    broker, pki = tls_broker
    async with sync_over(
        broker, tmp_path, ca_file=str(pki / "ca.crt"), cert_file=str(pki / "client.crt"),
        key_file=str(pki / "client.key"),
    ) as (service, outbox):  # fmt: skip
        await asyncio.wait_for(service.connected.wait(), 15)
        await outbox.put("sale", {"n": 1})
        for _ in range(100):
            if not await outbox.depth():
                break
            await asyncio.sleep(0.05)
        assert await outbox.depth() == 0, "PUBACKed over TLS, allowed by the ACL for CN=store-001"


async def test_untrusted_broker_or_missing_client_cert_never_connects(
    tls_broker: tuple[Broker, Path], tmp_path: Path
) -> None:
    broker, pki = tls_broker
    other = make_pki(tmp_path / "other-ca", "someone-else")
    cases = [
        {
            "ca_file": str(other / "ca.crt"),
            "cert_file": str(pki / "client.crt"),
            "key_file": str(pki / "client.key"),
        },
        {"ca_file": str(pki / "ca.crt")},
    ]
    for index, mqtt in enumerate(cases):
        # A refused client certificate surfaces as a TLS alert after the handshake; the connect
        # timeout bounds how long that attempt takes.
        async with sync_over(broker, tmp_path / str(index), connect_timeout=2.0, **mqtt) as (
            service,
            _outbox,
        ):
            for _ in range(100):
                health = service.ctx.health.get("sync")
                if health is not None and "disconnected" in health.detail:
                    break
                await asyncio.sleep(0.05)
            assert not service.connected.is_set()
            health = service.ctx.health.get("sync")
            assert health is not None and health.level is Level.AMBER and "disconnected" in health.detail
