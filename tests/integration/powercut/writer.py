"""A ShopEdge writer for the power-cut tests: the outbox crash child or the agent daemon.

With SHOPEDGE_POWERCUT_SYNCHRONOUS set (e.g. OFF), every SQLite connection the writer opens is
forced to that `synchronous` level, whatever pragmas the code sets: the harness's own check that
it does catch a writer that acknowledges before its data is on disk.

`zygote` is a fork server for the agent: it imports the daemon once (line-bot-sdk alone takes
seconds of CPU) and forks a fresh `shopedge run` per request, so each power-cut round pays for a
process start, not for the imports. Requests on stdin, one answer line each on stdout:
`run CONFIG LOG` -> pid; `poll PID` -> exit status or `-` while it runs; `wait PID` -> exit status.

Usage: python writer.py outbox DB_PATH RUN_TAG
       python writer.py agent run --config CONFIG
       python writer.py zygote
"""

from __future__ import annotations

import asyncio
import importlib
import os
import re
import sqlite3
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

_SYNC_PRAGMA = re.compile(r"\s*PRAGMA\s+synchronous\s*=", re.IGNORECASE)


def _force_synchronous(level: str) -> None:
    def rewrite(sql: str) -> str:
        return f"PRAGMA synchronous={level}" if _SYNC_PRAGMA.match(sql) else sql

    class ForcedCursor(sqlite3.Cursor):
        def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
            return super().execute(rewrite(sql), *args)

    class ForcedConnection(sqlite3.Connection):
        def cursor(self, factory: Any = ForcedCursor) -> Any:
            return super().cursor(factory)

        def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
            return super().execute(rewrite(sql), *args)

    real_connect = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        kwargs.setdefault("factory", ForcedConnection)
        conn = real_connect(*args, **kwargs)
        conn.execute(f"PRAGMA synchronous={level}")
        return conn

    sqlite3.connect = connect  # type: ignore[assignment]
    sqlite3.dbapi2.connect = connect  # type: ignore[assignment]  # what SQLAlchemy's pysqlite calls


def _zygote() -> int:
    for module in ("agent.cli", "agent.daemon"):  # the imports every forked agent shares
        importlib.import_module(module)

    for line in sys.stdin:
        command, *args = line.split()
        if command == "run":
            pid = os.fork()
            if pid == 0:
                _forked_agent(*args)
            answer = str(pid)
        else:
            pid, status = os.waitpid(int(args[0]), os.WNOHANG if command == "poll" else 0)
            answer = "-" if pid == 0 else str(os.waitstatus_to_exitcode(status))
        sys.stdout.write(answer + "\n")
        sys.stdout.flush()
    return 0


def _forked_agent(config: str, log: str) -> None:
    code = 70
    try:
        os.setsid()
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 2)
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(null, 1)
        from agent.cli import main as agent_main

        code = agent_main(["run", "--config", config])
    finally:
        os._exit(code)


def main(argv: list[str]) -> int:
    level = os.environ.get("SHOPEDGE_POWERCUT_SYNCHRONOUS")
    if level:
        _force_synchronous(level)
    if argv[0] == "zygote":
        return _zygote()
    if argv[0] == "outbox":
        from tests.integration.outbox_crash_child import main as outbox_child

        asyncio.run(outbox_child(Path(argv[1]), argv[2]))
        return 0
    from agent.cli import main as agent_main

    return agent_main(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
