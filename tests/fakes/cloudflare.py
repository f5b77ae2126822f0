"""A local fake of the Cloudflare v4 API (the parts a DNS TXT store uses), on 127.0.0.1.

It behaves like the real service where a client can tell: Bearer token auth with Cloudflare's
error envelopes, ``GET /zones?name=`` and ``GET /zones/<id>/dns_records`` with filters and
``page``/``per_page``/``result_info`` paging, create/patch/delete, TXT content longer than one
255-byte string returned as quoted chunks (``"..." "..."``), duplicate-record refusal.
Like the API it answers 429 (with Retry-After) past 1,200 requests in 5 minutes per token, by
a clock a test may replace with its virtual one. Tests inject failures (429 with Retry-After,
5xx) and read per-route request counts and arrival times.

    async with CloudflareFake(token="t", zones=["example.com"]) as cf:
        store = CloudflareStore(..., api_base=cf.api_base)
        ...
        assert cf.count("PATCH", "/zones/{zone_id}/dns_records/{record_id}") == 1
"""

from __future__ import annotations

import math
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from aiohttp import web

API_PREFIX = "/client/v4"
TXT_STRING_MAX = 255
TXT_CONTENT_MAX = 2048
QUOTA_REQUESTS, QUOTA_WINDOW = 1200, 300.0  # per token: the API's global rate limit


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _new_id() -> str:
    return secrets.token_hex(16)


def quote_txt(content: str) -> str:
    """How the API reports long TXT content: 255-character quoted strings, space-separated."""
    return _quote_strings(_split(content))


def _split(text: str) -> list[str]:
    return [text[i : i + TXT_STRING_MAX] for i in range(0, len(text), TXT_STRING_MAX)] or [""]


def _quote_strings(strings: list[str]) -> str:
    return " ".join('"' + c.replace("\\", "\\\\").replace('"', '\\"') + '"' for c in strings)


def txt_strings(content: str) -> tuple[list[str], bool]:
    """The character strings of written TXT content, and whether it was written quoted.

    As the API documents it: content is quoted "character strings" (RFC 1035) of up to 255
    bytes each, and strings exceeding that are split automatically; unquoted content is one
    string (split the same way).
    """
    text = content.strip()
    if not text.startswith('"'):
        return _split(content), False
    strings: list[str] = []
    i = 0
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        if text[i] != '"':
            return _split(content), False  # not a list of quoted strings: one plain string
        i += 1
        chunk: list[str] = []
        while i < len(text) and text[i] != '"':
            if text[i] == "\\" and i + 1 < len(text):
                i += 1
            chunk.append(text[i])
            i += 1
        if i >= len(text):
            return _split(content), False  # unterminated: the API takes it as plain text
        i += 1
        strings += _split("".join(chunk))
    return strings, True


@dataclass
class Record:
    id: str
    zone_id: str
    zone_name: str
    name: str
    type: str
    content: str
    ttl: int = 1
    comment: str | None = None
    created_on: str = field(default_factory=_now)
    modified_on: str = field(default_factory=_now)

    def to_json(self, *, quote_all: bool) -> dict[str, Any]:
        content = self.content
        if self.type == "TXT":
            strings, quoted = txt_strings(content)
            if quote_all or quoted or len(strings) > 1:
                content = _quote_strings(strings)  # as stored: one or more quoted strings
        return {
            "id": self.id,
            "zone_id": self.zone_id,
            "zone_name": self.zone_name,
            "name": self.name,
            "type": self.type,
            "content": content,
            "proxiable": False,
            "proxied": False,
            "ttl": self.ttl,
            "locked": False,
            "comment": self.comment,
            "tags": [],
            "meta": {"auto_added": False, "managed_by_apps": False},
            "created_on": self.created_on,
            "modified_on": self.modified_on,
        }


@dataclass
class Injected:
    status: int
    retry_after: str | None
    method: str | None
    route: str | None


