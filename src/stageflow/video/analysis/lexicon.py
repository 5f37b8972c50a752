"""The Korean + English cue lexicon of the ``rules`` analyzer and of scoring: words that signal
endorsement, usage, ownership, demonstration, effect, experience, sentiment and emphasis, plus
YOLO label -> category hints.

Data only. Matching is by normalised substring, so Korean stems match their inflected forms.
"""

from __future__ import annotations

from stageflow.video.analysis.similarity import normalize

CUES: dict[str, tuple[str, ...]] = {
    # pass a: an item is shown, described, used, owned or recommended
    "recommend": (
        "추천",
        "강추",
        "꼭 써",
        "꼭 사",
        "인생템",
        "최애",
        "재구매",
        "recommend",
        "must have",
        "must-have",
        "favorite",
        "favourite",
        "holy grail",
        "you need",
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
        "using",
        "i use",
        "use it",
        "wearing",
        "apply",
    ),
    "possession": (
        "제 거",
        "제가 산",
        "샀",
        "구매",
        "내돈내산",
        "가지고 있",
        "갖고 있",
        "bought",
        "i own",
        "my new",
        "i got",
        "purchased",
    ),
    "demonstration": (
        "보여드릴",
        "보여 드릴",
        "보시면",
        "보이시죠",
        "발라보",
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
        "works",
        "results",
        "long-lasting",
        "long lasting",
        "hydrat",
        "glow",
    ),
    "experience": (
        "써봤",
        "써 봤",
        "사용해봤",
        "경험",
        "한 달",
        "몇 년",
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
        "최고",
        "예뻐",
        "예쁘",
        "만족",
        "대박",
        "훌륭",
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
        "bad",
        "worst",
        "disappoint",
        "hate",
        "not good",
    ),
    "emphasis": ("정말", "진짜", "너무", "완전", "엄청", "really", "so ", "very", "super", "totally"),
    "emotion": ("ㅠㅠ", "ㅋㅋ", "사랑", "행복", "감동", "설레", "😍", "❤", "love it", "obsessed", "happy"),
}

#: Cue kinds that make a transcript segment a candidate range (pass a). A bare brand name is not one.
RANGE_CUES = ("recommend", "usage", "possession", "demonstration", "experience")

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


def cue_hits(text: str, kind: str) -> int:
    """Number of ``kind`` cues found in ``text`` (each cue counted once)."""
    norm = " " + normalize(text) + " "
    raw = text.lower()
    return sum(1 for cue in CUES[kind] if normalize(cue) and (normalize(cue) in norm or cue in raw))


#: Known brands: canonical name -> spellings seen in speech or on screen. Extend through the rules
#: analyzer's ``brands`` option. A brand is reported only when one of these is actually found.
BRANDS: dict[str, tuple[str, ...]] = {
    "라운드랩": ("라운드랩", "round lab", "roundlab"),
    "이니스프리": ("이니스프리", "innisfree"),
    "설화수": ("설화수", "sulwhasoo"),
    "라네즈": ("라네즈", "laneige"),
    "헤라": ("헤라", "hera"),
    "토리든": ("토리든", "torriden"),
    "닥터자르트": ("닥터자르트", "dr.jart", "dr jart"),
    "에스트라": ("에스트라", "aestura"),
    "메디힐": ("메디힐", "mediheal"),
    "클리오": ("클리오", "clio"),
    "롬앤": ("롬앤", "rom&nd", "romand"),
    "아누아": ("아누아", "anua"),
    "코스알엑스": ("코스알엑스", "cosrx"),
    "다이슨": ("다이슨", "dyson"),
    "애플": ("애플", "apple", "iphone", "아이폰", "airpods", "에어팟", "macbook", "맥북"),
    "삼성": ("삼성", "samsung", "galaxy", "갤럭시"),
    "LG": ("lg전자", "lg "),
    "소니": ("소니", "sony"),
    "나이키": ("나이키", "nike"),
    "아디다스": ("아디다스", "adidas"),
    "로지텍": ("로지텍", "logitech"),
    "무인양품": ("무인양품", "muji"),
}
