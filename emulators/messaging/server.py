"""An in-process stand-in for the LINE Messaging API (push, reply, quota, bot info, coupons).

Owns LINE's documented server-side behaviour that ShopEdge's delivery code depends on, so tests
and the demo exercise the real failure modes instead of an accept-anything mock:

- `Authorization: Bearer <token>` is checked on every API call (401 otherwise).
- Reply tokens are single-use and expire (`reply_token_ttl`, default 60 s: LINE's one minute);
  a used or stale token answers 400 "Invalid reply token". Replies are free (no quota).
- `X-Line-Retry-Key` is accepted only by push (400 elsewhere), must be a UUID, and is remembered
  24 h: a resend of an accepted key answers 409 "The retry key is already accepted" with
  `x-line-accepted-request-id` and the original `sentMessages`.
- A limited monthly quota: when `totalUsage` reaches it, push answers 429
  "You have reached your monthly limit."; a per-second rate limit answers 429 "Too Many Requests".
- Pushing to a user id that never befriended the account answers 400 "Failed to send messages".
  Pushing to a user who blocked the account is accepted (200, `sentMessages`) but reaches no
  phone and is not counted against the quota (LINE's FAQ: "no error will occur and status code
  200 will be returned"; only deliverable messages are counted).
- Text length is counted in UTF-16 code units, as LINE does (🍎 is 2 of the 5000; `\r\n` is 2).
  `text` and `textV2` (with its `substitution` map of `mention`/`emoji` objects, per
  line-openapi's TextMessageV2) are accepted.
- Fault injection (`Fault`): 5xx or a hang, before or after the request is accepted, so the
  ambiguous "sent but the answer was lost" case is reproducible.

Control it in-process (`MessagingEmulator` methods) or over HTTP under `/_emulator/` (not
authenticated: bind it to 127.0.0.1 only): `GET state` (deliveries, quota, coupons),
`POST reply-token {"userId"}` (a token as a webhook event would carry), `POST friend {"userId"}`,
`POST block {"userId"}` (the user blocks the account; `friend` again unblocks),
`POST fault {"endpoint", "kind", "after_accept", "hang_s"}` and
`POST quota {"type", "value", "totalUsage"}`. Signed webhooks towards the relay live in
`emulators/messaging/webhooks.py`.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from emulators.messaging.validation import (
    COUPON_TIMEZONES,
    USER_ID,
    UUID,
    check_coupon,
    check_messages,
)

__all__ = [
    "COUPON_TIMEZONES",
    "Delivery",
    "Fault",
    "MessagingEmulator",
    "running_emulator",
    "serve",
]

RETRY_KEY_TTL_S = 24 * 3600.0  # LINE remembers an accepted retry key for 24 h [RETRY]
MONTHLY_LIMIT_MESSAGE = "You have reached your monthly limit."
RATE_LIMIT_MESSAGE = "Too Many Requests"
RETRY_ACCEPTED_MESSAGE = "The retry key is already accepted"
INVALID_REPLY_TOKEN = "Invalid reply token"  # noqa: S105 (an error message)
AUTH_FAILED = "Authentication failed. Confirm that the access token in the authorization header is valid."
_REQUEST_ID = web.RequestKey("request_id", str)

FaultKind = Literal["400", "401", "403", "500", "502", "503", "timeout", "rate_limit", "monthly_limit"]


@dataclass(frozen=True, kw_only=True)
class Fault:
    """One injected failure for the next matching request.

    `after_accept=True` means the request is processed (the message is delivered, the retry key
    remembered, quota consumed) and only then the answer fails: the client cannot tell.
    `hang_s` is how long a "timeout" fault holds the connection before closing it.
    """

    endpoint: Literal["push", "reply", "quota", "coupon", "any"] = "push"
    kind: FaultKind = "503"
    after_accept: bool = False
    hang_s: float = 30.0


@dataclass(frozen=True, kw_only=True)
class Delivery:
    """A message request the emulated LINE accepted: what a user's phone would show."""

    request_id: str
    via: Literal["push", "reply"]
    to: str
    messages: tuple[dict[str, Any], ...]
    retry_key: str | None
    at: float


