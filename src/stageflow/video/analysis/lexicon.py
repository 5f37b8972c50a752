"""The Korean + English cue lexicon of the ``rules`` analyzer and of scoring: words that signal
endorsement, usage, ownership, demonstration, effect, experience, sentiment and emphasis, plus
YOLO label -> category hints.

Data only. Matching is by normalised substring, so Korean stems match their inflected forms.
"""

from __future__ import annotations

import re

from stageflow.video.analysis.brands import BRANDS as BRANDS  # re-exported: the list lives in brands.py
from stageflow.video.analysis.similarity import normalize

CUES: dict[str, tuple[str, ...]] = {
    # pass a: an item is shown, described, used, owned or recommended
    "recommend": (
        "추천",
        "강추",
        "꼭 써",
        "꼭 사",
        "꼭 쟁여",
        "인생템",
        "최애",
        "재구매",
        "쟁여",
        "믿고 쓰",
        "recommend",
        "must have",
        "must-have",
        "favorite",
        "favourite",
        "holy grail",
        "you need",
        "repurchase",
        "obsessed with",
    ),
    "usage": (
        "쓰고 있",
        "사용하",
        "사용 중",
        "쓰는",
        "발라",
        "바르",
        "입고",
        "신고",
        "매일 써",
        "매일 쓰",
        "매일 사용",
        "매일 바르",
        "매일 아침",
        "매일 밤",
        "매일 저녁",
        "데일리로",
        "닦아내",
        "every morning",
        "every night",
        "wear them",
        "wear it",
        "i wear",
        "using",
        "i use",
        "use it",
        "wearing",
        "apply",
        "every day",
        "every single day",
        "daily",
    ),
    "possession": (
        "제 거",
        "제가 산",
        "샀",
        "구매했",
        "구입",
        "내돈내산",
        "가지고 있",
        "갖고 있",
        "bought",
        "i own",
        "my new",
        "i got",
        "purchased",
        "owned",
    ),
    "demonstration": (
        "보여드릴",
        "보여 드릴",
        "보여드려",
        "보시면",
        "보이시죠",
        "발라보",
        "발라 보",
        "써보",
        "열어보",
        "언박싱",
        "let me show",
        "show you",
        "unboxing",
        "look at this",
        "swatch",
    ),
    "effect": (
        "효과",
        "촉촉",
        "보송",
        "달라졌",
        "좋아졌",
        "지속력",
        "발색",
        "흡수",
        "순해",
        "순하",
        "보습",
        "편해",
        "조용",
        "가벼워",
        "부드러",
        "가라앉",
        "커버력",
        "무너지지",
        "오래가",
        "산뜻",
        "개운",
        "works",
        "results",
        "lasts",
        "quiet",
        "soft",
        "smooth",
        "noise cancelling",
        "long-lasting",
        "long lasting",
        "hydrat",
        "glow",
        "comfortable",
        "battery",
    ),
    "experience": (
        "써봤",
        "써 봤",
        "사용해봤",
        "경험",
        "한 달",
        "몇 년",
        "몇 달",
        "tried",
        "for years",
        "for months",
        "experience",
    ),
    # sentiment (scoring S)
    "positive": (
        "좋아",
        "좋은",
        "좋다",
        "좋고",
        "최고",
        "예뻐",
        "예쁘",
        "만족",
        "대박",
        "훌륭",
        "마음에 들",
        "great",
        "love",
        "amazing",
        "perfect",
        "best",
        "beautiful",
        "awesome",
    ),
    "negative": (
        "별로",
        "싫",
        "실망",
        "아쉽",
        "최악",
        "안 좋",
        "비추",
        "bad",
        "worst",
        "disappoint",
        "hate",
        "not good",
        "broke",
    ),
    "emphasis": (
        "정말",
        "진짜",
        "너무",
        "완전",
        "엄청",
        "really",
        "so ",
        "very",
        "super",
        "totally",
        "highly",
        "absolutely",
    ),
    "emotion": (
        "ㅠㅠ",
        "ㅋㅋ",
        "사랑",
        "행복",
        "감동",
        "설레",
        "반했",
        "대박",
        "미쳤",
        "😍",
        "❤",
        "love it",
        "obsessed",
        "happy",
        "in love",
        "인생템",
        "최애",
        "love them",
        "love this",
    ),
}

