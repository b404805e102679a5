"""The LINE Pay and Messaging API emulators in their own process, for bench/footprint.py.

The bench measures the daemon's process only, so the stand-ins for LINE must not share it (nor
the bench's own loop, which drives the tills). Both answer at once (no injected delay).

Usage: python bench/_emulators.py CONFIG.toml  (prints "ready" once both listen; stops on SIGTERM)
"""

from __future__ import annotations

import asyncio
import signal
import sys
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emulators.linepay import EmulatorServer
from emulators.messaging.server import MessagingEmulator, serve


async def main(config: dict[str, Any]) -> None:
    linepay, line = config["linepay"], config["line"]
    pay = EmulatorServer(
        channel_id=linepay["channel_id"],
        channel_secret=linepay["channel_secret"],
        port=urlsplit(linepay["api_base"]).port or 0,
    )
    await pay.start()
    messaging = MessagingEmulator(access_tokens={line["channel_access_token"]}, quota_type="none")
    runner, _ = await serve(messaging, port=urlsplit(line["api_base"]).port or 0)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await stop.wait()
    await runner.cleanup()
    await pay.stop()


if __name__ == "__main__":
    asyncio.run(main(tomllib.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))))
