from studio.ui.text import where_from


def test_where_a_passage_comes_from_names_a_decks_slide_and_a_documents_page():
    assert where_from("review.PPTX", 3, "Quarterly review > Prices") == "review.PPTX · slide 3 · Quarterly review > Prices"
    assert where_from("manual.pdf", 8, "Brakes") == "manual.pdf · page 8 · Brakes"
    assert where_from("faq.docx", None, "Returns") == "faq.docx · Returns"
    assert where_from("notes.md", 0, "") == "notes.md"