#: Cues that weigh double in scoring (a strong, personal endorsement in one phrase).
STRONG_CUES = frozenset(
    {"강추", "인생템", "최애", "재구매", "매일 써", "매일 쓰", "매일 사용", "매일 바르", "매일 아침",
     "매일 밤", "매일 저녁", "내돈내산", "holy grail", "every day", "every single day", "obsessed with",
     "must have", "must-have", "repurchase"}
)  # fmt: skip

#: Calls to action and channel boilerplate: never a product, never scored ("구독 좋아요" is not praise).
CALL_TO_ACTION = (
    "구독",
    "좋아요 눌러",
    "좋아요와 구독",
    "알림 설정",
    "알림설정",
    "댓글 남겨",
    "구매 링크",
    "구매링크",
    "링크는",
    "설명란",
    "더보기란",
    "고정 댓글",
    "고정댓글",
    "subscribe",
    "like and subscribe",
    "hit the bell",
    "link in",
    "link below",
    "description box",
    "in the description",
    "comment below",
)

#: Hedging: halves praise ("나쁘지 않아요" is not a recommendation).
HEDGES = (
    "나쁘지 않",
    "그냥 그래",
    "그럭저럭",
    "무난",
    "글쎄",
    "잘 모르겠",
    "애매",
    "not sure",
    "it's okay",
    "its okay",
    "kind of",
    "i guess",
    "so-so",
)

#: Negators after a Korean cue ("추천 안 해요", "좋지 않아요") or before it ("안 좋아요", "not great").
_NEG_AFTER = re.compile(r"^\s?(?:하지\s?|지\s?|는\s?|은\s?)?(?:안|않|못|없|아니|마)")
_NEG_BEFORE = re.compile(
    r"(?:(?:^|\s)(?:안|못|별로)|\b(?:not|never|no|(?:don|wouldn|can|didn|doesn|isn)\s?t))\s?$"
)

#: "can't / cannot / couldn't <cue> ... enough": an intensifier, not a negation.
_CANNOT_ENOUGH = re.compile(r"\b(?:can\s?t|cannot|couldn\s?t|could not|can not)\s?$")
_ENOUGH = re.compile(r"^(?:\s\w+){0,3}\senough\b")

#: Cue kinds that make a transcript segment a candidate range (pass a). A bare brand name is not one.
RANGE_CUES = ("recommend", "usage", "possession", "demonstration", "experience")
#: Cue kinds that extend a range (the speaker goes on describing the item) but never start one.
EXTEND_CUES = ("effect", "positive", "negative", "emotion")