@dataclass
class _AcceptedKey:
    request_id: str
    sent_messages: list[dict[str, str]]
    at: float


@dataclass
class _ReplyToken:
    user_id: str
    issued_at: float
    used: bool = False


@dataclass
class MessagingEmulator:
    """The emulated channel's state plus the aiohttp app that serves it."""

    access_tokens: set[str] = field(default_factory=set)
    clock: Callable[[], float] = time.time
    reply_token_ttl: float = 60.0
    quota_type: Literal["none", "limited"] = "limited"
    quota_value: int = 200
    total_usage: int = 0
    rate_limit_per_s: int = 2000  # push row of LINE's rate-limit table
    strict_users: bool = True
    bot_basic_id: str = "@shopedge"
    bot_display_name: str = "ShopEdge Demo"
    friends: set[str] = field(default_factory=set)
    blocked: set[str] = field(default_factory=set)  # friends who blocked the account
    deliveries: list[Delivery] = field(default_factory=list)
    undelivered: list[Delivery] = field(default_factory=list)  # accepted pushes to blocked users
    requests_seen: int = 0
    _faults: deque[Fault] = field(default_factory=deque)
    _retry_keys: dict[str, _AcceptedKey] = field(default_factory=dict)
    _reply_tokens: dict[str, _ReplyToken] = field(default_factory=dict)
    _recent_pushes: deque[float] = field(default_factory=deque)
    _coupons: dict[str, dict[str, Any]] = field(default_factory=dict)
    _bot_user_id: str = field(default_factory=lambda: "U" + secrets.token_hex(16))

    # ------------------------------------------------------------ in-process control

    def add_friend(self, user_id: str) -> None:
        """Mark `user_id` as a friend of the account (pushing to strangers is a 400)."""
        if not USER_ID.match(user_id):
            raise ValueError(f"not a LINE user id: {user_id!r}")
        self.friends.add(user_id)
        self.blocked.discard(user_id)

    def block(self, user_id: str) -> None:
        """`user_id` blocks the account: pushes are still accepted (200) but reach no phone."""
        self.add_friend(user_id)
        self.blocked.add(user_id)

    def issue_reply_token(self, user_id: str) -> str:
        """A fresh reply token, as a webhook event from `user_id` would carry (makes them a friend)."""
        self.add_friend(user_id)
        token = secrets.token_hex(16)
        self._reply_tokens[token] = _ReplyToken(user_id=user_id, issued_at=self.clock())
        return token

    def inject(self, *faults: Fault) -> None:
        """Queue faults; each applies to the next request of its endpoint, in order."""
        self._faults.extend(faults)

    def pending_faults(self) -> int:
        return len(self._faults)

    def set_quota(
        self, *, value: int | None = None, quota_type: str | None = None, usage: int | None = None
    ) -> None:
        if value is not None:
            self.quota_value = value
        if quota_type is not None:
            if quota_type not in ("none", "limited"):
                raise ValueError(f"quota type must be none or limited, got {quota_type!r}")
            self.quota_type = quota_type  # type: ignore[assignment]
        if usage is not None:
            self.total_usage = usage

    def deliveries_to(self, user_id: str) -> list[Delivery]:
        return [d for d in self.deliveries if d.to == user_id]

    # ------------------------------------------------------------ HTTP app

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.add_routes(
            [
                web.post("/v2/bot/message/push", self._push),
                web.post("/v2/bot/message/reply", self._reply),
                web.get("/v2/bot/message/quota", self._quota),
                web.get("/v2/bot/message/quota/consumption", self._consumption),
                web.get("/v2/bot/info", self._bot_info),
                web.post("/v2/bot/coupon", self._coupon_create),
                web.get("/v2/bot/coupon", self._coupon_list),
                web.get("/v2/bot/coupon/{coupon_id}", self._coupon_get),
                web.put("/v2/bot/coupon/{coupon_id}/close", self._coupon_close),
                web.get("/_emulator/state", self._ctl_state),
                web.post("/_emulator/reply-token", self._ctl_reply_token),
                web.post("/_emulator/friend", self._ctl_friend),
                web.post("/_emulator/block", self._ctl_block),
                web.post("/_emulator/fault", self._ctl_fault),
                web.post("/_emulator/quota", self._ctl_quota),
            ]
        )
        return app

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        request_id = uuid.uuid4().hex
        request[_REQUEST_ID] = request_id
        if request.path.startswith("/_emulator/"):
            response: web.StreamResponse = await handler(request)
            return response
        self.requests_seen += 1
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth.removeprefix("Bearer ") not in self.access_tokens:
            return _error(401, AUTH_FAILED, request_id)
        if "X-Line-Retry-Key" in request.headers and request.path != "/v2/bot/message/push":
            return _error(400, "The request does not support the X-Line-Retry-Key header", request_id)
        response = await handler(request)
        response.headers["x-line-request-id"] = request_id
        return response

    def _take_fault(self, endpoint: str) -> Fault | None:
        for fault in self._faults:
            if fault.endpoint in (endpoint, "any"):
                self._faults.remove(fault)
                return fault
        return None

    async def _fail(self, fault: Fault, request_id: str) -> web.Response:
        if fault.kind == "timeout":
            await asyncio.sleep(fault.hang_s)  # the client's timeout fires first
            return _error(504, "Gateway timeout", request_id)
        if fault.kind == "rate_limit":
            return _error(429, RATE_LIMIT_MESSAGE, request_id)
        if fault.kind == "monthly_limit":
            return _error(429, MONTHLY_LIMIT_MESSAGE, request_id)
        messages = {
            "400": "Failed to send messages",
            "401": AUTH_FAILED,
            "403": "Access to this API is not available for your account",
        }
        return _error(int(fault.kind), messages.get(fault.kind, "Internal server error"), request_id)

    async def _json_body(self, request: web.Request) -> dict[str, Any] | web.Response:
        try:
            body = await request.json()
        except ValueError:
            return _error(
                400, "The request body has 1 error(s)", request[_REQUEST_ID], [("", "invalid JSON")]
            )
        if not isinstance(body, dict):
            return _error(
                400, "The request body has 1 error(s)", request[_REQUEST_ID], [("", "not an object")]
            )
        return body

    async def _push(self, request: web.Request) -> web.Response:
        request_id = request[_REQUEST_ID]
        body = await self._json_body(request)
        if isinstance(body, web.Response):
            return body
        problems = check_messages(body.get("messages"))
        to = body.get("to")
        if not isinstance(to, str) or not to:
            problems.append(("to", "must be specified"))
        if problems:
            return _error(400, f"The request body has {len(problems)} error(s)", request_id, problems)
        key = request.headers.get("X-Line-Retry-Key")
        if key is not None and not UUID.match(key):
            return _error(400, "The value for the 'X-Line-Retry-Key' header is invalid", request_id)
        now = self.clock()
        self._expire_keys(now)
        if key is not None and key in self._retry_keys:
            accepted = self._retry_keys[key]
            response = web.json_response(
                {"message": RETRY_ACCEPTED_MESSAGE, "sentMessages": accepted.sent_messages}, status=409
            )
            response.headers["x-line-accepted-request-id"] = accepted.request_id
            return response
        fault = self._take_fault("push")
        if fault is not None and not fault.after_accept:
            return await self._fail(fault, request_id)
        while self._recent_pushes and self._recent_pushes[0] <= now - 1.0:
            self._recent_pushes.popleft()
        if len(self._recent_pushes) >= self.rate_limit_per_s:
            return _error(429, RATE_LIMIT_MESSAGE, request_id)
        self._recent_pushes.append(now)
        if self.quota_type == "limited" and self.total_usage >= self.quota_value:
            return _error(429, MONTHLY_LIMIT_MESSAGE, request_id)
        if self.strict_users and (not USER_ID.match(to) or to not in self.friends):  # type: ignore[arg-type]
            return _error(400, "Failed to send messages", request_id)
        if to in self.blocked:  # accepted, reaches no phone, not counted
            sent = self._deliver("push", str(to), body["messages"], key, request_id, now, delivered=False)
        else:
            sent = self._deliver("push", str(to), body["messages"], key, request_id, now)
            self.total_usage += 1  # one message per recipient per request, whatever the bubble count
        if key is not None:
            self._retry_keys[key] = _AcceptedKey(request_id=request_id, sent_messages=sent, at=now)
        if fault is not None:
            return await self._fail(fault, request_id)
        return web.json_response({"sentMessages": sent})

    async def _reply(self, request: web.Request) -> web.Response:
        request_id = request[_REQUEST_ID]
        body = await self._json_body(request)
        if isinstance(body, web.Response):
            return body
        problems = check_messages(body.get("messages"))
        token = body.get("replyToken")
        if not isinstance(token, str) or not token:
            problems.append(("replyToken", "must be specified"))
        if problems:
            return _error(400, f"The request body has {len(problems)} error(s)", request_id, problems)
        fault = self._take_fault("reply")
        if fault is not None and not fault.after_accept:
            return await self._fail(fault, request_id)
        now = self.clock()
        entry = self._reply_tokens.get(str(token))
        if entry is None or entry.used or now - entry.issued_at > self.reply_token_ttl:
            return _error(400, INVALID_REPLY_TOKEN, request_id)
        entry.used = True
        sent = self._deliver("reply", entry.user_id, body["messages"], None, request_id, now)
        if fault is not None:
            return await self._fail(fault, request_id)
        return web.json_response({"sentMessages": sent})

    def _deliver(
        self,
        via: Literal["push", "reply"],
        to: str,
        messages: list[dict[str, Any]],
        key: str | None,
        request_id: str,
        now: float,
        *,
        delivered: bool = True,
    ) -> list[dict[str, str]]:
        (self.deliveries if delivered else self.undelivered).append(
            Delivery(request_id=request_id, via=via, to=to, messages=tuple(messages), retry_key=key, at=now)
        )
        return [
            {"id": str(secrets.randbelow(10**18)), "quoteToken": secrets.token_urlsafe(24)} for _ in messages
        ]

    def _expire_keys(self, now: float) -> None:
        stale = [k for k, v in self._retry_keys.items() if now - v.at > RETRY_KEY_TTL_S]
        for key in stale:
            del self._retry_keys[key]

    async def _quota(self, request: web.Request) -> web.Response:
        fault = self._take_fault("quota")
        if fault is not None:
            return await self._fail(fault, request[_REQUEST_ID])
        if self.quota_type == "none":
            return web.json_response({"type": "none"})
        return web.json_response({"type": "limited", "value": self.quota_value})

    async def _consumption(self, request: web.Request) -> web.Response:
        fault = self._take_fault("quota")
        if fault is not None:
            return await self._fail(fault, request[_REQUEST_ID])
        return web.json_response({"totalUsage": self.total_usage})

    async def _bot_info(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "userId": self._bot_user_id,
                "basicId": self.bot_basic_id,
                "displayName": self.bot_display_name,
                "chatMode": "bot",
                "markAsReadMode": "auto",
            }
        )

    async def _coupon_create(self, request: web.Request) -> web.Response:
        request_id = request[_REQUEST_ID]
        fault = self._take_fault("coupon")
        if fault is not None:
            return await self._fail(fault, request_id)
        body = await self._json_body(request)
        if isinstance(body, web.Response):
            return body
        problems = check_coupon(body)
        if problems:
            return _error(400, f"The request body has {len(problems)} error(s)", request_id, problems)
        coupon_id = "coupon_" + secrets.token_hex(8)
        self._coupons[coupon_id] = {
            **body,
            "couponId": coupon_id,
            "createdTimestamp": int(self.clock()),
            "status": "RUNNING" if body["startTimestamp"] <= self.clock() else "DRAFT",
        }
        return web.json_response({"couponId": coupon_id})

    async def _coupon_get(self, request: web.Request) -> web.Response:
        coupon = self._coupons.get(request.match_info["coupon_id"])
        if coupon is None:
            return _error(404, "Not found", request[_REQUEST_ID])
        return web.json_response(coupon)

    async def _coupon_list(self, request: web.Request) -> web.Response:
        status = request.query.getall("status", [])
        items = [
            {"couponId": c["couponId"], "title": c["title"]}
            for c in self._coupons.values()
            if not status or c["status"] in status
        ]
        return web.json_response({"items": items})

    async def _coupon_close(self, request: web.Request) -> web.Response:
        coupon = self._coupons.get(request.match_info["coupon_id"])
        if coupon is None:
            return _error(404, "Not found", request[_REQUEST_ID])
        coupon["status"] = "CLOSED"
        return web.json_response({})

    # ------------------------------------------------------------ control API

    async def _ctl_state(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "deliveries": [
                    {
                        "request_id": d.request_id,
                        "via": d.via,
                        "to": d.to,
                        "messages": list(d.messages),
                        "retry_key": d.retry_key,
                        "at": d.at,
                    }
                    for d in self.deliveries
                ],
                "quota": {"type": self.quota_type, "value": self.quota_value, "totalUsage": self.total_usage},
                "undelivered": len(self.undelivered),
                "pending_faults": len(self._faults),
                "coupons": list(self._coupons.values()),
            }
        )

    async def _ctl_reply_token(self, request: web.Request) -> web.Response:
        body = await request.json()
        try:
            token = self.issue_reply_token(str(body.get("userId", "")))
        except ValueError as exc:
            return web.json_response({"message": str(exc)}, status=400)
        return web.json_response({"replyToken": token})

    async def _ctl_friend(self, request: web.Request) -> web.Response:
        body = await request.json()
        try:
            self.add_friend(str(body.get("userId", "")))
        except ValueError as exc:
            return web.json_response({"message": str(exc)}, status=400)
        return web.json_response({})

    async def _ctl_block(self, request: web.Request) -> web.Response:
        body = await request.json()
        try:
            self.block(str(body.get("userId", "")))
        except ValueError as exc:
            return web.json_response({"message": str(exc)}, status=400)
        return web.json_response({})

    async def _ctl_fault(self, request: web.Request) -> web.Response:
        body = await request.json()
        try:
            fault = Fault(**body)
        except TypeError as exc:
            return web.json_response({"message": str(exc)}, status=400)
        self.inject(fault)
        return web.json_response({"pending": len(self._faults)})

    async def _ctl_quota(self, request: web.Request) -> web.Response:
        body = await request.json()
        try:
            self.set_quota(value=body.get("value"), quota_type=body.get("type"), usage=body.get("totalUsage"))
        except ValueError as exc:
            return web.json_response({"message": str(exc)}, status=400)
        return web.json_response({})


