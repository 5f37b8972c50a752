"""Loopback HTTP servers that speak the documented APIs (shared/api-notes.md) for the analysis tests:
Coupang Partners (with CEA signature verification), Gemini generateContent, Slack chat.postMessage
and incoming webhooks, Google Sheets v4 values. Each records the requests it got and can be told to
answer the next requests with faults (429 + Retry-After, 5xx, slow, malformed JSON)."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass
class Fault:
    status: int = 500
    body: bytes | str | dict | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    path_contains: str = ""


@dataclass
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


Response = tuple[int, dict[str, str], bytes]


class LoopbackServer:
    """Base: subclasses implement ``handle(request) -> (status, headers, body)``."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                req = Request(
                    self.command,
                    parts.path,
                    parts.query,
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
                status, headers, payload = owner._dispatch(req)
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = do_PUT = _serve

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> LoopbackServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def fail_next(self, *faults: Fault) -> None:
        self.faults.extend(faults)

    def wait_requests(self, count: int, timeout: float = 60.0) -> list[Request]:
        """The requests once ``count`` have arrived: a request a client gave up on may still sit in
        the listen backlog on a busy machine, so counting it right away would race the server."""
        deadline = time.monotonic() + timeout
        while len(self.requests) < count:
            assert time.monotonic() < deadline, f"{len(self.requests)} of {count} requests arrived"
            time.sleep(0.02)
        return list(self.requests)

    def calls(self, contains: str = "") -> list[Request]:
        return [r for r in self.requests if contains in r.path]

    def _dispatch(self, req: Request) -> Response:
        with self._lock:
            self.requests.append(req)
            fault = None
            if self.faults and self.faults[0].path_contains in req.path:
                fault = self.faults.popleft()
        if fault is not None:
            if fault.delay_s:
                time.sleep(fault.delay_s)
            body = fault.body
            if isinstance(body, dict):
                body = json.dumps(body)
            data = (body or "").encode() if isinstance(body, str | type(None)) else body
            return fault.status, {"Content-Type": "application/json", **fault.headers}, data
        return self.handle(req)

    def handle(self, req: Request) -> Response:  # pragma: no cover - overridden
        return 404, {}, b""


def _json(status: int, data: Any, headers: dict[str, str] | None = None) -> Response:
    return (
        status,
        {"Content-Type": "application/json; charset=utf-8", **(headers or {})},
        json.dumps(data, ensure_ascii=False).encode(),
    )


