"""Open-vocabulary product naming for the ``rules`` analyzer: product mentions in speech (Korean noun
phrases from Kiwi, English capitalised runs), product captions on screen (persistent text that is
neither a sentence, a call to action, a disclosure nor OCR junk), their fusion when they agree
(jamo-level similarity, so one wrong OCR syllable — "룸앤" for "롬앤" — still agrees), and brands by
proximity in text and time (token-bounded: "파인애플" never holds "애플").

Libraries: kiwipiepy (Kiwi, a maintained Korean morphological analyzer whose model ships on PyPI:
noun phrases with particles stripped, offline), rapidfuzz (fuzzy string ratios in C), jamo (Hangul
syllable -> jamo decomposition). The brand list is a boost (it marks a brand and tells Kiwi the word),
never a gate. Pure functions over text; the Kiwi model is loaded once per process, lazily.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from stageflow.video.analysis.lexicon import CALL_TO_ACTION, CUES
from stageflow.video.analysis.similarity import normalize

#: Product-type nouns (Korean and English): what makes a noun phrase a product, and what a commerce
#: match must agree on. Data; extend freely.
PRODUCT_TYPES: dict[str, tuple[str, ...]] = {
    "선크림": ("선크림", "선케어", "썬크림", "선스틱", "선쿠션", "sunscreen", "sun cream", "spf"),
    "크림": ("크림", "cream", "moisturizer", "수분크림"),
    "세럼": ("세럼", "serum", "에센스", "essence", "앰플", "ampoule"),
    "토너": ("토너", "toner", "스킨"),
    "로션": ("로션", "lotion", "에멀전", "emulsion"),
    "패드": ("패드", "pad", "pads"),
    "클렌저": ("클렌저", "클렌징", "폼", "cleanser", "cleansing"),
    "마스크": ("마스크", "마스크팩", "팩", "mask"),
    "립": ("틴트", "립스틱", "립밤", "립글로스", "립", "tint", "lipstick", "lip balm", "lip"),
    "쿠션": ("쿠션", "파운데이션", "foundation", "cushion", "컨실러", "concealer"),
    "아이": ("마스카라", "아이라이너", "섀도우", "팔레트", "mascara", "eyeliner", "palette"),
    "헤어": ("샴푸", "트리트먼트", "헤어", "shampoo", "conditioner", "hair"),
    "드라이어": ("드라이어", "드라이기", "에어랩", "dryer", "airwrap"),
    "마우스": ("마우스", "mouse"),
    "키보드": ("키보드", "keyboard"),
    "이어폰": ("이어폰", "이어버드", "에어팟", "버즈", "earbuds", "earphones", "airpods", "buds"),
    "헤드폰": ("헤드폰", "헤드셋", "headphones", "headset"),
    "노트북": ("노트북", "맥북", "laptop", "macbook"),
    "태블릿": ("태블릿", "아이패드", "tablet", "ipad"),
    "휴대폰": ("휴대폰", "스마트폰", "아이폰", "갤럭시", "phone", "iphone"),
    "워치": ("워치", "시계", "watch"),
    "텀블러": ("텀블러", "보온병", "tumbler", "bottle"),
    "청소기": ("청소기", "vacuum"),
    "신발": ("운동화", "스니커즈", "러닝화", "신발", "sneakers", "shoes", "runners"),
    "가방": ("가방", "백팩", "bag", "backpack", "tote"),
    "의류": ("티셔츠", "후드", "자켓", "재킷", "코트", "shirt", "hoodie", "jacket"),
    "카메라": ("카메라", "camera", "렌즈", "lens"),
    "모니터": ("모니터", "monitor"),
    "충전기": ("충전기", "보조배터리", "charger", "power bank"),
    "음료": ("주스", "음료", "커피", "차", "juice", "coffee", "tea"),
    "식품": ("과자", "라면", "젤리", "단백질", "프로틴", "snack", "protein"),
}

#: Nouns that are never (part of) a product name: time, people, the video itself, generic words.
STOP_NOUNS = frozenset(
    """요즘 오늘 어제 내일 지금 이번 다음 영상 채널 제품 상품 물건 이거 이것 그거 그것 저거 여러분 저희 우리
    제 저 거 것 수 때 곳 중 번 분 개 정도 진짜 정말 완전 너무 추천 강추 사용 구매 구입 링크 설명 설명란 란
    구독 좋아요 알림 댓글 루틴 하루 매일 느낌 생각 얘기 이야기 피부 얼굴 날씨 여름 겨울 봄 가을 효과 지속력
    발색 흡수 인생템 최애 재구매 내돈내산 후기 리뷰 언박싱 광고 협찬 유료 포함 이벤트 할인 코드 쿠폰 가격
    처음 마지막 부분 느낌 기분 안녕 하나 사람 친구 엄마 언니 요거 이건 그건 순서 단계 방법 포인트 장점 단점
    정보 소개 이유 결과 경험 정도 이상 이하 자체 바로 다들 모두 혹시 대박 최고 사랑 건 주말 브이로그 일상
    첫 번째 두 세 아침 저녁 밤 참고 예전 한""".split()
)
_EN_STOP = frozenset(
    """i i'm im i've my me we you your it it's its this that these those the a an and or but so to of in
    on for with is are was be been really very just also today honestly guys hey okay ok so yes no
    here there what which who how because if then my new first best favorite favourite love great
    amazing every day daily use using link description subscribe bell comment below video channel vlog
    weekend morning""".split()
)
_WORD = re.compile(r"[0-9A-Za-z][0-9A-Za-z&'+.\-]*")


@dataclass(frozen=True)
class Mention:
    """A candidate product name: its text, where it came from (speech/ocr/fused), when, and how
    product-like it is (``strength``)."""

    text: str
    source: str
    t: float
    strength: float
    frames: int = 1


# --------------------------------------------------------------------------- text helpers


def jamo_string(text: str) -> str:
    """Compact text with every Hangul syllable decomposed into compatibility jamo (롬 -> ㄹㅗㅁ)."""
    from jamo import h2j, j2hcj

    compact = "".join(normalize(text).split())
    return j2hcj(h2j(compact))


def jamo_similarity(a: str, b: str) -> float:
    """0..1 similarity of two names on their jamo strings (rapidfuzz ratio): one wrong syllable in a
    four-syllable name still scores about 0.9."""
    from rapidfuzz import fuzz

    ja, jb = jamo_string(a), jamo_string(b)
    if not ja or not jb:
        return 0.0
    return fuzz.ratio(ja, jb) / 100.0


def names_agree(a: str, b: str, threshold: float = 0.8) -> bool:
    """Two names for the same product: one contains the other (spaces ignored), or their jamo strings
    are close (tolerates one OCR syllable error), or most tokens of the shorter agree."""
    from rapidfuzz import fuzz

    ca, cb = "".join(normalize(a).split()), "".join(normalize(b).split())
    if not ca or not cb:
        return False
    if len(min(ca, cb, key=len)) >= 3 and (ca in cb or cb in ca):
        return True
    if jamo_similarity(a, b) >= threshold:
        return True
    return fuzz.token_set_ratio(jamo_tokens(a), jamo_tokens(b)) / 100.0 >= 0.85


def jamo_tokens(text: str) -> str:
    return " ".join(jamo_string(t) for t in normalize(text).split())


def product_type(text: str) -> str | None:
    """The product type named in ``text`` (token-bounded for Latin words), or None."""
    norm = normalize(text)
    compact = norm.replace(" ", "")
    words = f" {norm} "
    best: tuple[int, str] | None = None
    for kind, spellings in PRODUCT_TYPES.items():
        for s in spellings:
            sn = normalize(s)
            if not sn:
                continue
            hit = (f" {sn} " in words) if sn.isascii() else (sn.replace(" ", "") in compact)
            if hit and (best is None or len(sn) > best[0]):
                best = (len(sn), kind)
    return best[1] if best else None


def is_junk(text: str) -> bool:
    """OCR noise: fewer than 3 letters/digits, mostly symbols, or no word of two letters or more."""
    raw = unicodedata.normalize("NFKC", text).strip()
    visible = [c for c in raw if not c.isspace()]
    letters = [c for c in visible if c.isalnum()]
    if len(letters) < 3 or len(letters) < 0.7 * len(visible):
        return True
    words = [w for w in normalize(raw).split() if len(w) >= 2 and not w.isdigit()]
    if not words:
        return True
    return sum(len(w) for w in words) < 0.6 * len(letters)


def is_call_to_action(text: str) -> bool:
    low = " ".join(text.lower().split())
    return any(c in low for c in CALL_TO_ACTION)


def _is_cue_word(token: str) -> bool:
    return any(normalize(c).replace(" ", "") == token for kind in CUES for c in CUES[kind])


# --------------------------------------------------------------------------- Kiwi


@lru_cache(maxsize=8)
def _kiwi(words: tuple[str, ...]) -> Any:
    from kiwipiepy import Kiwi

    kiwi = Kiwi()
    for w in words:
        if w and not w.isascii() and " " not in w:
            kiwi.add_user_word(w, "NNP")
    return kiwi


@lru_cache(maxsize=4096)
def _tokens(text: str, words: tuple[str, ...]) -> tuple[tuple[str, str, int, int], ...]:
    return tuple((t.form, t.tag, t.start, t.start + t.len) for t in _kiwi(words).tokenize(text))


_NOUNISH = {"NNG", "NNP", "SL", "SN", "SH", "NR", "W_SERIAL"}
_SENTENCE = {"EF", "EC", "VV", "VA", "VX", "ETM", "ETN", "XSV", "XSA"}


def is_sentence(text: str, words: tuple[str, ...] = ()) -> bool:
    """Burnt-in subtitles and slogans: text holding a verb or a verb ending (Kiwi)."""
    hangul = re.sub(r"[^\uac00-\ud7a3 ]", " ", text)
    if not hangul.strip():
        return bool(re.search(r"\b(?:is|are|was|i|you|my|love|use|it's)\b", text.lower()))
    return any(tag in _SENTENCE for _, tag, _, _ in _tokens(hangul.strip(), words))


def _strip_stops(parts: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    def stop(form: str) -> bool:
        f = form.lower()
        return f in STOP_NOUNS or f in _EN_STOP or _is_cue_word(f)

    while parts and stop(parts[0][0]):
        parts = parts[1:]
    while parts and stop(parts[-1][0]):
        parts = parts[:-1]
    return parts


def noun_phrases(text: str, words: tuple[str, ...] = ()) -> list[tuple[str, int]]:
    """Noun phrases of ``text`` as ``(phrase, char offset)``: maximal runs of nouns/foreign words/
    numbers joined by spaces at most (Kiwi), particles dropped, stop nouns trimmed from both ends;
    English runs are split into capitalised/number runs (plus a following product-type noun)."""
    out: list[tuple[str, int]] = []
    run: list[tuple[str, int, int]] = []

    def flush() -> None:
        nonlocal run
        if run:
            for phrase in _split_latin(run, text):
                parts = _strip_stops(phrase)
                if parts:
                    s, e = parts[0][1], parts[-1][2]
                    out.append((" ".join(text[s:e].split()), s))
        run = []

    for form, tag, start, end in _tokens(text, words):
        if tag in _NOUNISH and (not run or start - run[-1][2] <= 1):
            run.append((form, start, end))
        elif tag in _NOUNISH:
            flush()
            run.append((form, start, end))
        else:
            flush()
    flush()
    return out


def _split_latin(run: list[tuple[str, int, int]], text: str) -> list[list[tuple[str, int, int]]]:
    """A run of Latin words -> the sub-runs that look like names: capitalised or digit-bearing words,
    plus a lowercase product-type noun right after them. Hangul runs pass through unchanged."""
    if not all(f.isascii() for f, _, _ in run):
        return [run]
    out, cur = [], []
    for form, s, e in run:
        word = form.strip(".,!?")
        e = s + len(word) if word else e
        named = word[:1].isupper() or any(ch.isdigit() for ch in word) or "&" in word
        if word and named and word.lower() not in _EN_STOP:
            cur.append((word, s, e))
        elif word and cur and product_type(word):
            cur.append((word, s, e))
            out.append(cur)
            cur = []
        else:
            if cur:
                out.append(cur)
            cur = []
    if cur:
        out.append(cur)
    return out


# --------------------------------------------------------------------------- brands


class Brands:
    """The optional brand list: canonical -> spellings. Matching is token-bounded (a brand is a whole
    token or run of tokens, never a piece of a word), with jamo-level tolerance of one syllable for
    Korean spellings of three or more jamo."""

    def __init__(self, brands: Mapping[str, Iterable[str]]):
        self.spellings: dict[str, tuple[str, ...]] = {
            canonical: tuple(dict.fromkeys(normalize(s) for s in (canonical, *spellings) if normalize(s)))
            for canonical, spellings in brands.items()
        }
        self.words = tuple(sorted({s for sp in self.spellings.values() for s in sp if " " not in s}))

    def find(self, text: str) -> list[tuple[int, str]]:
        """Brands in ``text`` as ``(token index, canonical)``, in text order."""
        toks = normalize(text).split()
        found: list[tuple[int, str]] = []
        for i in range(len(toks)):
            for canonical, spellings in self.spellings.items():
                for s in spellings:
                    st = s.split()
                    if toks[i : i + len(st)] == st or (len(st) == 1 and self._fuzzy(toks[i], s)):
                        found.append((i, canonical))
                        break
                else:
                    continue
                break
        return found

    @staticmethod
    def _fuzzy(token: str, spelling: str) -> bool:
        if spelling.isascii() and token.isascii():
            # OCR glues Latin words ("LOGITECHMXMASTER"): a long spelling may open a token
            return len(spelling) >= 4 and token.startswith(spelling) and len(token) > len(spelling)
        if spelling.isascii() or token.isascii() or len(spelling) < 2:
            return False
        # a particle glued to the brand ("롬앤의", "라운드랩은")
        for n in (0, 1, 2):
            base = token[: len(token) - n] if n else token
            if len(base) == len(spelling) and jamo_similarity(base, spelling) >= 0.8:
                return True
        return False

    def first(self, text: str) -> str | None:
        hits = self.find(text)
        return hits[0][1] if hits else None

    def is_only_brand(self, text: str) -> bool:
        """The text is a brand name and nothing else (particles aside)."""
        toks = normalize(text).split()
        hits = self.find(text)
        if not hits:
            return False
        rest = "".join(toks)
        for canonical in {h[1] for h in hits}:
            for s in sorted(self.spellings[canonical], key=len, reverse=True):
                rest = rest.replace(s.replace(" ", ""), "")
        return len(rest) <= 1 and not rest.isdigit()


# --------------------------------------------------------------------------- mentions


def strength(text: str, brands: Brands) -> float:
    """How product-like a phrase is: a product type +2, a brand +2, +0.5 per extra token (max +1.5),
    a model number or capitalised Latin word +1."""
    toks = normalize(text).split()
    score = 0.0
    if product_type(text):
        score += 2
    if brands.find(text):
        score += 2
    score += min(1.5, 0.5 * (len(toks) - 1))
    if re.search(r"[A-Z]{2,}|\d", text) or re.search(r"\b[A-Z][a-z]+", text):
        score += 1
    return score


def speech_mentions(segments: Sequence[Any], brands: Brands) -> list[Mention]:
    """Product mentions in transcript segments: noun phrases that name a product (a product type or
    brand plus something else, or a multi-word name), never from a call-to-action clause."""
    out = []
    for seg in segments:
        for clause in re.split(r"(?<=[.!?~])\s+|,\s*", seg.text):
            if not clause.strip() or is_call_to_action(clause):
                continue
            for phrase, _ in noun_phrases(clause, brands.words):
                st = strength(phrase, brands)
                toks = normalize(phrase).split()
                if len("".join(toks)) < 2:
                    continue
                only_type = product_type(phrase) and len(toks) == 1
                only_brand = brands.is_only_brand(phrase)
                if only_type or only_brand or st < 2:
                    continue
                out.append(Mention(phrase, "speech", seg.start, st))
    return out


def caption_mentions(
    texts: Sequence[Any], brands: Brands, *, min_frames: int = 2, title: str = ""
) -> list[Mention]:
    """Product captions among on-screen texts (``texts`` items: one per text per on-screen interval,
    with ``first_t``, ``frames``): texts that persist (read on ``min_frames`` kept frames, variants
    within one OCR syllable counted together) or name a known brand or product type, that are not
    junk, calls to action, disclosures or sentences (burnt-in subtitles), nor the video's own title
    card (a caption inside ``title`` that names no brand and no product type)."""
    from stageflow.video.analysis.ppl import PplPatterns, caption_disclosures

    groups: list[list[Any]] = []
    for x in sorted(texts, key=lambda x: x.first_t):
        text = " ".join(x.text.split())
        if not text or is_junk(text) or is_call_to_action(text) or is_sentence(text, brands.words):
            continue
        if caption_disclosures([text], PplPatterns.load()) or _disclosure(text):
            continue
        for g in groups:
            if names_agree(g[0].text, text, 0.85):
                g.append(x)
                break
        else:
            groups.append([x])
    out = []
    for g in groups:
        if all(w in STOP_NOUNS or w in _EN_STOP for w in normalize(g[0].text).split()):
            continue  # a title card ("주말 브이로그"), not a product
        if _title_card(g[0].text, title, brands):
            continue  # the video's title on screen ("Sunday reset" of "Sunday reset vlog")
        best = max(
            g,
            key=lambda x: (
                sum(y.frames for y in g if " ".join(y.text.split()) == " ".join(x.text.split())),
                x.confidence,
            ),
        )
        text = " ".join(best.text.split())
        st = strength(text, brands)
        if brands.is_only_brand(text):
            continue
        frames = sum(x.frames for x in g)
        name_like = len(normalize(text).split()) >= 2 or bool(re.search(r"\d", text))
        if brands.find(text) or product_type(text) or (frames >= min_frames and name_like):
            out.append(Mention(text, "ocr", g[0].first_t, st + min(2.0, 0.5 * frames), frames))
    return out


def _title_card(text: str, title: str, brands: Brands) -> bool:
    compact, in_title = "".join(normalize(text).split()), "".join(normalize(title).split())
    if not compact or not in_title or compact not in in_title:
        return False
    return not (brands.find(text) or product_type(text))


def _disclosure(text: str) -> bool:
    compact = "".join(normalize(text).split())
    return any(
        w in compact for w in ("유료광고", "광고포함", "협찬", "paidpromotion", "sponsored", "includespaid")
    )


def correct_with_speech(caption: str, spoken: str) -> str:
    """The caption with each token replaced by the spoken token it agrees with at jamo level (OCR
    misread one syllable; the transcript has the word right); tokens only on screen stay."""
    spoken_toks = normalize(spoken).split()
    out = []
    for tok in caption.split():
        nt = normalize(tok)
        best = max(
            ((jamo_similarity(nt, s), s) for s in spoken_toks if len(s) == len(nt) and not s.isascii()),
            default=(0.0, ""),
        )
        out.append(best[1] if 0.75 <= best[0] < 1.0 and not nt.isascii() else tok)
    return " ".join(out)


def choose_name(speech: Sequence[Mention], captions: Sequence[Mention]) -> tuple[str | None, str, float]:
    """The product name of a range: ``(name, source, agreement)``. A spoken mention and a caption
    that agree are fused (the caption's fuller text, corrected by the speech); otherwise the strongest
    of either; agreement is 1.0 fused, 0.5 single source, 0 none."""
    pairs = [(s, c) for s in speech for c in captions if names_agree(s.text, c.text)]
    if pairs:
        s, c = max(pairs, key=lambda p: (p[0].strength + p[1].strength, len(p[1].text)))
        base = c.text if len(normalize(c.text)) >= len(normalize(s.text)) else s.text
        return correct_with_speech(base, s.text), "fused", 1.0
    pool = [*speech, *captions]
    if not pool:
        return None, "", 0.0
    best = max(pool, key=lambda m: (m.strength, m.source == "speech", len(m.text)))
    return best.text, best.source, 0.5


def brand_for(name: str, source_texts: Sequence[tuple[float, str]], t: float, brands: Brands) -> str | None:
    """The brand of ``name``: one in the name itself; else the brand right before the name in the same
    text ("롬앤의 쥬시 래스팅 틴트"); else the brand mentioned nearest in time to ``t`` among
    ``source_texts`` ``(time, text)`` of the range. Never by list order."""
    if hit := brands.first(name):
        return hit
    key = "".join(normalize(name).split())
    for _, text in source_texts:
        compact_toks = normalize(text).split()
        joined = "".join(compact_toks)
        pos = joined.find(key) if key else -1
        if pos > 0:
            before = brands.find(text)
            # brand tokens ending right before the name
            acc = 0
            for i, tok in enumerate(compact_toks):
                if acc >= pos:
                    break
                acc += len(tok)
                if acc >= pos - 2 and any(h[0] == i for h in before):
                    return next(h[1] for h in before if h[0] == i)
    nearest: tuple[float, str] | None = None
    for when, text in source_texts:
        for _, canonical in brands.find(text):
            d = abs(when - t)
            if nearest is None or d < nearest[0]:
                nearest = (d, canonical)
    return nearest[1] if nearest else None
