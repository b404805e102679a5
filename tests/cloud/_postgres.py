"""A real PostgreSQL for the cloud tests: the one in $SHOPEDGE_TEST_POSTGRES_URL, or a private
cluster started here (initdb into a temp dir, trust auth, 127.0.0.1 on a free port).

As root, the cluster runs as the `postgres` system user (PostgreSQL refuses to run as root).
If PostgreSQL is missing or cannot start, the test FAILS (deploy/system-deps.sh test installs
it); nothing is skipped.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ENV_URL = "SHOPEDGE_TEST_POSTGRES_URL"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _bindir() -> Path:
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        candidate = Path(out.stdout.strip())
        if (candidate / "initdb").exists():
            return candidate
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    pytest.fail("PostgreSQL is not installed (initdb not found; run deploy/system-deps.sh test)")


def _as_user() -> tuple[list[str], int | None, int | None]:
    """The command prefix and uid/gid to run PostgreSQL with."""
    if os.geteuid() != 0:
        return [], None, None
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        pytest.fail("running as root and there is no 'postgres' user to run PostgreSQL as")
    runuser = shutil.which("runuser")
    if runuser is None:
        pytest.fail("running as root and runuser(1) is missing: cannot start PostgreSQL as 'postgres'")
    return [runuser, "-u", "postgres", "--"], user.pw_uid, user.pw_gid


@contextlib.contextmanager
def postgres_cluster(*, durable: bool = False) -> Iterator[str]:
    """Yield a server URL (postgresql+psycopg://user@127.0.0.1:port/postgres); stopped after.

    `durable` keeps fsync on (the bench); tests run with fsync off, which changes nothing they
    check (commits still happen in order; only a machine crash could undo one).
    """
    url = os.environ.get(ENV_URL)
    if url:
        yield url
        return
    bindir = _bindir()
    prefix, uid, gid = _as_user()
    root = Path(tempfile.mkdtemp(prefix="shopedge-pg-"))
    data = root / "data"
    if uid is not None and gid is not None:
        os.chown(root, uid, gid)
    port = _free_port()
    init = subprocess.run(
        [*prefix, str(bindir / "initdb"), "-D", str(data), "-U", "shopedge", "--auth=trust", "-E", "UTF8"],
        capture_output=True,
        text=True,
        check=False,
    )
    if init.returncode != 0:
        pytest.fail(f"initdb failed: {init.stderr.strip() or init.stdout.strip()}")
    log = root / "postgres.log"
    proc = subprocess.Popen(
        [
            *prefix,
            str(bindir / "postgres"),
            "-D",
            str(data),
            "-p",
            str(port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={root}",
            "-c",
            "max_connections=60",
            "-c",
            f"fsync={'on' if durable else 'off'}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"PostgreSQL did not start: {log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.1)
        _wait_ready(f"postgresql+psycopg://shopedge@127.0.0.1:{port}/postgres")
        yield f"postgresql+psycopg://shopedge@127.0.0.1:{port}/postgres"
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(root, ignore_errors=True)


def _wait_ready(url: str) -> None:
    import psycopg

    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    deadline = time.monotonic() + 30
    while True:
        try:
            with psycopg.connect(dsn, connect_timeout=2):
                return
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                pytest.fail(f"PostgreSQL accepts no connections: {exc}")
            time.sleep(0.2)


def fresh_database(server_url: str) -> str:
    """Create an empty database on the server and return its SQLAlchemy URL."""
    import psycopg

    name = f"fleet_{uuid.uuid4().hex[:12]}"
    dsn = server_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return server_url.rsplit("/", 1)[0] + f"/{name}"
