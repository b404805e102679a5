"""The Messaging API client of the coupons capability: line-bot-sdk v3 (async), nothing else.

Owns the SDK session (created inside the running loop, closed with `async with`), the explicit
per-call `_request_timeout` from `config.timeouts.line_api`, and `_map_errors`, which turns every
SDK or transport failure into an `Answer` (status 0 = no answer) so the pure policy decides.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiohttp
from linebot.v3.messaging import (
    AsyncApiClient,
    AsyncMessagingApi,
    Configuration,
    CouponCreateRequest,
    Message,
    PushMessageRequest,
    ReplyMessageRequest,
)
from linebot.v3.messaging.exceptions import ApiException

from membership.coupons._policy import Answer

__all__ = ["CouponsError", "LineMessaging", "LineRefused", "Quota", "QuotaUnavailable"]


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


class _Failed(Exception):
    def __init__(self, answer: Answer) -> None:
        super().__init__(answer.message)
        self.answer = answer


@contextlib.contextmanager
def _map_errors() -> Iterator[None]:
    """SDK, aiohttp and socket failures -> `_Failed(Answer)`; the one place they are interpreted."""
    try:
        yield
    except ApiException as exc:
        headers = exc.headers or {}
        message = ""
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            message = str(json.loads(exc.body or "{}").get("message", ""))
        raise _Failed(
            Answer(
                status=int(exc.status or 0),
                message=message or str(exc.reason or ""),
                request_id=headers.get("x-line-request-id"),
                accepted_request_id=headers.get("x-line-accepted-request-id"),
            )
        ) from exc
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise _Failed(Answer(status=0, message=f"no answer: {type(exc).__name__}: {exc}")) from exc


class LineMessaging:
    """Reply, push (with `X-Line-Retry-Key`) and quota calls against `api_base` (None = LINE)."""

    def __init__(self, *, api_base: str | None, access_token: str, timeout: float) -> None:
        host = api_base.rstrip("/") if api_base else None
        self._configuration = Configuration(host=host, access_token=access_token)
        self._timeout = timeout
        self._client: AsyncApiClient | None = None
        self._api: AsyncMessagingApi | None = None

    async def __aenter__(self) -> LineMessaging:
        self._client = AsyncApiClient(self._configuration)
        self._api = AsyncMessagingApi(self._client)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
        self._client = self._api = None

    @property
    def api(self) -> AsyncMessagingApi:
        if self._api is None:
            raise RuntimeError("LineMessaging used outside `async with`")
        return self._api

    async def reply(self, reply_token: str, messages: list[dict[str, Any]]) -> Answer:
        request = ReplyMessageRequest(
            reply_token=reply_token, messages=[Message.from_dict(m) for m in messages]
        )
        try:
            with _map_errors():
                response = await self.api.reply_message_with_http_info(
                    request, _request_timeout=self._timeout
                )
        except _Failed as failed:
            return failed.answer
        return Answer(status=response.status_code, request_id=_header(response.headers, "x-line-request-id"))

    async def push(self, to: str, messages: list[dict[str, Any]], retry_key: str) -> Answer:
        request = PushMessageRequest(to=to, messages=[Message.from_dict(m) for m in messages])
        try:
            with _map_errors():
                response = await self.api.push_message_with_http_info(
                    request, x_line_retry_key=retry_key, _request_timeout=self._timeout
                )
        except _Failed as failed:
            return failed.answer
        return Answer(status=response.status_code, request_id=_header(response.headers, "x-line-request-id"))

    async def create_coupon(self, body: dict[str, Any]) -> str:
        """Create a LINE coupon; returns its id.

        Raises:
            LineRefused: LINE refused it or did not answer (the answer is attached).
        """
        try:
            with _map_errors():
                created = await self.api.create_coupon(
                    CouponCreateRequest.from_dict(body), _request_timeout=self._timeout
                )
        except _Failed as failed:
            raise LineRefused(failed.answer) from failed
        return str(created.coupon_id)

    async def quota(self) -> Quota:
        """The account's monthly quota and what is used of it (two calls)."""
        try:
            with _map_errors():
                quota = await self.api.get_message_quota(_request_timeout=self._timeout)
                used = await self.api.get_message_quota_consumption(_request_timeout=self._timeout)
        except _Failed as failed:
            raise QuotaUnavailable(failed.answer) from failed
        limited = quota.type == "limited"  # QuotaType is a str enum
        return Quota(limited=limited, value=int(quota.value or 0), used=int(used.total_usage or 0))


def _header(headers: Any, name: str) -> str | None:
    if not headers:
        return None
    value = headers.get(name)
    return None if value is None else str(value)