#: Conviction: how a calm, sincere speaker shows that a recommendation is meant, without "!" or
#: emotion words (which speech-to-text rarely writes anyway): repurchase ("재구매", "bought it again"),
#: long use ("2년째", "for over a year"), loyalty and comparison ("정착", "계속 쓰게 돼요", "switched
#: to", "ever owned") and a firm verdict ("인생템", "후회 안 하실", "can't recommend it enough",
#: "honestly", "hands down"). Regular expressions over normalised text (similarity.normalize: lower
#: case, punctuation dropped, so "can't" reads "can t"); a match that is negated ("재구매 안 해요",
#: "wouldn't buy it again") does not count. Scoring reads them as sentiment and endorsement, gated
#: by polarity and hedging (scoring.conviction_of).
CONVICTION: dict[str, tuple[str, ...]] = {
    "repurchase": (
        r"재구매",
        r"(?:또|다시)\s?(?:샀|사게|살\s?거|구매)",
        r"(?:\d+|두|세|네|다섯|여러)\s?(?:번째|통째|병째|개째)",
        r"(?:\d+|두|세|네|다섯|여러)\s?번\s?(?:넘게\s?)?(?:샀|구매)",
        r"떨어지면\s?(?:바로|또|다시)",
        r"쟁여",
        r"\brepurchas",
        r"\bbought (?:it |them |another one |another )?again\b",
        r"\bbuy (?:it |them |the same one |the same |another one |one )?again\b",
        r"\bon my (?:second|third|fourth|fifth|\d+(?:st|nd|rd|th)) (?:one|bottle|tube|pair|jar|pack)\b",
    ),
    "duration": (
        r"(?:\d+|일|이|삼|십|몇|한|두|세|네|다섯|여러)\s?(?:년|개월|달)\s?(?:째|동안|넘게|가까이|정도\s?됐|이상)",
        r"쓴\s?지\s?(?:벌써|꽤|오래|\d+|일|이|삼|십|몇|한|두|세)",
        r"오래\s?(?:썼|쓰고|써\s?왔|사용)",
        r"\bfor (?:about |over |almost |nearly |more than |the past |the last )?"
        r"(?:a|one|two|three|four|five|six|several|a few|a couple of|\d+) (?:year|month)s?\b",
        r"\b(?:years|months) now\b",
        r"\b(?:a|one|two|three|four|five|six|seven|eight|nine|ten|several|a few|a couple of|\d+)"
        r" (?:year|month)s? (?:ago|later|in)\b",
    ),
    "loyalty": (
        r"정착",
        r"계속\s?(?:쓰|손이|사용|찾게)",
        r"손이\s?(?:가|자주)",
        r"(?:다시|결국)\s?(?:이걸로|이거로|돌아오|돌아와|찾게)",
        r"돌아오게",
        r"(?:이것|이거)만\s?(?:써|쓰|사용)",
        r"못\s?끊",
        r"없으면\s?안\s?돼",
        r"갈아탔",
        r"꼭\s?(?:바르|쓰는|챙기|꺼내|뿌리)",
        r"바꿔\s?(?:봐도|봤는데도|봤지만)",
        r"\bkeep (?:coming back|using|reaching|going back)\b",
        r"\breach for\b",
        r"\b(?:haven t|never) looked back\b",
        r"\bswitched (?:to|from|over)\b",
        r"\bcan t live without\b",
        r"\bmy go to\b",
        r"\bstill (?:the best|my favou?rite|going strong|use|using|love)\b",
        r"\bever (?:owned|used|bought|tried|had)\b",
    ),
    "verdict": (
        r"인생템",
        r"강력\s?추천",
        r"자신\s?있게\s?추천",
        r"후회\s?(?:안|없|하지\s?않)",
        r"믿고\s?(?:쓰|사)",
        r"실패\s?없",
        r"\bcan t recommend (?:it |them |this |these )?enough\b",
        r"\bhands down\b",
        r"\bhonestly\b",
        r"\bgame changer\b",
        r"\bworth every (?:penny|cent|won)\b",
        r"\bwon t regret\b",
        r"\bno regrets\b",
    ),
}
#: Repurchase and long use weigh double (the strongest report a calm speaker gives), like STRONG_CUES.
CONVICTION_WEIGHT = {"repurchase": 2.0, "duration": 2.0, "loyalty": 1.0, "verdict": 1.0}
_CONVICTION_RE = {k: tuple(re.compile(p) for p in v) for k, v in CONVICTION.items()}


def conviction_hits(text: str) -> dict[str, int]:
    """Per conviction kind, the number of its patterns found in ``text`` and not negated."""
    norm = " " + normalize(text) + " "
    out: dict[str, int] = {}
    for kind, pats in _CONVICTION_RE.items():
        n = 0
        for pat in pats:
            spans = [m for m in pat.finditer(norm)]
            if spans and not all(_negated_span(norm, m.start(), m.end()) for m in spans):
                n += 1
        out[kind] = n
    return out