def _error(
    status: int, message: str, request_id: str, details: Iterable[tuple[str, str]] = ()
) -> web.Response:
    body: dict[str, Any] = {"message": message}
    listed = [{"property": prop, "message": msg} for prop, msg in details]
    if listed:
        body["details"] = listed
    return web.json_response(body, status=status, headers={"x-line-request-id": request_id})


async def serve(
    emulator: MessagingEmulator, *, host: str = "127.0.0.1", port: int = 0
) -> tuple[web.AppRunner, str]:
    """Start serving `emulator` (0 = a free port); returns the runner (`await runner.cleanup()`
    stops it) and the base URL. For long-lived use such as the demo; tests prefer
    `running_emulator`."""
    runner = web.AppRunner(emulator.app(), handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server
    assert server is not None
    bound = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    return runner, f"http://{host}:{bound}"


@asynccontextmanager
async def running_emulator(
    emulator: MessagingEmulator | None = None, *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[tuple[MessagingEmulator, str]]:
    """Serve `emulator` on `host:port` (0 = a free port); yields it and its base URL."""
    emulator = emulator or MessagingEmulator(access_tokens={"test-token"})
    runner, base_url = await serve(emulator, host=host, port=port)
    try:
        yield emulator, base_url
    finally:
        await runner.cleanup()
