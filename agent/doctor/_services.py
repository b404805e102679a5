"""The checks of what the counter talks to over the network: the MQTT broker, the LINE
Messaging API token and LINE Pay. Each verdict is a pure function beside its async shell."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import uuid
from typing import Any
from urllib.parse import quote

from agent.config import ShopEdgeConfig
from agent.doctor._rows import (
    LINE_API,
    LINEPAY_HOSTS,
    Environment,
    Row,
    Status,
)

# ---------------------------------------------------------------- MQTT broker


async def check_broker(config: ShopEdgeConfig, env: Environment) -> Row:
    import ssl

    import aiomqtt

    mqtt = config.mqtt
    where = f"{mqtt.host}:{mqtt.port}"
    if not mqtt.enabled:
        return Row(
            check="broker",
            status=Status.WARN,
            detail="mqtt.enabled = false: nothing syncs to the cloud",
            hint="set mqtt.enabled = true once the broker is ready",
        )
    context = None
    if mqtt.tls:
        context = ssl.create_default_context(cafile=str(mqtt.ca_file) if mqtt.ca_file else None)
        if mqtt.cert_file and mqtt.key_file:
            context.load_cert_chain(str(mqtt.cert_file), str(mqtt.key_file))
    client = aiomqtt.Client(
        mqtt.host,
        mqtt.port,
        username=mqtt.username or None,
        password=mqtt.password.get_secret_value() or None,
        # Not the agent's client id: connecting as it would take over the agent's session.
        identifier=f"{config.device.device_id}-doctor-{uuid.uuid4().hex[:6]}",
        tls_context=context,
        timeout=config.timeouts.mqtt_connect,
    )
    try:
        async with asyncio.timeout(config.timeouts.mqtt_connect):
            async with client:
                pass
    except aiomqtt.MqttCodeError as exc:
        return Row(
            check="broker",
            status=Status.FAIL,
            detail=f"{where} refused the connection: {exc}",
            hint="check mqtt.username and mqtt.password (and the broker's ACL for this device)",
        )
    except (aiomqtt.MqttError, OSError, TimeoutError) as exc:
        return Row(
            check="broker",
            status=Status.FAIL,
            detail=f"{where} unreachable: {exc or type(exc).__name__}",
            hint="check mqtt.host/mqtt.port, the network, and that the broker is running",
        )
    return Row(check="broker", status=Status.PASS, detail=f"connected and authorised at {where}")


# ---------------------------------------------------------------- LINE Messaging API


def line_token_verdict(status: int, body: dict[str, Any], expected_basic_id: str) -> Row:
    if status == 200:
        basic = str(body.get("basicId", ""))
        name = str(body.get("displayName", ""))
        if expected_basic_id and basic.removeprefix("@") != expected_basic_id:
            return Row(
                check="line_token",
                status=Status.WARN,
                detail=f"token belongs to {basic} ({name}), config says @{expected_basic_id}",
                hint="fix line.oa_basic_id or use the token of the right Official Account",
            )
        return Row(check="line_token", status=Status.PASS, detail=f"bot {basic} ({name})")
    if status == 401:
        return Row(
            check="line_token",
            status=Status.FAIL,
            detail=f"token rejected (401): {body.get('message', '')}",
            hint="issue a new long-lived channel access token in the LINE Developers console "
            "(Messaging API tab) and run `shopedge provision`",
        )
    return Row(
        check="line_token",
        status=Status.FAIL,
        detail=f"bot info answered {status}: {body}",
        hint="retry later; if it persists check status.line.me",
    )


async def check_line_token(config: ShopEdgeConfig, env: Environment) -> Row:
    import aiohttp

    token = config.line.channel_access_token.get_secret_value()
    if not token:
        return Row(
            check="line_token",
            status=Status.FAIL,
            detail="line.channel_access_token is empty",
            hint="run `shopedge provision` with the Messaging API channel access token",
        )
    base = (config.line.api_base or LINE_API).rstrip("/")
    timeout = aiohttp.ClientTimeout(total=config.timeouts.line_api)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(f"{base}/v2/bot/info", headers={"Authorization": f"Bearer {token}"}) as response,
        ):
            status = response.status
            try:
                body = await response.json(content_type=None)
            except (json.JSONDecodeError, aiohttp.ContentTypeError):
                body = {}
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return Row(
            check="line_token",
            status=Status.FAIL,
            detail=f"{base} unreachable: {exc!r}",
            hint="check the network / DNS; the agent keeps queueing until LINE is reachable",
        )
    return line_token_verdict(status, body if isinstance(body, dict) else {}, config.line.oa_basic_id)


# ---------------------------------------------------------------- LINE Pay


def linepay_signature(secret: str, path: str, query: str, nonce: str) -> str:
    """LINE Pay v4 GET signature: Base64(HMAC-SHA256(secret, secret + path + query + nonce))."""
    message = (secret + path + query + nonce).encode()
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def linepay_verdict(http_status: int, body: dict[str, Any]) -> Row:
    """1150 ("no history") for a random order id proves the credentials; 1106 means they are wrong."""
    code = str(body.get("returnCode", ""))
    message = str(body.get("returnMessage", ""))
    if code == "1150":
        return Row(
            check="linepay", status=Status.PASS, detail="signed status check accepted (1150 no history)"
        )
    if code == "1106":
        return Row(
            check="linepay",
            status=Status.FAIL,
            detail=f"LINE Pay rejected the credentials: 1106 {message}",
            hint="check linepay.channel_id and linepay.channel_secret in Merchant Center, and that "
            "this shop's public IP is whitelisted there",
        )
    if code == "0000":
        return Row(
            check="linepay",
            status=Status.WARN,
            detail="a random order id exists?! (0000)",
            hint="re-run doctor",
        )
    return Row(
        check="linepay",
        status=Status.FAIL,
        detail=f"unexpected answer {http_status} {code} {message}",
        hint="check linepay.mode and linepay.api_base; retry later",
    )


async def check_linepay(config: ShopEdgeConfig, env: Environment) -> Row:
    import aiohttp

    pay = config.linepay
    secret = pay.channel_secret.get_secret_value()
    if not pay.channel_id or not secret:
        return Row(
            check="linepay",
            status=Status.FAIL,
            detail="linepay.channel_id or channel_secret is empty",
            hint="run `shopedge provision` with the LINE Pay channel id and secret",
        )
    base = (pay.api_base or LINEPAY_HOSTS[pay.mode]).rstrip("/")
    order_id = f"doctor-{uuid.uuid4().hex}"
    path = f"/v4/payments/orders/{quote(order_id, safe='')}/check"
    nonce = str(uuid.uuid4())
    headers = {
        "Content-Type": "application/json",
        "X-LINE-ChannelId": pay.channel_id,
        "X-LINE-Authorization-Nonce": nonce,
        "X-LINE-Authorization": linepay_signature(secret, path, "", nonce),
    }
    if pay.merchant_device_profile_id:
        headers["X-LINE-MerchantDeviceProfileId"] = pay.merchant_device_profile_id
        headers["X-LINE-MerchantDeviceType"] = pay.merchant_device_type
    timeout = aiohttp.ClientTimeout(
        total=config.timeouts.linepay_check, connect=config.timeouts.linepay_connect
    )
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(base + path, headers=headers) as response,
        ):
            status = response.status
            try:
                body = await response.json(content_type=None)
            except (json.JSONDecodeError, aiohttp.ContentTypeError):
                body = {}
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return Row(
            check="linepay",
            status=Status.FAIL,
            detail=f"{base} unreachable: {exc!r}",
            hint="check the network; payments cannot be taken while LINE Pay is unreachable",
        )
    return linepay_verdict(status, body if isinstance(body, dict) else {})