class CloudflareFake:
    """The fake API server. ``api_base`` is what a client uses instead of the real base URL."""

    def __init__(
        self,
        *,
        token: str,
        zones: list[str] | tuple[str, ...] = ("example.com",),
        quote_all_txt: bool = False,
        clock: Callable[[], float] = time.monotonic,
        quota: tuple[int, float] | None = (QUOTA_REQUESTS, QUOTA_WINDOW),
    ) -> None:
        self.tokens = {token}
        # the API's rate limit: ``quota[0]`` requests per ``quota[1]`` seconds per token, then
        # 429 with Retry-After; ``clock`` may be a test's virtual clock
        self.clock = clock
        self.quota = quota
        self.times: list[float] = []  # clock time of every request, in arrival order
        self.rate_limited = 0  # requests answered 429 by the quota (not by fail_next)
        self.zones: dict[str, str] = {_new_id(): z.lower() for z in zones}  # id -> name
        self.records: dict[str, Record] = {}  # id -> record
        self.quote_all_txt = quote_all_txt  # newer API versions quote all TXT content
        self.counts: Counter[tuple[str, str]] = Counter()  # (method, route template)
        self.log: list[tuple[str, str]] = []  # (method, path with query)
        self._inject: list[Injected] = []
        self._runner: web.AppRunner | None = None
        self.api_base = ""

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application(middlewares=[self._middleware])
        p = API_PREFIX
        app.router.add_get(f"{p}/zones", self._list_zones)
        app.router.add_get(f"{p}/zones/{{zone_id}}/dns_records", self._list_records)
        app.router.add_post(f"{p}/zones/{{zone_id}}/dns_records", self._create_record)
        app.router.add_get(f"{p}/zones/{{zone_id}}/dns_records/{{record_id}}", self._get_record)
        app.router.add_patch(f"{p}/zones/{{zone_id}}/dns_records/{{record_id}}", self._patch_record)
        app.router.add_delete(
            f"{p}/zones/{{zone_id}}/dns_records/{{record_id}}", self._delete_record
        )
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.api_base = f"http://{host}:{port}{API_PREFIX}"
        return self.api_base

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> CloudflareFake:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- test controls -----------------------------------------------------------------------

    def zone_id(self, name: str) -> str:
        return next(zid for zid, zname in self.zones.items() if zname == name.lower())

    def add_record(self, zone: str, name: str, content: str, *, type: str = "TXT") -> Record:
        zid = self.zone_id(zone)
        rec = Record(_new_id(), zid, self.zones[zid], name.lower(), type, content)
        self.records[rec.id] = rec
        return rec

    def find(self, name: str, type: str = "TXT") -> list[Record]:
        return [r for r in self.records.values() if r.name == name.lower() and r.type == type]

    def fail_next(
        self,
        status: int,
        *,
        times: int = 1,
        retry_after: str | None = None,
        method: str | None = None,
        route: str | None = None,
    ) -> None:
        """Answer the next ``times`` matching requests with ``status`` (429: Retry-After)."""
        self._inject += [Injected(status, retry_after, method, route) for _ in range(times)]

    def count(self, method: str | None = None, route: str | None = None) -> int:
        return sum(
            n
            for (m, r), n in self.counts.items()
            if (method is None or m == method) and (route is None or r == route)
        )

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def reset_counts(self) -> None:
        self.counts.clear()
        self.log.clear()

    def max_in_window(self, window: float = 300.0) -> int:
        """The most requests that arrived within any ``window`` seconds (by ``clock``)."""
        best, lo = 0, 0
        for hi, t in enumerate(self.times):
            while self.times[lo] <= t - window:
                lo += 1
            best = max(best, hi - lo + 1)
        return best

    # -- plumbing ----------------------------------------------------------------------------

    @staticmethod
    def _envelope(
        result: Any = None,
        *,
        status: int = 200,
        errors: list[dict[str, Any]] | None = None,
        result_info: dict[str, int] | None = None,
    ) -> web.Response:
        body: dict[str, Any] = {
            "success": not errors,
            "errors": errors or [],
            "messages": [],
            "result": result,
        }
        if result_info is not None:
            body["result_info"] = result_info
        return web.json_response(body, status=status)

    def _error(self, status: int, code: int, message: str) -> web.Response:
        return self._envelope(None, status=status, errors=[{"code": code, "message": message}])

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        info = request.match_info.route.resource
        route = info.canonical if info is not None else request.path
        route = route.removeprefix(API_PREFIX)
        self.counts[(request.method, route)] += 1
        self.log.append((request.method, request.path_qs.removeprefix(API_PREFIX)))
        now = self.clock()
        self.times.append(now)
        if self.quota is not None:
            limit, window = self.quota
            recent = sum(1 for t in self.times[-limit - 1 :] if t > now - window)
            if recent > limit:
                self.rate_limited += 1
                resp = self._error(
                    429, 971, "Please wait and consider throttling your request speed"
                )
                resp.headers["Retry-After"] = str(math.ceil(window / 10))
                return resp
        for i, inj in enumerate(self._inject):
            if (inj.method in (None, request.method)) and (inj.route in (None, route)):
                del self._inject[i]
                if inj.status == 429:
                    resp = self._error(
                        429, 971, "Please wait and consider throttling your request speed"
                    )
                    if inj.retry_after is not None:
                        resp.headers["Retry-After"] = inj.retry_after
                    return resp
                return self._error(inj.status, 10000 + inj.status, "Internal server error")
        auth = request.headers.get("Authorization", "")
        if not auth:
            return self._error(
                400, 9106, "Missing X-Auth-Key, X-Auth-Email or Authorization headers"
            )
        scheme, _, token = auth.partition(" ")
        if scheme != "Bearer" or not token:
            return self._error(400, 6111, "Invalid format for Authorization header")
        if token not in self.tokens:
            return self._error(403, 9109, "Invalid access token")
        if info is None:
            return self._error(404, 7000, "No route for that URI")
        return await handler(request)

    @staticmethod
    def _paging(request: web.Request, default: int, maximum: int) -> tuple[int, int] | None:
        try:
            page = int(request.query.get("page", "1"))
            per_page = int(request.query.get("per_page", str(default)))
        except ValueError:
            return None
        if page < 1 or not 5 <= per_page <= maximum:
            return None
        return page, per_page

    def _page(self, items: list[Any], page: int, per_page: int) -> web.Response:
        chunk = items[(page - 1) * per_page : page * per_page]
        info = {
            "page": page,
            "per_page": per_page,
            "count": len(chunk),
            "total_count": len(items),
            "total_pages": max(1, math.ceil(len(items) / per_page)),
        }
        return self._envelope(chunk, result_info=info)

    def _zone_or_error(self, request: web.Request) -> str | web.Response:
        zid = request.match_info["zone_id"]
        if zid not in self.zones:
            return self._error(
                400,
                7003,
                f"Could not route to {request.path}, perhaps your object identifier is invalid?",
            )
        return zid

    # -- handlers ----------------------------------------------------------------------------

    async def _list_zones(self, request: web.Request) -> web.Response:
        paging = self._paging(request, 20, 50)
        if paging is None:
            return self._error(400, 1001, "Invalid paging parameters")
        name = request.query.get("name")
        zones = [
            {"id": zid, "name": zname, "status": "active", "paused": False, "type": "full"}
            for zid, zname in self.zones.items()
            if name is None or zname == name.lower()
        ]
        return self._page(zones, *paging)

    async def _list_records(self, request: web.Request) -> web.Response:
        zid = self._zone_or_error(request)
        if isinstance(zid, web.Response):
            return zid
        paging = self._paging(request, 100, 5000)
        if paging is None:
            return self._error(400, 1004, "Invalid paging parameters")
        rtype, name = request.query.get("type"), request.query.get("name")
        found = [
            r.to_json(quote_all=self.quote_all_txt)
            for r in self.records.values()
            if r.zone_id == zid
            and (rtype is None or r.type == rtype)
            and (name is None or r.name == name.lower())
        ]
        return self._page(found, *paging)

    async def _body(self, request: web.Request) -> dict[str, Any] | web.Response:
        try:
            body = await request.json()
        except ValueError:
            return self._error(400, 9207, "Request body is invalid.")
        if not isinstance(body, dict):
            return self._error(400, 9207, "Request body is invalid.")
        return body

    def _check_content(self, rtype: str, content: Any) -> web.Response | None:
        if not isinstance(content, str) or not content:
            return self._error(400, 9021, "Invalid or missing content")
        if rtype == "TXT" and len(content) > TXT_CONTENT_MAX:
            return self._error(
                400, 9100, f"Content for TXT record is invalid. Must not exceed {TXT_CONTENT_MAX}"
            )
        return None

    async def _create_record(self, request: web.Request) -> web.Response:
        zid = self._zone_or_error(request)
        if isinstance(zid, web.Response):
            return zid
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        rtype, name, content = body.get("type"), body.get("name"), body.get("content")
        if not isinstance(rtype, str) or not rtype:
            return self._error(400, 9004, "DNS record type is invalid")
        if not isinstance(name, str) or not name:
            return self._error(400, 9005, "DNS name is invalid")
        zname = self.zones[zid]
        name = name.lower().rstrip(".")
        if name == "@":
            name = zname
        elif not (name == zname or name.endswith("." + zname)):
            name = f"{name}.{zname}"
        if (bad := self._check_content(rtype, content)) is not None:
            return bad
        if any(
            r.name == name and r.type == rtype and r.content == content
            for r in self.records.values()
        ):
            return self._error(400, 81058, "An identical record already exists.")
        rec = Record(
            _new_id(),
            zid,
            zname,
            name,
            rtype,
            content,
            ttl=int(body.get("ttl", 1)),
            comment=body.get("comment"),
        )
        self.records[rec.id] = rec
        return self._envelope(rec.to_json(quote_all=self.quote_all_txt))

    def _record_or_error(self, request: web.Request, zid: str) -> Record | web.Response:
        rec = self.records.get(request.match_info["record_id"])
        if rec is None or rec.zone_id != zid:
            return self._error(404, 81044, "Record does not exist.")
        return rec

    async def _get_record(self, request: web.Request) -> web.Response:
        zid = self._zone_or_error(request)
        if isinstance(zid, web.Response):
            return zid
        rec = self._record_or_error(request, zid)
        if isinstance(rec, web.Response):
            return rec
        return self._envelope(rec.to_json(quote_all=self.quote_all_txt))

    async def _patch_record(self, request: web.Request) -> web.Response:
        zid = self._zone_or_error(request)
        if isinstance(zid, web.Response):
            return zid
        rec = self._record_or_error(request, zid)
        if isinstance(rec, web.Response):
            return rec
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        if "content" in body:
            if (bad := self._check_content(rec.type, body["content"])) is not None:
                return bad
            rec.content = body["content"]
        if "comment" in body:
            rec.comment = body["comment"]
        if "ttl" in body:
            rec.ttl = int(body["ttl"])
        rec.modified_on = _now()
        return self._envelope(rec.to_json(quote_all=self.quote_all_txt))

    async def _delete_record(self, request: web.Request) -> web.Response:
        zid = self._zone_or_error(request)
        if isinstance(zid, web.Response):
            return zid
        rec = self._record_or_error(request, zid)
        if isinstance(rec, web.Response):
            return rec
        del self.records[rec.id]
        return self._envelope({"id": rec.id})
