"""The till's local HTTP API (aiohttp) and its OpenAPI 3 document, built from the pydantic models.

Owns the wire contract with the POS: request/response models, bearer-token auth, error bodies
(`{"error": code, "message": text}` with a 4xx status; never a 500 for bad input) and the
`Idempotency-Key` header. Every payment decision is delegated to `PaymentService`. Bodies are
read by the one bounded JSON reader and the app refuses non-JSON content types once, in a
middleware (`base.httpjson`), for every route mounted on it (coupons included). A journal
that cannot write (full disk) is a 503 `storage_unavailable` with `Retry-After`.

    POST /v1/payments                       start a payment (returns at once)
    GET  /v1/payments/{order_id}?wait=S     status, optionally long-polling until it changes
    POST /v1/payments/{order_id}/cancel     abandon an unpaid QR / refund a completed payment
    POST /v1/payments/{order_id}/refund     refund all or part
    GET  /openapi.json                      this API, as OpenAPI 3.1
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, model_validator
from pydantic.json_schema import models_json_schema

from base.httpjson import error_response, json_only, read_json_body
from pos_bridge.journal import JournalWriteError
from pos_bridge.payment_flow import Method, Payment, State
from pos_bridge.ports import PaymentSettings
from pos_bridge.service import STATUS_MESSAGES, NewPayment, PaymentService, TillError

__all__ = [
    "LIMIT_KEY",
    "SERVICE_KEY",
    "AmountLimit",
    "ErrorBody",
    "PaymentCreate",
    "PaymentView",
    "RefundCreate",
    "create_pos_app",
    "openapi_document",
]

log = logging.getLogger(__name__)
SERVICE_KEY = web.AppKey("payment_service", PaymentService)
ORDER_ID = r"^[A-Za-z0-9_-]{1,64}$"
MAX_WAIT_S = 60.0
_KEY = re.compile(r"^[\x21-\x7e]{1,200}\Z")
MAX_BODY_BYTES = 64 * 1024
# How long a till should wait before retrying while the state disk is full: long enough not to
# hammer a full disk, short enough that the cashier's retry succeeds soon after space is freed.
STORAGE_RETRY_AFTER_S = 5


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PaymentCreate(_Model):
    """Start a LINE Pay payment for one POS order."""

    order_id: Annotated[str, Field(pattern=ORDER_ID, description="The till's order id (unique per order)")]
    amount: Annotated[StrictInt, Field(gt=0, description="Integer TWD")]
    currency: Literal["TWD"] = "TWD"
    product_name: Annotated[str, Field(min_length=1, max_length=200)]
    method: Literal["scan_code", "qr"]
    one_time_key: Annotated[
        str | None,
        Field(pattern=r"^[0-9]{18}$", description="The shopper's My Code (18 digits); scan_code only"),
    ] = None
    member_phone: Annotated[str | None, Field(pattern=r"^\+?[0-9]{8,15}$")] = None

    @model_validator(mode="after")
    def _key_only_for_scan(self) -> PaymentCreate:
        if self.method == "qr" and self.one_time_key is not None:
            raise ValueError("one_time_key is only for method scan_code")
        return self


class RefundCreate(_Model):
    """Refund a completed payment; without `amount`, everything not yet refunded."""

    amount: Annotated[StrictInt | None, Field(gt=0)] = None


class PaymentView(_Model):
    """A payment as the till sees it."""

    order_id: str
    status: Literal[
        "created",
        "requested",
        "authorizing",
        "unknown",
        "paid",
        "refunding",
        "refunded",
        "failed",
        "cancelled",
    ]
    message: str
    method: Literal["scan_code", "qr"]
    amount: int
    currency: str
    paid_amount: int
    refunded_amount: int
    transaction_id: str | None
    payment_url: str | None
    access_token: str | None
    attempt_order_id: str
    version: int
    error_code: str | None
    error_message: str | None


class ErrorBody(_Model):
    error: str
    message: str


def view(payment: Payment) -> dict[str, Any]:
    live_qr = payment.state is State.REQUESTED
    return PaymentView(
        order_id=payment.order_id,
        status=payment.state.value,  # type: ignore[arg-type]
        message=STATUS_MESSAGES[payment.state],
        method=payment.method.value,  # type: ignore[arg-type]
        amount=payment.amount,
        currency=payment.currency,
        paid_amount=payment.paid_amount,
        refunded_amount=payment.refunded_amount,
        transaction_id=payment.transaction_id,
        payment_url=payment.payment_url if live_qr else None,
        access_token=payment.access_token if live_qr else None,
        attempt_order_id=payment.line_order_id,
        version=payment.version,
        error_code=payment.error_code,
        error_message=payment.error_message,
    ).model_dump(mode="json")


def _error(status: int, code: str, message: str) -> web.Response:
    return error_response(status, code, message)


def _validation_error(exc: ValidationError) -> web.Response:
    first = exc.errors()[0]
    field = str(first["loc"][0]) if first["loc"] else ""
    code = {"one_time_key": "malformed_key", "amount": "invalid_amount"}.get(field, "invalid_request")
    where = ".".join(str(p) for p in first["loc"]) or "body"
    return _error(422, code, f"{where}: {first['msg']}")


async def _json_body(request: web.Request) -> Any:
    return await read_json_body(request, max_bytes=MAX_BODY_BYTES, empty={})


def _idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not _KEY.fullmatch(key):
        raise web.HTTPBadRequest(
            text=json.dumps(
                {"error": "invalid_request", "message": "Idempotency-Key: 1-200 printable characters"}
            ),
            content_type="application/json",
        )
    return key


def _order_id(request: web.Request) -> str:
    order_id = request.match_info["order_id"]
    if not re.fullmatch(ORDER_ID, order_id):
        raise TillErrorNotFound(f"no payment for order {order_id!r}")
    return order_id


class TillErrorNotFound(TillError):
    code = "unknown_order"
    status = 404


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class AmountLimit:
    """`pos.max_amount_twd` as the API uses it: the check and the OpenAPI maximum, changed
    together and at once by `set()` (the agent calls it when the cloud changes the key live)."""

    def __init__(self, config: PaymentSettings) -> None:
        self.config = config
        self.twd = config.pos.max_amount_twd
        self._document: dict[str, Any] | None = None

    @property
    def document(self) -> dict[str, Any]:
        """Built on the first GET /openapi.json (~8 ms of JSON schemas, kept off the start)."""
        if self._document is None:
            self._document = openapi_document(self.config, max_amount_twd=self.twd)
        return self._document

    def set(self, twd: int) -> None:
        self.twd = twd
        self._document = None


LIMIT_KEY = web.AppKey("amount_limit", AmountLimit)


def create_pos_app(service: PaymentService, config: PaymentSettings) -> web.Application:
    """The POS API app. Other capabilities add routes to it (ops: `add_ops_routes(app, ctx)`);
    `app[LIMIT_KEY].set(twd)` changes the amount limit live."""
    token = config.pos.token.get_secret_value()
    limit = AmountLimit(config)

    @web.middleware
    async def errors_and_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            if request.path.startswith("/v1/"):
                if not token:
                    return _error(401, "unauthorized", "pos.token is not configured on this device")
                given = request.headers.get("Authorization", "")
                if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                    return _error(401, "unauthorized", "missing or wrong bearer token")
            return await handler(request)
        except TillError as exc:
            return _error(exc.status, exc.code, str(exc))
        except ValidationError as exc:
            return _validation_error(exc)
        except JournalWriteError as exc:
            log.error("payment request refused: the journal cannot write", extra={"error": str(exc)})
            return error_response(
                503,
                "storage_unavailable",
                "the device's storage cannot record payments right now (disk full?); retry shortly",
                **{"Retry-After": str(STORAGE_RETRY_AFTER_S)},
            )
        except web.HTTPException as exc:
            if exc.content_type == "application/json":
                raise
            return _error(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason)
        except Exception:
            log.exception("POS API request failed", extra={"path": request.path})
            return _error(500, "internal_error", "the device failed this request; see its log")

    async def create(request: web.Request) -> web.Response:
        key = _idempotency_key(request)
        body = PaymentCreate.model_validate(await _json_body(request))
        if body.amount > limit.twd:
            return _error(
                422, "amount_over_limit", f"amount: {body.amount} is over the limit of {limit.twd} TWD"
            )
        payment, created = await service.start_payment(
            NewPayment(
                order_id=body.order_id,
                amount=body.amount,
                currency=body.currency,
                product_name=body.product_name,
                method=Method(body.method),
                one_time_key=body.one_time_key,
                member_phone=body.member_phone,
            ),
            idempotency_key=key,
        )
        return web.json_response(view(payment), status=201 if created else 200)

    async def read(request: web.Request) -> web.Response:
        order_id = _order_id(request)
        wait = request.query.get("wait")
        if wait is None:
            payment = await service.get(order_id)
            if payment is None:
                raise TillErrorNotFound(f"no payment for order {order_id}")
            return web.json_response(view(payment))
        try:
            seconds = float(wait)
        except ValueError:
            seconds = -1.0
        if not 0 <= seconds <= MAX_WAIT_S:
            return _error(400, "invalid_request", f"wait: seconds from 0 to {MAX_WAIT_S:g}, got {wait!r}")
        version = request.query.get("version")
        after = int(version) if version is not None and re.fullmatch(r"[0-9]{1,9}", version) else None
        payment = await service.wait_change(order_id, after_version=after, wait_s=seconds)
        return web.json_response(view(payment))

    async def cancel(request: web.Request) -> web.Response:
        payment = await service.cancel(_order_id(request))
        return web.json_response(view(payment))

    async def refund(request: web.Request) -> web.Response:
        order_id = _order_id(request)
        key = _idempotency_key(request)
        body = RefundCreate.model_validate(await _json_body(request))
        payment = await service.refund(order_id, body.amount, idempotency_key=key)
        return web.json_response(view(payment))

    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(limit.document)

    app = web.Application(middlewares=[errors_and_auth, json_only()], client_max_size=MAX_BODY_BYTES)
    app[SERVICE_KEY] = service
    app[LIMIT_KEY] = limit
    app.router.add_get("/openapi.json", openapi)
    app.router.add_post("/v1/payments", create)
    app.router.add_get("/v1/payments/{order_id}", read)
    app.router.add_post("/v1/payments/{order_id}/cancel", cancel)
    app.router.add_post("/v1/payments/{order_id}/refund", refund)
    return app


def openapi_document(config: PaymentSettings, *, max_amount_twd: int | None = None) -> dict[str, Any]:
    """OpenAPI 3.1 for the POS API, schemas generated from the pydantic models above."""
    _, defs = models_json_schema(
        [(m, "validation") for m in (PaymentCreate, RefundCreate, PaymentView, ErrorBody)],
        ref_template="#/components/schemas/{model}",
    )
    schemas = defs["$defs"]
    schemas["PaymentCreate"]["properties"]["amount"]["maximum"] = (
        max_amount_twd if max_amount_twd is not None else config.pos.max_amount_twd
    )

    def ref(name: str) -> dict[str, Any]:
        return {"$ref": f"#/components/schemas/{name}"}

    def answer(description: str, schema: str) -> dict[str, Any]:
        return {"description": description, "content": {"application/json": {"schema": ref(schema)}}}

    errors = {
        str(code): answer(text, "ErrorBody")
        for code, text in [
            (400, "malformed request"),
            (401, "missing or wrong bearer token"),
            (404, "unknown order"),
            (409, "conflicts with the payment's state or an earlier request"),
            (415, "the body is not application/json"),
            (422, "invalid field (key, amount...)"),
            (503, "the device's storage cannot write (retry after Retry-After seconds)"),
        ]
    }
    order = {
        "name": "order_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": ORDER_ID},
    }
    idem = {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "pattern": _KEY.pattern},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "ShopEdge POS API", "version": "1.0.0"},
        "servers": [{"url": f"http://{config.pos.listen}"}],
        "security": [{"bearer": []}],
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "paths": {
            "/v1/payments": {
                "post": {
                    "operationId": "createPayment",
                    "parameters": [idem],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": ref("PaymentCreate")}},
                    },
                    "responses": {
                        "201": answer("payment started", "PaymentView"),
                        "200": answer("the order's existing payment (idempotent retry)", "PaymentView"),
                        **errors,
                    },
                }
            },
            "/v1/payments/{order_id}": {
                "get": {
                    "operationId": "getPayment",
                    "parameters": [
                        order,
                        {
                            "name": "wait",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "number", "minimum": 0, "maximum": MAX_WAIT_S},
                        },
                        {
                            "name": "version",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer", "minimum": 0},
                        },
                    ],
                    "responses": {"200": answer("the payment", "PaymentView"), **errors},
                }
            },
            "/v1/payments/{order_id}/cancel": {
                "post": {
                    "operationId": "cancelPayment",
                    "parameters": [order],
                    "responses": {"200": answer("cancelled, or refund started", "PaymentView"), **errors},
                }
            },
            "/v1/payments/{order_id}/refund": {
                "post": {
                    "operationId": "refundPayment",
                    "parameters": [order, idem],
                    "requestBody": {
                        "required": False,
                        "content": {"application/json": {"schema": ref("RefundCreate")}},
                    },
                    "responses": {"200": answer("refund started", "PaymentView"), **errors},
                }
            },
        },
    }
