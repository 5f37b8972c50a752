"""Built-in sink ``gsheets``: the Google Sheets review sheet (gspread). One row per candidate in the
review worksheet, keyed by candidate id in column A, written with ONE values:batchUpdate per call
with valueInputOption RAW (a name such as "= aes" or an id such as "00123" is stored as the text it is)
(never cell by cell; a re-run updates rows in place and never adds duplicate lines; the status column
of an existing row is left to reviewers). ``review_sync(store)`` reads the status column back and
moves candidates through the store's status machine (actor "sheet"). ``read_channels()`` reads the
channels worksheet (the original kept its channel list there) for the rss source.

Credentials: a service-account JSON (file, env GOOGLE_APPLICATION_CREDENTIALS, config SecretStr or a
Prefect Secret block) or a pre-issued OAuth access token; never logged or put in errors. gspread and
google-auth are imported only when the sink is built.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, SecretStr

from stageflow.api import BadInput, IllegalTransition, Register, ServiceAuthError, ServiceError, hookimpl
from stageflow.services.resilience import Retryable, RetryPolicy, parse_retry_after, with_retries
from stageflow.video.analysis.routing import canonical_status
from stageflow.video.store import video_store

GOOGLE_SHEETS = "https://sheets.googleapis.com"
SCOPES = ("https://www.googleapis.com/auth/spreadsheets",)
#: Review worksheet columns (A..N). C is the status column reviewers edit.
COLUMNS = (
    "id", "video_id", "status", "product_name", "brand", "category", "start", "end", "score",
    "score_band", "ppl_probability", "commerce_url", "clip", "hook_sentence",
)  # fmt: skip
STATUS_COL = "C"
LAST_COL = "N"


class GSheetsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    spreadsheet_key: str
    review_worksheet: str = "Review"
    channels_worksheet: str = "Channels"
    table: str = "candidates"  # the sink table written to the review worksheet; others are ignored
    service_account_file: str | None = None  # default: env GOOGLE_APPLICATION_CREDENTIALS
    service_account_json: SecretStr | None = None
    service_account_block: str | None = None  # Prefect Secret block holding the JSON
    access_token: SecretStr | None = None  # a pre-issued OAuth token instead of a service account
    base_url: str = GOOGLE_SHEETS
    timeout_s: float = 30.0
    attempts: int = 4
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0


def _credentials(config: GSheetsConfig) -> tuple[Any, str]:
    """(google-auth credentials, who they are for error messages)."""
    if config.access_token is not None:
        from google.oauth2.credentials import Credentials

        return Credentials(token=config.access_token.get_secret_value()), "the token's account"
    from google.oauth2 import service_account

    info: dict[str, Any] | None = None
    if config.service_account_json is not None:
        info = json.loads(config.service_account_json.get_secret_value())
    elif config.service_account_block:
        from prefect.blocks.system import Secret

        block: Any = Secret.load(config.service_account_block)  # sync_compatible: typed as a coroutine too
        value = block.get()
        info = value if isinstance(value, dict) else json.loads(str(value))
    else:
        path = config.service_account_file or os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
        if not path or not os.path.isfile(os.path.expanduser(path)):
            raise BadInput(
                "gsheets: no service account: set service_account_file (or GOOGLE_APPLICATION_CREDENTIALS) "
                "to the JSON key file, or service_account_block"
            )
        with open(os.path.expanduser(path), encoding="utf-8") as fh:
            info = json.load(fh)
    creds = service_account.Credentials.from_service_account_info(info, scopes=list(SCOPES))
    return creds, str(info.get("client_email", "the service account"))


def _session(credentials: Any, base_url: str) -> Any:
    from google.auth.transport.requests import AuthorizedSession

    class RebasedSession(AuthorizedSession):
        """An AuthorizedSession whose Sheets URLs go to ``base_url`` (tests: a local server)."""

        def request(self, method: Any, url: Any, *args: Any, **kwargs: Any) -> Any:
            if base_url.rstrip("/") != GOOGLE_SHEETS and url.startswith(GOOGLE_SHEETS):
                url = base_url.rstrip("/") + url[len(GOOGLE_SHEETS) :]
            return super().request(method, url, *args, **kwargs)  # type: ignore[no-untyped-call]  # google-auth

    return RebasedSession(credentials)  # type: ignore[no-untyped-call]  # google-auth's __init__


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return " > ".join(str(v) for v in value)
    if isinstance(value, float):
        return round(value, 3)
    return value


def review_row(record: Mapping[str, Any]) -> list[Any]:
    commerce = record.get("commerce") or {}
    values = {**record, "category": record.get("category_path"), "commerce_url": commerce.get("url")}
    return [_cell(values.get(col)) for col in COLUMNS]


class GSheetsSink:
    def __init__(self, config: GSheetsConfig, *, sleep: Callable[[float], None] = time.sleep):
        import gspread

        self.config = config
        self.sleep = sleep
        creds, self.account = _credentials(config)
        self.client = gspread.Client(auth=creds, session=_session(creds, config.base_url))
        self.client.http_client.timeout = config.timeout_s
        self.policy = RetryPolicy(config.attempts, config.backoff_s, config.max_backoff_s)
        self._sheet: Any = None
        self._secret = config.access_token.get_secret_value() if config.access_token else ""

    # ------------------------------------------------------------------ Sink
    def write(self, table: str, records: Sequence[Mapping[str, Any]]) -> int:
        """Upsert ``records`` (candidate outputs with ``id``) as review rows in one batch update."""
        if table != self.config.table or not records:
            return 0
        ws = self._quote(self.config.review_worksheet)
        existing = self._call("reading the review ids", lambda: self._open().values_get(f"{ws}!A1:A"))
        ids = [row[0] if row else "" for row in existing.get("values", [])]
        data: list[dict[str, Any]] = []
        if not ids:
            data.append({"range": f"{ws}!A1:{LAST_COL}1", "values": [list(COLUMNS)]})
            ids = list(COLUMNS[:1])
        row_of = {v: i + 1 for i, v in enumerate(ids) if v}
        next_row = len(ids) + 1
        for rec in records:
            values = review_row(rec)
            rid = str(rec["id"])
            if rid in row_of:  # update in place, leaving the reviewers' status column alone
                r = row_of[rid]
                data.append({"range": f"{ws}!A{r}:B{r}", "values": [values[:2]]})
                data.append({"range": f"{ws}!D{r}:{LAST_COL}{r}", "values": [values[3:]]})
            else:
                row_of[rid] = next_row
                data.append({"range": f"{ws}!A{next_row}:{LAST_COL}{next_row}", "values": [values]})
                next_row += 1
        # RAW: text stays text ("= aes" is no formula, an all-digit id keeps its zeros); numbers are
        # sent as JSON numbers, so they stay numbers
        body = {"valueInputOption": "RAW", "data": data}
        self._call("writing the review rows", lambda: self._open().values_batch_update(body))
        return len(records)

    # ------------------------------------------------------------------ review sync
    def review_sync(self, store: Any, *, actor: str = "sheet") -> dict[str, Any]:
        """Apply status changes made in the sheet to the store. Returns {"changed": [...], "errors":
        [...]}; an illegal change (e.g. low_score_filtered -> approved) is reported, not applied."""
        ws = self._quote(self.config.review_worksheet)
        got = self._call(
            "reading the status column", lambda: self._open().values_get(f"{ws}!A2:{STATUS_COL}")
        )
        changed, errors = [], []
        for n, row in enumerate(got.get("values", []), start=2):
            if not row or not row[0]:
                continue
            cid, wanted = str(row[0]), (str(row[2]).strip().lower() if len(row) > 2 else "")
            wanted = canonical_status(wanted)  # a row written before a rename shows the old name
            current = video_store(store).candidate_status(cid)
            if current is None:
                errors.append(f"row {n}: candidate {cid} is not in the store")
                continue
            if not wanted or wanted == current:
                continue
            try:
                video_store(store).set_candidate_status(
                    cid, wanted, actor=actor, reason=f"review sheet row {n}"
                )
                changed.append({"id": cid, "from": current, "to": wanted})
            except IllegalTransition as exc:
                errors.append(f"row {n}: {exc}")
        return {"changed": changed, "errors": errors, "at": datetime.now(UTC).isoformat(timespec="seconds")}

    def read_channels(self) -> list[dict[str, str]]:
        """The channels worksheet as dicts keyed by its header row; a YouTube ``channel_id`` without a
        ``url`` gets the channel's Atom feed URL."""
        ws = self._quote(self.config.channels_worksheet)
        got = self._call("reading the channels", lambda: self._open().values_get(f"{ws}!A1:Z"))
        rows = got.get("values", [])
        if not rows:
            return []
        header = [str(h).strip().lower() for h in rows[0]]
        out = []
        for row in rows[1:]:
            item = {h: str(row[i]).strip() if i < len(row) else "" for i, h in enumerate(header) if h}
            if not any(item.values()):
                continue
            if not item.get("url") and item.get("channel_id"):
                item["url"] = f"https://www.youtube.com/feeds/videos.xml?channel_id={item['channel_id']}"
            out.append(item)
        return out

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _quote(title: str) -> str:
        return "'" + title.replace("'", "''") + "'"

    def _open(self) -> Any:
        if self._sheet is None:
            import gspread

            key = self.config.spreadsheet_key
            try:
                self._sheet = self.client.open_by_key(key)
            except gspread.exceptions.SpreadsheetNotFound:
                raise BadInput(f"gsheets: spreadsheet {key} not found: check spreadsheet_key") from None
            except PermissionError:
                raise BadInput(
                    f"gsheets: spreadsheet {key} is not shared with {self.account}: share it with that "
                    "address as Editor"
                ) from None
        return self._sheet

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        import gspread

        def attempt() -> Any:
            try:
                return fn()
            except gspread.exceptions.APIError as exc:
                status = exc.response.status_code
                msg = str(exc.error.get("message", ""))[:200] if isinstance(exc.error, dict) else ""
                msg = msg.replace(self._secret, "***") if self._secret else msg
                if status == 429 or status >= 500:
                    raise Retryable(
                        f"HTTP {status} {msg}", parse_retry_after(exc.response.headers.get("Retry-After"))
                    ) from None
                if status in (401, 403):
                    raise ServiceAuthError(
                        f"gsheets {what}: HTTP {status} {msg}: check the credentials and sharing"
                    ) from None
                if status == 400 and "range" in msg.lower():
                    raise BadInput(
                        f"gsheets {what}: {msg}: add the worksheets '{self.config.review_worksheet}' / "
                        f"'{self.config.channels_worksheet}' to the spreadsheet"
                    ) from None
                raise ServiceError(f"gsheets {what}: HTTP {status} {msg}") from None
            except Exception as exc:
                import requests

                if isinstance(exc, requests.RequestException):
                    raise Retryable(f"{type(exc).__name__}") from None
                raise

        def give_up(last: str) -> Any:
            raise ServiceError(f"gsheets {what}: failed after {self.policy.attempts} attempts: {last}")

        return with_retries(attempt, self.policy, self.sleep, give_up)