def _negated_span(norm: str, start: int, end: int) -> bool:
    after = norm[end : end + 8]
    before = norm[max(0, start - 12) : start]
    return bool(_NEG_AFTER.search(after) or _NEG_BEFORE.search(before))


#: YOLO (COCO) labels -> a category path hint (1-2 levels).
LABEL_CATEGORIES: dict[str, tuple[str, ...]] = {
    "bottle": ("뷰티", "스킨케어"),
    "cup": ("주방용품", "컵"),
    "cell phone": ("디지털", "휴대폰"),
    "laptop": ("디지털", "노트북"),
    "keyboard": ("디지털", "키보드"),
    "mouse": ("디지털", "마우스"),
    "tv": ("디지털", "TV"),
    "handbag": ("패션잡화", "가방"),
    "backpack": ("패션잡화", "백팩"),
    "suitcase": ("패션잡화", "여행가방"),
    "tie": ("패션잡화", "넥타이"),
    "umbrella": ("패션잡화", "우산"),
    "book": ("도서",),
    "clock": ("리빙", "시계"),
    "hair drier": ("가전", "헤어드라이어"),
    "toothbrush": ("생활용품", "칫솔"),
    "chair": ("가구", "의자"),
    "couch": ("가구", "소파"),
    "bowl": ("주방용품", "그릇"),
    "wine glass": ("주방용품", "와인잔"),
}


def _positions(norm: str, cue: str) -> list[int]:
    out, i = [], norm.find(cue)
    while i >= 0:
        out.append(i)
        i = norm.find(cue, i + 1)
    return out


def strip_calls_to_action(text: str) -> str:
    """``text`` with the clauses that hold a call to action removed (what scoring reads)."""
    parts = re.split(r"(?<=[.!?。！？~])\s+|\n", text)
    low = [p for p in parts if not any(c in p.lower() for c in CALL_TO_ACTION)]
    return " ".join(low)


def is_call_to_action(text: str) -> bool:
    low = " ".join(text.lower().split())
    return any(c in low for c in CALL_TO_ACTION)


def negated(norm: str, pos: int, cue: str) -> bool:
    """Whether the cue at ``pos`` of normalised text is negated (Korean after, English before)."""
    after = norm[pos + len(cue) : pos + len(cue) + 8]
    before = norm[max(0, pos - 12) : pos]
    if _CANNOT_ENOUGH.search(before) and _ENOUGH.match(norm[pos + len(cue) : pos + len(cue) + 24]):
        return False  # "I can't recommend it enough" is praise, not a negation
    return bool(_NEG_AFTER.search(after) or _NEG_BEFORE.search(before))


def cue_hits(text: str, kind: str, *, negation: bool = False) -> int:
    """Number of ``kind`` cues found in ``text`` (each cue counted once). With ``negation``, a cue
    whose every occurrence is negated ("추천 안 해요", "not great") does not count."""
    return len(_found(text, kind, negation=negation))


def _found(text: str, kind: str, *, negation: bool) -> list[str]:
    norm = " " + normalize(text) + " "
    raw = text.lower()
    out = []
    for cue in CUES[kind]:
        n = normalize(cue)
        if not n:
            continue
        if n in norm or cue in raw:
            if negation and n in norm and all(negated(norm, p, n) for p in _positions(norm, n)):
                continue
            out.append(cue)
    return out


def negated_hits(text: str, kind: str) -> int:
    """``kind`` cues that occur only negated ("추천 안 해요" -> 1 for recommend)."""
    norm = " " + normalize(text) + " "
    return sum(
        1
        for cue in CUES[kind]
        if (n := normalize(cue)) and n in norm and all(negated(norm, p, n) for p in _positions(norm, n))
    )


def cue_weight(text: str, kind: str) -> float:
    """Weighted, negation-aware cue count: strong cues (STRONG_CUES) count 2, others 1."""
    return float(sum(2 if c in STRONG_CUES else 1 for c in _found(text, kind, negation=True)))


def hedged(text: str) -> bool:
    low = " ".join(text.lower().split())
    return any(h in low for h in HEDGES)
