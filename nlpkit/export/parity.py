"""What every exporter's parity gate shares: the edge-case texts, tolerances and report trimming."""

from __future__ import annotations

SCORE_TOLERANCE = 1e-4
MIXED_BATCH = 64
MAX_REPORTED = 5

EDGE_CASES = [
    "",
    " ",
    " \t\n  \r\n ",
    "!!!",
    "?!.,;:'\"()[]{}",
    "...---...",
    "Ünïcode İstanbul ÉCOLE straße",
    "İİ iİi DİYARBAKIR",
    "中文分词测试，日本語のテキスト。한국어 문장",
    "emoji 😀👍🏽 family 👨\u200d👩\u200d👧 flag 🇫🇷!",
    "tabs\tand\nnewlines\r\nand\u000bvertical\u000cfeed",
    "digits 12345 3.14 1,000,000 ٣٤٥ ½ ²",
    "no\u00a0break\u3000ideographic\u2009thin space",
    "decomposed e\u0301 vs precomposed é",
    "ΣΊΣΥΦΟΣ final sigma ς Σ",
    "<pad> <unk> a<pad>b <PAD>",
    "Unicode 16: \u1c89 \ua7cb \U00010d50",
    "x" * 300,
    "wake me up at 7 am",
]


def first_few(items: list[dict]) -> list[dict]:
    """The first mismatches, for the report (all of them are counted)."""
    return items[:MAX_REPORTED]
