import pytest

from core.rag.highlight import match_spans


@pytest.mark.parametrize("text, query, marked", [
    ("A deposit of 100 euros is taken.", "How much is the deposit?", ["deposit"]),
    ("Tôi muốn bán xe. Bạn khỏe không?", "bán", ["bán"]),            # diacritics keep words apart
    ("Tôi muốn bán xe. Bạn khỏe không?", "ban", []),
    ("Frames: ten-year WARRANTY.", "warranty frames", ["Frames", "WARRANTY"]),
    ("Giờ mở cửa của cửa hàng", "cửa hàng là gì", ["cửa", "cửa", "hàng"]),
])
def test_match_spans(text, query, marked):
    assert [text[a:b] for a, b in match_spans(text, query)] == marked