# ---------------------------------------------------------------------------------------------- Coupang
class CoupangServer(LoopbackServer):
    SEARCH = "/v2/providers/affiliate_open_api/apis/openapi/products/search"
    DEEPLINK = "/v2/providers/affiliate_open_api/apis/openapi/deeplink"
    _AUTH = re.compile(
        r"^CEA algorithm=HmacSHA256, access-key=(?P<ak>[^,]+), "
        r"signed-date=(?P<d>\d{6}T\d{6}Z), signature=(?P<s>[0-9a-f]{64})$"
    )

    def __init__(
        self,
        access_key: str,
        secret: str,
        catalog: list[dict[str, Any]],
        *,
        search_quota: int | None = None,
    ):
        """``search_quota``: searches answered before every further search gets Coupang's over-quota
        answer (HTTP 403, rCode 403, a limit message)."""
        super().__init__()
        self.access_key, self.secret, self.catalog = access_key, secret, catalog
        self.auth_failures = 0
        self.search_quota = search_quota
        self.searches = 0

    def _verify(self, req: Request) -> str | None:
        m = self._AUTH.match(req.headers.get("authorization", ""))
        if not m:
            return "malformed Authorization header"
        if m["ak"] != self.access_key:
            return "unknown access key"
        signed = datetime.strptime(m["d"], "%y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        if abs((datetime.now(UTC) - signed).total_seconds()) > 300:
            return "signed-date too far from server time"
        message = f"{m['d']}{req.method}{req.path}{req.query}"
        expected = hmac.new(self.secret.encode(), message.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, m["s"]):
            return "Invalid signature"
        return None

    def handle(self, req: Request) -> Response:
        problem = self._verify(req)
        if problem:
            self.auth_failures += 1
            return _json(401, {"rCode": "401", "rMessage": problem})
        if req.method == "GET" and req.path == self.SEARCH:
            q = parse_qs(req.query)
            keyword = q.get("keyword", [""])[0].lower()
            limit = int(q.get("limit", ["10"])[0])
            words = keyword.split()
            self.searches += 1
            if self.search_quota is not None and self.searches > self.search_quota:
                return _json(
                    403,
                    {
                        "rCode": "403",
                        "rMessage": "Request limit exceeded: search API allows 10 calls per hour",
                    },
                )

            def hits_of(p: dict[str, Any]) -> int:
                return sum(w in p["productName"].lower() for w in words)

            # relevance: products matching more query words first (stable for ties)
            hits = sorted((p for p in self.catalog if hits_of(p)), key=hits_of, reverse=True)
            data = [{**p, "keyword": keyword, "rank": i + 1} for i, p in enumerate(hits[:limit])]
            return _json(
                200, {"rCode": "0", "rMessage": "", "data": {"landingUrl": "https://x", "productData": data}}
            )
        if req.method == "POST" and req.path == self.DEEPLINK:
            urls = req.json().get("coupangUrls", [])
            rows = [
                {
                    "originalUrl": u,
                    "shortenUrl": "https://link.coupang.com/a/" + hashlib.sha1(u.encode()).hexdigest()[:6],
                    "landingUrl": u,
                }
                for u in urls
            ]
            return _json(200, {"rCode": "0", "rMessage": "", "data": rows})
        return _json(404, {"rCode": "404", "rMessage": "no such path"})


# ---------------------------------------------------------------------------------------------- Gemini
class GeminiServer(LoopbackServer):
    """Answers generateContent. ``ranges`` answers pass a; ``candidates`` (a list consumed in order,
    or one dict reused) answers pass b. Raw text answers can be queued with ``queue_text``."""

    def __init__(
        self, api_key: str, ranges: list[dict[str, Any]] | None = None, candidate: dict | None = None
    ):
        super().__init__()
        self.api_key = api_key
        self.ranges = ranges or []
        self.candidate = candidate or {}
        self.texts: deque[tuple[str, str]] = deque()  # (text, finishReason)
        #: tokens the model would think before answering when no thinkingBudget caps it; thinking
        #: counts against maxOutputTokens, as with gemini-2.5 (answer tokens ~ len(text) / 3)
        self.thinking_tokens = 0

    def queue_text(self, text: str, finish: str = "STOP") -> None:
        self.texts.append((text, finish))

    def handle(self, req: Request) -> Response:
        m = re.fullmatch(r"/v1beta/models/([^/:]+):generateContent", req.path)
        if not m or req.method != "POST":
            return _json(404, {"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}})
        if req.headers.get("x-goog-api-key") != self.api_key:
            return _json(
                400, {"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.",
                                "status": "INVALID_ARGUMENT", "details": [{"reason": "API_KEY_INVALID"}]}}
            )  # fmt: skip
        body = req.json()
        schema = body["generationConfig"]["responseSchema"]
        with self._lock:
            queued = self.texts.popleft() if self.texts else None
        if queued is not None:
            text, finish = queued
        elif "ranges" in schema["properties"]:
            text, finish = json.dumps({"ranges": self.ranges}), "STOP"
        else:
            text, finish = json.dumps(self.candidate, ensure_ascii=False), "STOP"
        gen = body["generationConfig"]
        budget = (gen.get("thinkingConfig") or {}).get("thinkingBudget")
        thought = self.thinking_tokens if budget is None else min(self.thinking_tokens, budget)
        cap = gen.get("maxOutputTokens", 8192)
        if finish == "STOP" and thought + len(text) // 3 > cap:
            text, finish = text[: max(0, (cap - thought) * 3)], "MAX_TOKENS"
        return _json(
            200,
            {
                "candidates": [
                    {"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": finish}
                ],
                "usageMetadata": {
                    "promptTokenCount": 100,
                    "candidatesTokenCount": 50,
                    "totalTokenCount": 150,
                },
            },
        )


# ---------------------------------------------------------------------------------------------- Slack
class SlackServer(LoopbackServer):
    def __init__(self, token: str, channels: tuple[str, ...] = ("C123",)):
        super().__init__()
        self.token, self.channels = token, channels
        self.posted: list[dict[str, Any]] = []
        self.webhook_posts: list[dict[str, Any]] = []

    def handle(self, req: Request) -> Response:
        if req.path.startswith("/hooks/"):
            self.webhook_posts.append(req.json())
            return 200, {"Content-Type": "text/plain"}, b"ok"
        if req.path != "/api/chat.postMessage":
            return _json(200, {"ok": False, "error": "unknown_method"})
        if req.headers.get("authorization") != f"Bearer {self.token}":
            return _json(200, {"ok": False, "error": "invalid_auth"})
        if "json" in req.headers.get("content-type", ""):
            args = req.json()
        else:
            args = {k: v[0] for k, v in parse_qs(req.body.decode()).items()}
        if args.get("channel") not in self.channels:
            return _json(200, {"ok": False, "error": "channel_not_found"})
        self.posted.append(args)
        return _json(
            200, {"ok": True, "channel": args["channel"], "ts": f"1700000000.{len(self.posted):06d}"}
        )


# ---------------------------------------------------------------------------------------------- Sheets
_A1 = re.compile(
    r"^(?:'?(?P<sheet>(?:[^'!]|'')+)'?!)?(?P<c1>[A-Z]+)(?P<r1>\d+)?(?::(?P<c2>[A-Z]+)(?P<r2>\d+)?)?$"
)


def _col(letters: str) -> int:
    n = 0
    for ch in letters:
        n = n * 26 + ord(ch) - 64
    return n - 1


class Formula(str):
    """A cell Sheets parsed as a formula (USER_ENTERED text starting with "=")."""


def _user_entered(value: Any) -> Any:
    """Sheets' USER_ENTERED parsing of a string: "=..." becomes a formula, a numeric string a number
    (so an all-digit id loses its leading zeros); RAW stores values as given."""
    if not isinstance(value, str):
        return value
    if value.startswith("="):
        return Formula(value)
    try:
        number = float(value.replace(",", ""))
    except ValueError:
        return value
    return int(number) if number.is_integer() else number


class SheetsServer(LoopbackServer):
    """Spreadsheets with worksheets as lists of rows. ``unshared`` ids answer 403."""

    def __init__(
        self, token: str, sheets: dict[str, dict[str, list[list[Any]]]], unshared: tuple[str, ...] = ()
    ):
        super().__init__()
        self.token, self.sheets, self.unshared = token, sheets, unshared

    def _parse(self, a1: str) -> tuple[str, int, int | None, int, int | None]:
        m = _A1.match(unquote(a1))
        if not m:
            raise ValueError(a1)
        sheet = (m["sheet"] or "").replace("''", "'")
        c1 = _col(m["c1"])
        c2 = _col(m["c2"]) if m["c2"] else c1
        r1 = int(m["r1"]) - 1 if m["r1"] else 0
        r2 = int(m["r2"]) - 1 if m["r2"] else None
        return sheet, r1, r2, c1, c2

    def handle(self, req: Request) -> Response:
        if req.headers.get("authorization") != f"Bearer {self.token}":
            msg = "Request had invalid authentication credentials."
            return _json(401, {"error": {"code": 401, "message": msg, "status": "UNAUTHENTICATED"}})
        m = re.fullmatch(r"/v4/spreadsheets/([^/:]+)(.*)", req.path)
        if not m:
            return _json(404, {"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}})
        sid, rest = m.group(1), m.group(2)
        if sid in self.unshared:
            return _json(403, {"error": {"code": 403, "message": "The caller does not have permission",
                                         "status": "PERMISSION_DENIED"}})  # fmt: skip
        if sid not in self.sheets:
            return _json(
                404,
                {"error": {"code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND"}},
            )
        book = self.sheets[sid]
        if rest == "" and req.method == "GET":
            sheets = [
                {"properties": {"sheetId": i, "title": t, "index": i, "sheetType": "GRID",
                                "gridProperties": {"rowCount": 1000, "columnCount": 26}}}
                for i, t in enumerate(book)
            ]  # fmt: skip
            return _json(200, {"spreadsheetId": sid, "properties": {"title": sid}, "sheets": sheets})
        if rest.startswith("/values/") and req.method == "GET":
            return self._get(book, rest[len("/values/") :])
        if rest == "/values:batchUpdate" and req.method == "POST":
            body = req.json()
            option = body.get("valueInputOption")
            if option not in ("RAW", "USER_ENTERED"):
                return _json(400, {"error": {"code": 400, "message": "Invalid valueInputOption",
                                             "status": "INVALID_ARGUMENT"}})  # fmt: skip
            cells = 0
            for item in body["data"]:
                if option == "USER_ENTERED":  # what the Sheets UI would make of typed text
                    item = {**item, "values": [[_user_entered(v) for v in row] for row in item["values"]]}
                try:
                    sheet, r1, _, c1, _ = self._parse(item["range"])
                except ValueError:
                    return self._bad_range(item["range"])
                if sheet not in book:
                    return self._bad_range(item["range"])
                rows = book[sheet]
                for i, values in enumerate(item["values"]):
                    while len(rows) <= r1 + i:
                        rows.append([])
                    row = rows[r1 + i]
                    while len(row) < c1 + len(values):
                        row.append("")
                    row[c1 : c1 + len(values)] = values
                    cells += len(values)
            return _json(200, {"spreadsheetId": sid, "totalUpdatedCells": cells, "responses": []})
        return _json(404, {"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}})

    def _bad_range(self, a1: str) -> Response:
        return _json(400, {"error": {"code": 400, "message": f"Unable to parse range: {unquote(a1)}",
                                     "status": "INVALID_ARGUMENT"}})  # fmt: skip

    def _get(self, book: dict[str, list[list[Any]]], a1: str) -> Response:
        try:
            sheet, r1, r2, c1, c2 = self._parse(a1)
        except ValueError:
            return self._bad_range(a1)
        if sheet not in book:
            return self._bad_range(a1)
        rows = book[sheet][r1 : (r2 + 1 if r2 is not None else None)]
        values = [[str(v) for v in row[c1 : c2 + 1]] for row in rows]
        while values and not any(values[-1]):
            values.pop()
        out: dict[str, Any] = {"range": unquote(a1), "majorDimension": "ROWS"}
        if values:
            out["values"] = values
        return _json(200, out)
