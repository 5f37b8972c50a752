"""Commerce matching of a product candidate: at most ``MAX_SEARCHES`` (2) keyword searches, the first
acceptable product wins; similarity = 0.4 sequence ratio + 0.4 token overlap + 0.2 brand bonus
(the best over the name as read and its Korean form), accepted at >= 0.6 — but only when the
product agrees with the candidate:

* brand: the candidate's brand (any of its spellings, Korean or Latin) is in the title;
* product type: when both name a type (선크림, 토너, mouse...), it is the same one;
* line: the words of the name beyond brand, type and sizes (자작나무, MX Master, 프로 2) are mostly
  in the title — a sibling product of the same brand is not a match.

A name read in English whose brand has a Korean name is searched in Korean first ("애플 에어팟
프로 2" for "AirPods Pro 2"), since Coupang titles are Korean. A search result's productUrl that is
already a partner link is used as is (no deeplink call). Never searches for an unclear name.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from stageflow.video.analysis.evidence import NEEDS_CHECK, CommerceMatch
from stageflow.video.analysis.similarity import normalize, title_similarity

ACCEPT = 0.6
STOP = 0.8
MAX_VARIANTS = 5
MAX_SEARCHES = 2

#: Latin product words and their Korean transliterations as Coupang titles write them.
TRANSLIT: dict[str, str] = {
    "airpods": "에어팟", "pro": "프로", "max": "맥스", "mini": "미니", "ultra": "울트라", "plus": "플러스",
    "air": "에어", "master": "마스터", "lite": "라이트", "buds": "버즈", "galaxy": "갤럭시", "watch": "워치",
    "iphone": "아이폰", "ipad": "아이패드", "macbook": "맥북", "wireless": "무선", "mouse": "마우스",
    "keyboard": "키보드", "sunscreen": "선크림", "cream": "크림", "serum": "세럼", "toner": "토너",
    "pad": "패드", "tint": "틴트", "cushion": "쿠션", "airwrap": "에어랩", "dryer": "드라이어",
    "gen": "세대", "generation": "세대", "quencher": "퀜처", "powercore": "파워코어", "keys": "키즈",
    "tumbler": "텀블러", "earbuds": "이어폰", "headphones": "헤드폰", "power": "파워", "bank": "뱅크",
}  # fmt: skip
_SIZE = re.compile(r"^\d+(\.\d+)?(ml|g|kg|mm|cm|개|매|호|p|개입|세트)?$")


def _brand_spellings(brand: str | None) -> list[str]:
    if not brand:
        return []
    from stageflow.video.analysis.brands import BRANDS

    spellings = {normalize(brand)}
    for canonical, alts in BRANDS.items():
        forms = {normalize(canonical), *(normalize(a) for a in alts)}
        if normalize(brand) in forms:
            spellings |= {normalize(canonical), *(normalize(a) for a in alts)}
    return sorted((s for s in spellings if s), key=len, reverse=True)


def korean_brand(brand: str | None) -> str | None:
    """The brand's Korean name: the brand list's canonical name when it is Korean, else its first
    Korean spelling."""
    if not brand:
        return None
    from stageflow.video.analysis.brands import BRANDS

    hangul = re.compile(r"[\uac00-\ud7a3]")
    for canonical, alts in BRANDS.items():
        if normalize(brand) in {normalize(canonical), *(normalize(a) for a in alts)}:
            for form in (canonical, *alts):
                if hangul.search(form):
                    return normalize(form)
    return normalize(brand) if hangul.search(brand) else None


def korean_form(name: str, brand: str | None) -> str | None:
    """The Korean query of a name read in English: Korean brand + transliterated words."""
    if re.search(r"[\uac00-\ud7a3]", name):
        return None
    ko = korean_brand(brand)
    if ko is None:
        return None
    # the brand's own name is dropped; its product lines ("airpods" under 애플) are transliterated
    own = {normalize(brand or ""), ko}
    latin = [s for s in _brand_spellings(brand) if s.isascii()]
    own |= {min(latin, key=len)} if latin else set()
    words = [TRANSLIT.get(w, w) for w in normalize(name).split() if w not in own]
    return " ".join([ko, *(w for w in words if w not in own)])


def keyword_variants(name: str | None, brand: str | None, category_path: Sequence[str] = ()) -> list[str]:
    """Search keywords, most specific first, at most 5, no duplicates (the Korean form of an English
    name first)."""
    if not name or name == NEEDS_CHECK:
        return []
    name = name.strip()
    plain = re.sub(r"[\(\[].*?[\)\]]", " ", name)
    plain = " ".join(re.sub(r"\b\d+(\.\d+)?\s*(ml|g|kg|mm|cm|개|매|호)\b", " ", plain, flags=re.I).split())
    brand = (brand or "").strip()
    has_brand = brand and any(s in normalize(name).replace(" ", "") for s in _brand_spellings(brand))
    out: list[str] = []
    for kw in (
        korean_form(name, brand) or "",
        f"{brand} {name}" if brand and not has_brand else name,
        name,
        plain,
        f"{brand} {category_path[-1]}" if brand and category_path else "",
        " ".join(plain.split()[:2]),
    ):
        kw = " ".join(kw.split())
        if kw and kw.lower() not in (o.lower() for o in out):
            out.append(kw)
    return out[:MAX_VARIANTS]


def _line_words(name: str, brand: str | None) -> list[str]:
    """The words that tell this product from its siblings: the name without brand, type words, sizes."""
    from stageflow.video.analysis.naming import product_type

    brand_forms = set(_brand_spellings(brand))
    out = []
    for w in normalize(name).split():
        if w in brand_forms or _SIZE.match(w) and not w.isdigit():
            continue
        if product_type(w) and len(normalize(name).split()) > 1:
            continue
        out.append(w)
    return out


def agrees(name: str, brand: str | None, title: str) -> bool:
    """Brand, product type and line of the candidate agree with a product title."""
    from stageflow.video.analysis.naming import jamo_similarity, product_type

    t_norm = normalize(title)
    t_compact = t_norm.replace(" ", "")
    spellings = _brand_spellings(brand)
    if spellings and not any(s.replace(" ", "") in t_compact for s in spellings):
        return False
    ctype, ttype = product_type(name), product_type(title)
    if ctype and ttype and ctype != ttype:
        return False
    words = _line_words(name, brand)
    if not words:
        return True
    t_words = t_norm.split()

    def found(w: str) -> bool:
        forms = {w, TRANSLIT.get(w, w)}
        if any(f in t_compact for f in forms):
            return True
        return any(jamo_similarity(f, tw) >= 0.85 for f in forms for tw in t_words if not f.isascii())

    return sum(found(w) for w in words) >= max(1, (len(words) + 1) // 2)


def find_match(
    api: Any, name: str | None, brand: str | None, category_path: Sequence[str] = (), *, limit: int = 10
) -> CommerceMatch | None:
    """Search ``api`` (a CommerceApi) with up to two keyword variants and link the best agreeing
    product with similarity >= 0.6 (stopping at the first search that gives one). None when
    nothing qualifies."""
    if not name or name == NEEDS_CHECK:
        return None
    best: tuple[float, Any] | None = None
    queries = [f"{brand or ''} {name}".strip()]
    if (ko := korean_form(name, brand)) is not None:
        queries.append(ko)
    for keyword in keyword_variants(name, brand, category_path)[:MAX_SEARCHES]:
        for product in api.search(keyword, limit):
            title = _title(product)
            if not agrees(name, brand, title):
                continue
            sim = max(title_similarity(q, title, korean_brand(brand) or brand) for q in queries)
            if best is None or sim > best[0]:
                best = (sim, product)
        if best is not None and best[0] >= ACCEPT:
            break
    if best is None or best[0] < ACCEPT:
        return None
    sim, product = best
    url = _get(product, "url")
    from stageflow.commerce.coupang import is_partner_link

    link = url if is_partner_link(url) else api.deeplink([url])[0]
    return CommerceMatch(
        product_id=str(_get(product, "product_id")),
        title=_title(product),
        price=_get(product, "price"),
        url=link,
        similarity=round(sim, 4),
    )


def brand_from_title(name: str, title: str) -> str | None:
    """The brand of an unlisted brand's product, read from the matched Coupang title: titles start
    with the brand, so when the candidate's name starts with the same word (and goes on with more),
    that word is the brand, spelt as the title spells it ("마몽드 로즈워터 토너" + "마몽드 로즈워터
    토너 250ml" -> "마몽드"). None when the first words differ or the word is a type or a number."""
    from stageflow.video.analysis.naming import product_type

    words, t_words = name.split(), title.split()
    if len(words) < 2 or not t_words:
        return None
    first = t_words[0]
    if normalize(words[0]) != normalize(first) or product_type(first) or not re.search(r"[^\W\d_]", first):
        return None
    return first


def _get(product: Any, key: str) -> Any:
    return product.get(key) if isinstance(product, dict) else getattr(product, key, None)


def _title(product: Any) -> str:
    return str(_get(product, "title") or "")
