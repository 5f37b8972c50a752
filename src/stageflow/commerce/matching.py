"""Commerce matching of a product candidate: up to 5 keyword variants, each searched in turn;
similarity = 0.4 sequence ratio + 0.4 token overlap + 0.2 brand bonus; accept >= 0.6, stop at
>= 0.8; the accepted product's URL is turned into a partner deeplink.

Never searches for an unclear name ("확인 필요"): that candidate simply has no match.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from stageflow.video.analysis.evidence import NEEDS_CHECK, CommerceMatch
from stageflow.video.analysis.similarity import title_similarity

ACCEPT = 0.6
STOP = 0.8
MAX_VARIANTS = 5


def keyword_variants(name: str | None, brand: str | None, category_path: Sequence[str] = ()) -> list[str]:
    """Search keywords, most specific first, at most 5, no duplicates."""
    if not name or name == NEEDS_CHECK:
        return []
    name = name.strip()
    plain = re.sub(r"[\(\[].*?[\)\]]", " ", name)
    plain = " ".join(re.sub(r"\b\d+(\.\d+)?\s*(ml|g|kg|mm|cm|개|매|호)\b", " ", plain, flags=re.I).split())
    brand = (brand or "").strip()
    out: list[str] = []
    for kw in (
        f"{brand} {name}" if brand and brand.lower() not in name.lower() else name,
        name,
        plain,
        f"{brand} {category_path[-1]}" if brand and category_path else "",
        " ".join(plain.split()[:2]),
    ):
        kw = " ".join(kw.split())
        if kw and kw.lower() not in (o.lower() for o in out):
            out.append(kw)
    return out[:MAX_VARIANTS]


def find_match(
    api: Any, name: str | None, brand: str | None, category_path: Sequence[str] = (), *, limit: int = 10
) -> CommerceMatch | None:
    """Search ``api`` (a CommerceApi) with the keyword variants and deeplink the best product with
    similarity >= 0.6 (stopping early at >= 0.8). None when nothing qualifies."""
    best: tuple[float, Any] | None = None
    query = name or ""
    for keyword in keyword_variants(name, brand, category_path):
        for product in api.search(keyword, limit):
            sim = title_similarity(f"{brand or ''} {query}".strip(), _title(product), brand)
            if best is None or sim > best[0]:
                best = (sim, product)
        if best is not None and best[0] >= STOP:
            break
    if best is None or best[0] < ACCEPT:
        return None
    sim, product = best
    url = _get(product, "url")
    link = api.deeplink([url])[0]
    return CommerceMatch(
        product_id=str(_get(product, "product_id")),
        title=_title(product),
        price=_get(product, "price"),
        url=link,
        similarity=round(sim, 4),
    )


def _get(product: Any, key: str) -> Any:
    return product.get(key) if isinstance(product, dict) else getattr(product, key, None)


def _title(product: Any) -> str:
    return str(_get(product, "title") or "")