class SheetChannelsConfig(GSheetsConfig):
    """The gsheets connection plus the feed filters applied to every channel row."""

    max_age_days: float | None = 7.0
    skip_shorts: bool = True
    channel_stats: bool = True  # record feed entries and the worksheet's subscribers for scoring


class SheetChannelsSource:
    """Source ``sheet-channels``: the channels worksheet (name, url or channel_id, keywords) read as
    RSS feeds, as the original system kept its channel list; a row's comma-separated ``keywords``
    become that channel's required keywords, and an optional ``subscribers`` column is kept in the
    store for scoring (with the feed's per-video views and ratings)."""

    def __init__(self, config: SheetChannelsConfig, *, sleep: Callable[[float], None] = time.sleep):
        self.config = config
        fields = {k: getattr(config, k) for k in GSheetsConfig.model_fields}
        self.sheet = GSheetsSink(GSheetsConfig(**fields), sleep=sleep)

    def discover(self) -> list[Any]:
        from stageflow.video.channels import parse_subscribers, record_discovered
        from stageflow.video.feeds import FeedFilter, filter_items, parse_feed, read_feed_bytes

        items: list[Any] = []
        every: list[Any] = []
        rows = self.sheet.read_channels()
        subscribers = parse_subscribers(rows)  # a bad cell fails here, before anything is recorded
        for channel in rows:
            url = channel.get("url")
            if not url:
                continue
            keywords = tuple(k.strip() for k in channel.get("keywords", "").split(",") if k.strip())
            rule = FeedFilter(self.config.max_age_days, self.config.skip_shorts, keywords)
            parsed = parse_feed(read_feed_bytes(url), "rss")
            every.extend(parsed)
            items.extend(filter_items(parsed, rule))
        if self.config.channel_stats:
            record_discovered(every, subscribers=subscribers)
        return items


@hookimpl
def register_sources(register: Register) -> None:
    register(
        "sheet-channels",
        SheetChannelsSource,
        config=SheetChannelsConfig,
        requires=("gspread",),
        extra="sheets",
        description="Feeds listed in a Google Sheets channels worksheet (per-channel keywords)",
    )


@hookimpl
def register_sinks(register: Register) -> None:
    register(
        "gsheets",
        GSheetsSink,
        config=GSheetsConfig,
        requires=("gspread",),
        extra="sheets",
        description="Google Sheets review sheet (batch updates; review-sync reads statuses back)",
    )
