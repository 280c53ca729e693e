"""What every request passes before a route sees it (plain ASGI middleware, so a huge or hostile body
is refused before it is parsed): the API key, the body size, and well-formed JSON. Python's JSON
parser is run here, bounded: a body nested thousands of levels deep is a 422, not a crash."""

from __future__ import annotations

import json
import secrets
from typing import Any

from gradtune.serve.limits import ServeError, invalid, limit_error

Scope = dict[str, Any]
# answered without the API key: probes call /health; the docs describe the API, they hold no data
OPEN_PATHS = {"/health", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}


async def send_error(send: Any, error: ServeError) -> None:
    body = json.dumps(error.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if error.status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    if error.status == 413:
        headers.append((b"connection", b"close"))  # the rest of the body is not read
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BearerAuth:
    """Requests must carry `Authorization: Bearer KEY` (all paths but OPEN_PATHS)."""

    def __init__(self, app: Any, api_key: str):
        self.app, self.key = app, api_key.encode()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            given = dict(scope["headers"]).get(b"authorization", b"")
            scheme, _, token = given.partition(b" ")
            if scheme.lower() != b"bearer" or not secrets.compare_digest(token.strip(), self.key):
                await send_error(send, ServeError(401, "authentication_error", "this server needs an API key: "
                                                  "send the header 'Authorization: Bearer KEY'"))
                return
        await self.app(scope, receive, send)


class JsonBody:
    """A POST body: at most `max_bytes` (else 413, read no further) and one well-formed JSON value
    (else 422). The route then reads it as application/json whatever Content-Type said (Hugging
    Face's client sends none)."""

    def __init__(self, app: Any, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        too_big = limit_error("body_bytes", f"the request body is larger than {self.max_bytes} bytes (--max-body)")
        declared = headers.get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.max_bytes:
            await send_error(send, too_big if declared.isdigit() else invalid("Content-Length is not a number"))
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await send_error(send, too_big)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        try:
            json.loads(body)
        except (ValueError, RecursionError) as err:  # UnicodeDecodeError is a ValueError
            what = "nested too deeply" if isinstance(err, RecursionError) else str(err)
            await send_error(send, invalid(f"the request body is not JSON ({what}); send one JSON object"))
            return
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        others = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
        scope = {**scope, "headers": [*others, (b"content-type", b"application/json")]}
        await self.app(scope, replay, send)
