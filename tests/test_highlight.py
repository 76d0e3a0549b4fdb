import re

import pytest

from core.rag.highlight import highlight_html, match_spans


@pytest.mark.parametrize("text, query, marked", [
    ("A deposit of 100 euros is taken.", "How much is the deposit?", ["deposit"]),
    ("Tôi muốn bán xe. Bạn khỏe không?", "bán", ["bán"]),            # diacritics keep words apart
    ("Tôi muốn bán xe. Bạn khỏe không?", "ban", []),
    ("Frames: ten-year WARRANTY.", "warranty frames", ["Frames", "WARRANTY"]),
    ("Giờ mở cửa của cửa hàng", "cửa hàng là gì", ["cửa", "cửa", "hàng"]),
])
def test_match_spans(text, query, marked):
    assert [text[a:b] for a, b in match_spans(text, query)] == marked


@pytest.mark.parametrize("text", [
    "See [the httpx docs](https://www.python-httpx.org/) for httpx.",
    "Install with `pip install httpx` first.",
    "Example:\n\n    import httpx\n    httpx.get(url)\n",
    "Visit https://httpx.example/httpx now",
    "<script>alert('httpx')</script> *httpx* (httpx)",
])
def test_highlighted_passages_show_the_document_as_written_with_no_markup_leaking(text):
    import html

    shown = highlight_html(text, "httpx")
    assert ":orange-background" not in shown and "<script>" not in shown
    assert shown.count("<mark") == text.count("httpx")
    plain = html.unescape(re.sub(r"<[^>]+>", "", shown.replace("<br>", " ")))
    assert plain.split() == text.split()  # every word as written, in order; only the line breaks are reflowed


def test_a_hard_wrapped_paragraph_reads_as_one_and_paragraphs_and_lists_stay_apart():
    text = "A deposit of 100 euros is taken. It can be\npaid in cash.\n\nSecond paragraph:\n- one\n- two"
    shown = highlight_html(text, "deposit")
    assert "It can be paid in cash." in shown
    assert "paid in cash.<br><br>Second paragraph:<br>- one<br>- two" in shown
