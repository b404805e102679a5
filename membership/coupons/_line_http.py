"""The device's Messaging API client: the four calls it makes, typed, on one aiohttp session.

The device only replies, pushes (with `X-Line-Retry-Key`), reads the quota and, once per campaign,
creates a LINE coupon. line-bot-sdk's generated client costs ~60 MB and over a second of import on
a Pi for those, so this module speaks the documented wire format itself; tests validate every
request and response it exchanges with the Messaging API emulator against LINE's OpenAPI
document (tests/contracts/line/messaging-api.yml), so the shapes cannot drift unseen.

Owns the session (created inside the running loop, closed with `async with`), the explicit
per-call timeout from `config.timeouts.line_api`, and turning every answer or transport failure
into an `Answer` (status 0 = no answer) so the pure policy decides what it means.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, TypeGuard

import aiohttp

from membership.coupons._policy import Answer

__all__ = [
    "DEFAULT_API_BASE",
    "CouponsError",
    "LineMessaging",
    "LineRefused",
    "Quota",
    "QuotaUnavailable",
]

DEFAULT_API_BASE: Final = "https://api.line.me"
USER_AGENT: Final = "shopedge-edge (aiohttp)"
_PUSH: Final = "/v2/bot/message/push"
_REPLY: Final = "/v2/bot/message/reply"
_QUOTA: Final = "/v2/bot/message/quota"
_CONSUMPTION: Final = "/v2/bot/message/quota/consumption"
_COUPON: Final = "/v2/bot/coupon"


class CouponsError(Exception):
    """Root of the coupons capability's errors."""


class LineRefused(CouponsError):
    """LINE's Messaging API did not accept a call (or did not answer); `answer` says how."""

    def __init__(self, answer: Answer) -> None:
        super().__init__(f"{answer.status} {answer.message}".strip())
        self.answer = answer


class QuotaUnavailable(LineRefused):
    """The quota could not be read, so a push cannot be checked against it."""


@dataclass(frozen=True, kw_only=True)
class Quota:
    limited: bool
    value: int
    used: int


@dataclass(frozen=True)
class _Reply:
    """One HTTP answer: status, the two LINE request-id headers and the decoded JSON body."""

    status: int
    reason: str
    request_id: str | None
    accepted_request_id: str | None
    body: Any

    def answer(self) -> Answer:
        message = self.body.get("message") if isinstance(self.body, dict) else None
        return Answer(
            status=self.status,
            message="" if self.status < 300 else str(message or self.reason),
            request_id=self.request_id,
            accepted_request_id=self.accepted_request_id,
        )


class LineMessaging:
    """Reply, push (with `X-Line-Retry-Key`), quota and coupon creation against `api_base`
    (None = LINE's https://api.line.me). Use it with `async with`."""

    def __init__(
        self,
        *,
        api_base: str | None,
        access_token: str,
        timeout: float,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._base = (api_base or DEFAULT_API_BASE).rstrip("/")
        self._headers = {
            "Authorization": f"Bearer {access_token}",
            "User-Agent": USER_AGENT,
        }
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session = session
        self._owns_session = session is None

    async def __aenter__(self) -> LineMessaging:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None and self._owns_session:
            await self._session.close()
        self._session = None

    async def _call(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        retry_key: str | None = None,
    ) -> _Reply:
        """One request; raises `_NoAnswer` when nothing (or no HTTP answer) came back in time."""
        if self._session is None:
            raise RuntimeError("LineMessaging used outside `async with`")
        headers = dict(self._headers)
        if retry_key is not None:
            headers["X-Line-Retry-Key"] = retry_key
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        try:
            async with self._session.request(
                method, self._base + path, data=data, headers=headers, timeout=self._timeout
            ) as response:
                raw = await response.read()
                decoded: Any = None
                if raw:
                    try:
                        decoded = json.loads(raw)
                    except ValueError:
                        decoded = None
                return _Reply(
                    status=response.status,
                    reason=response.reason or "",
                    request_id=response.headers.get("x-line-request-id"),
                    accepted_request_id=response.headers.get("x-line-accepted-request-id"),
                    body=decoded,
                )
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise _NoAnswer(Answer(status=0, message=f"no answer: {type(exc).__name__}: {exc}")) from exc

    async def reply(self, reply_token: str, messages: Sequence[Mapping[str, Any]]) -> Answer:
        """POST /v2/bot/message/reply (free; the token is single-use and short-lived)."""
        try:
            reply = await self._call(
                "POST", _REPLY, body={"replyToken": reply_token, "messages": list(messages)}
            )
        except _NoAnswer as failed:
            return failed.answer
        return reply.answer()

    async def push(self, to: str, messages: Sequence[Mapping[str, Any]], retry_key: str) -> Answer:
        """POST /v2/bot/message/push with `X-Line-Retry-Key` (sent on the first attempt too)."""
        try:
            reply = await self._call(
                "POST", _PUSH, body={"to": to, "messages": list(messages)}, retry_key=retry_key
            )
        except _NoAnswer as failed:
            return failed.answer
        return reply.answer()

    async def create_coupon(self, body: Mapping[str, Any]) -> str:
        """POST /v2/bot/coupon; returns the new coupon's id.

        Raises:
            LineRefused: LINE refused it or did not answer (the answer is attached).
        """
        try:
            reply = await self._call("POST", _COUPON, body=body)
        except _NoAnswer as failed:
            raise LineRefused(failed.answer) from failed
        coupon_id = reply.body.get("couponId") if isinstance(reply.body, dict) else None
        if reply.status != 200 or not isinstance(coupon_id, str) or not coupon_id:
            raise LineRefused(_unexpected(reply, "couponId"))
        return coupon_id

    async def quota(self) -> Quota:
        """The account's monthly quota and what is used of it (two calls).

        Raises:
            QuotaUnavailable: either call was refused, not answered, or answered out of shape.
        """
        try:
            quota = await self._call("GET", _QUOTA)
            if quota.status != 200 or not isinstance(quota.body, dict):
                raise QuotaUnavailable(_unexpected(quota, "type"))
            used = await self._call("GET", _CONSUMPTION)
        except _NoAnswer as failed:
            raise QuotaUnavailable(failed.answer) from failed
        if used.status != 200 or not isinstance(used.body, dict):
            raise QuotaUnavailable(_unexpected(used, "totalUsage"))
        kind, value, total = quota.body.get("type"), quota.body.get("value", 0), used.body.get("totalUsage")
        if kind not in ("none", "limited") or not _count(value):
            raise QuotaUnavailable(_unexpected(quota, "type and value"))
        if not _count(total):
            raise QuotaUnavailable(_unexpected(used, "totalUsage"))
        return Quota(limited=kind == "limited", value=value, used=total)


class _NoAnswer(Exception):
    def __init__(self, answer: Answer) -> None:
        super().__init__(answer.message)
        self.answer = answer


def _count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _unexpected(reply: _Reply, wanted: str) -> Answer:
    """A refusal as it is, or a 2xx whose body lacks what LINE documents (`wanted`)."""
    answer = reply.answer()
    if answer.status >= 300:
        return answer
    return Answer(
        status=answer.status,
        message=f"answer without a valid {wanted}: {str(reply.body)[:200]}",
        request_id=answer.request_id,
    )
