"""The web driver: the current screen as a kiosk page that updates itself over server-sent events.

Owns the kiosk HTTP server (aiohttp, inside the display service's task). Kiosk Chromium on the
Pi opens `http://127.0.0.1:8738/`: the page shows `/screen.png` full-screen, listens on
`/events`, and on each `screen` event preloads the new PNG before swapping it in, so the shopper
never sees a blank or half-loaded frame. The page is the same pixels as every other driver
(one layout), shown 1:1 when the window matches `display.size`, pixelated (never smoothed) if not.

Each SSE client has a one-slot queue: only the newest version matters, so a slow client
skips frames instead of growing a backlog; the queue is unregistered in `finally`. A frame is
PNG-encoded when a client first asks for it, or as it is presented to a kiosk that follows
(once per version, on the loop: see `_encoding`): frames nobody fetches cost no encoding.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from types import TracebackType
from typing import Final, Self

from aiohttp import web
from PIL import Image

from drivers.display.base import DriverError
from drivers.display.png import encode_png

__all__ = ["KIOSK_PAGE", "WebDriver", "encode_png"]

log = logging.getLogger(__name__)

HEARTBEAT_S: Final = 15.0  # below the 30-60 s idle timeouts of proxies and Chromium's own
KIOSK_PAGE: Final = """<!doctype html>
<html lang="zh-Hant"><head><meta charset="utf-8"><title>ShopEdge</title>
<style>
html,body{margin:0;height:100%;background:#fff;overflow:hidden;cursor:none}
img{display:block;width:100vw;height:100vh;object-fit:contain;image-rendering:pixelated}
</style></head>
<body data-version="-1"><img id="screen" alt="">
<script>
// Each server start has its own epoch, so a restarted agent (versions from 1 again) is followed too.
const img = document.getElementById("screen");
let wanted = "";
function load(key, version) {
  wanted = key;
  const next = new Image();
  next.onload = () => {
    if (wanted !== key) return;  // a newer frame was announced while this one loaded
    img.src = next.src;
    document.body.dataset.version = String(version);
  };
  next.onerror = () => setTimeout(() => { if (wanted === key) load(key, version); }, 1000);
  next.src = "screen.png?v=" + key;
}
const events = new EventSource("events");
events.addEventListener("screen", (e) => {
  const data = JSON.parse(e.data);
  const key = data.epoch + "-" + data.version;
  if (key !== wanted) load(key, data.version);
});
</script></body></html>
"""


class WebDriver:
    """Serves the kiosk page, the current frame and its change events on `host:port`."""

    name = "web"

    def __init__(
        self, host: str, port: int, size: tuple[int, int], *, heartbeat_s: float = HEARTBEAT_S
    ) -> None:
        self.host = host
        self.port = port
        self._size = size
        self._heartbeat_s = heartbeat_s
        self._image: Image.Image | None = None
        self._png: tuple[int, asyncio.Future[bytes]] | None = None  # (version, its encoding)
        self._version = 0
        self._clients: set[asyncio.Queue[int | None]] = set()
        self._runner: web.AppRunner | None = None
        self.epoch = secrets.token_hex(4)

    @property
    def size(self) -> tuple[int, int]:
        return self._size

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    @property
    def version(self) -> int:
        """How many frames have been presented (the number the page shows in data-version)."""
        return self._version

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self._page)
        app.router.add_get("/screen.png", self._screen)
        app.router.add_get("/events", self._events)
        return app

    async def __aenter__(self) -> Self:
        runner = web.AppRunner(self.app(), handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise DriverError(
                f"display.listen: cannot listen on {self.host}:{self.port} ({exc.strerror})"
            ) from None
        if self.port == 0:
            self.port = int(runner.addresses[0][1])
        self._runner = runner
        log.info("kiosk page serving", extra={"url": self.url})
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for queue in list(self._clients):
            _offer(queue, None)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def present(self, image: Image.Image) -> None:
        self._image = image
        self._version += 1
        for queue in list(self._clients):
            _offer(queue, self._version)
        if self._clients:
            # A kiosk is following and will ask for this frame at once: encode while the event
            # travels to it and its request comes back, not after (with nobody following,
            # nothing is encoded until someone asks).
            self._encoding(image, self._version)

    def _event(self, version: int) -> bytes:
        data = json.dumps({"version": version, "epoch": self.epoch})
        return f"event: screen\ndata: {data}\n\n".encode()

    async def _page(self, request: web.Request) -> web.Response:
        return web.Response(text=KIOSK_PAGE, content_type="text/html", headers={"Cache-Control": "no-store"})

    async def png(self) -> tuple[int, bytes] | None:
        """The current frame's version and PNG bytes (encoded on the first ask); None before any."""
        image, version = self._image, self._version
        if image is None:
            return None
        return version, await asyncio.shield(self._encoding(image, version))

    async def encoded(self, image: Image.Image) -> bytes:
        """`image` as PNG: the kiosk's own encoding when it is the frame showing (the display's
        support copy shares it instead of encoding the frame a second time)."""
        if image is self._image:
            return await asyncio.shield(self._encoding(image, self._version))
        return await asyncio.to_thread(encode_png, image)

    def _encoding(self, image: Image.Image, version: int) -> asyncio.Future[bytes]:
        """The PNG of frame `version`, started once (shared by every client that asks).

        Encoded on the loop, in the callback after the frame's events were handed to their
        writers: ~3 ms of C (Pillow's pixel copies, zlib) that the loop waits for once.
        Departure from "heavy work goes to a thread": in a worker thread the encoding gives the
        GIL back at each of its ~40 C calls and waits up to a switch interval (5 ms) to get it
        again whenever the loop is busy with the sale itself; the kiosk's frame came ~5 ms
        later at the median (bench/footprint.py: POS -> display p95 19.4 -> 14.7 ms).
        """
        if self._png is None or self._png[0] != version:
            future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().call_soon(_encode_into, future, image)
            self._png = (version, future)
        return self._png[1]

    async def _screen(self, request: web.Request) -> web.Response:
        current = await self.png()
        if current is None:
            return web.Response(status=503, text="no screen yet", headers={"Retry-After": "1"})
        version, body = current
        headers = {"Cache-Control": "no-store", "X-Screen-Version": str(version)}
        return web.Response(body=body, content_type="image/png", headers=headers)

    async def _events(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        queue: asyncio.Queue[int | None] = asyncio.Queue(maxsize=1)
        self._clients.add(queue)
        try:
            await response.write(b"retry: 1000\n\n")
            if self._image is not None:
                await response.write(self._event(self._version))
            while True:
                try:
                    async with asyncio.timeout(self._heartbeat_s):  # not wait_for: it can eat a cancel (3.11)
                        version = await queue.get()
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                if version is None:
                    break
                await response.write(self._event(version))
            await response.write_eof()
        except ConnectionResetError:
            log.debug("kiosk event client went away")
        finally:
            self._clients.discard(queue)
        return response


def _encode_into(future: asyncio.Future[bytes], image: Image.Image) -> None:
    if future.done():
        return
    try:
        future.set_result(encode_png(image))
    except Exception as exc:  # handed to every client waiting for this frame
        future.set_exception(exc)


def _offer(queue: asyncio.Queue[int | None], item: int | None) -> None:
    """Put the newest item in a one-slot queue, dropping the older one a slow client never read."""
    with contextlib.suppress(asyncio.QueueEmpty):
        queue.get_nowait()
    queue.put_nowait(item)
