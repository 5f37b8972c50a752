"""Coupang Partners CEA request signing: ``Authorization: CEA algorithm=HmacSHA256, access-key=AK,
signed-date=D, signature=S`` with D = UTC ``yyMMdd'T'HHmmss'Z'`` and S = lowercase hex
HMAC-SHA256(secret, D + METHOD + PATH + QUERY), QUERY without the '?'.

Pure functions; the secret never appears in a return value other than through the HMAC.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime


def signed_date(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).astimezone(UTC).strftime("%y%m%dT%H%M%SZ")


def signature(secret: str, date: str, method: str, path: str, query: str = "") -> str:
    message = f"{date}{method.upper()}{path}{query.lstrip('?')}"
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def authorization(
    access_key: str, secret: str, method: str, path: str, query: str = "", now: datetime | None = None
) -> str:
    date = signed_date(now)
    sig = signature(secret, date, method, path, query)
    return f"CEA algorithm=HmacSHA256, access-key={access_key}, signed-date={date}, signature={sig}"
