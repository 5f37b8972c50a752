"""The built-in brand list of the ``rules`` analyzer and of commerce matching (data, kept apart from
the cue lexicon so each stays readable)."""

from __future__ import annotations

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
    "앤커": ("앤커", "anker"),
    "스탠리": ("스탠리", "stanley"),
    "키크론": ("키크론", "keychron"),
    "닌자": ("닌자", "ninja"),
    "필립스": ("필립스", "philips"),
    "바이오더마": ("바이오더마", "bioderma"),
    "마몽드": ("마몽드", "mamonde"),
    "에스티로더": ("에스티로더", "estee lauder", "estée lauder"),
    "구글": ("구글", "google", "pixel", "픽셀"),
}
