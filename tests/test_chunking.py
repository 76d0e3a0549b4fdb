"""Chunking of parsed sections: sizes, overlap, heading and page boundaries, table rows, fixed windows, config.

Most tests count tokens as whitespace-separated words (deterministic, no model); one group uses the real
MiniLM word-piece tokenizer of the embedder."""

from __future__ import annotations

import unicodedata

import pytest

from core.errors import StudioError
from core.i18n import Msg
from core.rag.chunking import (STRATEGIES, TRUNCATION_MARK, Chunk, ChunkingConfig, chunk_sections,
                               embedder_token_counter, embedder_tokenizer)
from core.rag.parse import Section


def words(text: str) -> list[str]:
    return text.split()


def count_words(text: str) -> int:
    return len(text.split())


def sentences(tag: str, n: int) -> str:
    """n short sentences whose words all carry the tag, so every word says which section it came from."""
    return " ".join(f"{tag}w{i}a {tag}w{i}b {tag}w{i}c {tag}w{i}d {tag}w{i}e {tag}w{i}f." for i in range(n))


def paragraphs(tag: str, n: int, per: int = 5) -> str:
    return "\n\n".join(sentences(f"{tag}p{i}", per) for i in range(n))


VIETNAMESE = ("Thủ đô của Việt Nam là Hà Nội. Phở bò Hà Nội nổi tiếng khắp nơi. Tôi muốn bán chiếc xe máy này "
              "trước cuối tháng. Bạn có khỏe không? Lâu rồi không gặp bạn. Công ty chúng tôi giao hàng trong hai "
              "ngày làm việc; hoàn tiền trong vòng năm ngày. Đường phố đông đúc, người dân đi xe máy. ")

DOCUMENT = [
    Section("Short intro under the title.", 1, ("Guide",)),
    Section(paragraphs("A", 6), 1, ("Guide", "Install")),
    Section(paragraphs("B", 4), 2, ("Guide", "Install")),            # same headings, next page
    Section(sentences("C", 40), 2, ("Guide", "Usage")),              # one long paragraph
    Section("| Product | Price |", 2, ("Guide", "Usage"), is_table_row=True),
    Section("| Phở bò | 50.000 ₫ |", 2, ("Guide", "Usage"), is_table_row=True),
    Section(sentences("D", 3), 2, ("Guide", "Usage")),
    Section("   \n\t ", 3, ("Guide", "Empty")),
    Section(VIETNAMESE * 8, 3, ("Hướng dẫn", "Tiếng Việt")),
    Section(sentences("E", 30), None, ()),
]
CONFIGS = [ChunkingConfig(strategy, size, overlap) for strategy in STRATEGIES
           for size, overlap in [(16, 0), (16, 8), (40, 0), (40, 10), (200, 30), (64, 32)]]


def _id(config: ChunkingConfig) -> str:
    return f"{config.strategy}-{config.chunk_tokens}-{config.overlap_tokens}"


def _tag(word: str) -> str:
    return word.split("w")[0]


def _overlap_words(previous: str, following: str) -> int:
    """How many words at the start of `following` repeat the end of `previous`."""
    a, b = words(previous), words(following)
    return max((k for k in range(1, min(len(a), len(b)) + 1) if a[-k:] == b[:k]), default=0)


# ---- sizes, boundaries, order -------------------------------------------------------------------------------------

@pytest.mark.parametrize("config", CONFIGS, ids=_id)
def test_every_chunk_fits_and_chunks_are_numbered_in_order(config):
    chunks = chunk_sections(DOCUMENT, config, count_words)
    assert chunks and all(isinstance(c, Chunk) for c in chunks)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert max(count_words(c.text) for c in chunks) <= config.chunk_tokens
    assert all(c.text == c.text.strip() and c.text for c in chunks)


@pytest.mark.parametrize("config", CONFIGS, ids=_id)
def test_no_chunk_crosses_a_heading_or_page_boundary(config):
    owner = {}  # tag of each section -> (page, heading path)
    for section in DOCUMENT:
        for word in words(section.text):
            if "w" in word and word[0] in "ABCDE":
                owner[_tag(word)[:1]] = (section.page, " > ".join(section.headings))
    for chunk in chunk_sections(DOCUMENT, config, count_words):
        tags = {_tag(w)[:1] for w in words(chunk.text) if "w" in w and w[0] in "ABCDE"}
        pages_and_headings = {owner[t] for t in tags}
        assert len(pages_and_headings) <= 1, chunk
        if tags == {"A"}:
            assert (chunk.page, chunk.heading) == (1, "Guide > Install")
        if tags == {"B"}:
            assert (chunk.page, chunk.heading) == (2, "Guide > Install")


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_heading_path_and_page_are_kept_and_nothing_is_prepended(strategy):
    chunks = chunk_sections(DOCUMENT, ChunkingConfig(strategy, 40, 10), count_words)
    assert chunks[0] == Chunk("Short intro under the title.", 1, "Guide", 0)
    assert {(c.page, c.heading) for c in chunks} == {
        (1, "Guide"), (1, "Guide > Install"), (2, "Guide > Install"), (2, "Guide > Usage"),
        (3, "Hướng dẫn > Tiếng Việt"), (None, "")}
    assert not any(c.text.startswith(("Guide", "Hướng dẫn")) for c in chunks[1:])


def test_without_overlap_the_recursive_chunks_are_the_section_cut_at_sentence_ends():
    text = sentences("S", 30)  # 30 sentences of 6 words
    chunks = chunk_sections([Section(text, 1, ("H",))], ChunkingConfig("recursive", 40, 0), count_words)
    assert len(chunks) > 1
    assert [w for c in chunks for w in words(c.text)] == words(text)  # all of it, once, in order
    assert all(c.text.endswith(".") for c in chunks)                 # cut after a full stop, never mid-sentence


@pytest.mark.parametrize("overlap", [0, 10])
def test_recursive_ends_a_chunk_where_a_paragraph_ends(overlap):
    text = paragraphs("P", 6, per=4)  # paragraphs of 24 words: two would fit in 50 tokens, each is a chunk
    chunks = chunk_sections([Section(text, 1, ("H",))], ChunkingConfig("recursive", 50, overlap), count_words)
    assert [c.text for c in chunks] == text.split("\n\n")  # no chunk repeats the end of the paragraph before


def test_recursive_packs_paragraphs_shorter_than_a_tenth_of_the_size():
    short = [f"Line {i} here." for i in range(20)]  # 3-word paragraphs, a tenth of 40 is 4
    text = "\n\n".join(short)
    chunks = chunk_sections([Section(text, 1, ("H",))], ChunkingConfig("recursive", 40, 10), count_words)
    assert [c.text for c in chunks] == ["\n\n".join(short[i:i + 2]) for i in range(0, 20, 2)]


def test_only_the_pieces_of_a_long_paragraph_overlap():
    long_paragraph, next_paragraph = sentences("L", 12), sentences("N", 3)  # 72 and 18 words
    text = long_paragraph + "\n\n" + next_paragraph
    chunks = chunk_sections([Section(text, 1, ("H",))], ChunkingConfig("recursive", 40, 10), count_words)
    assert chunks[-1].text == next_paragraph
    pieces = chunks[:-1]
    assert len(pieces) >= 2 and all(_tag(words(c.text)[0]) == "L" for c in pieces)
    assert all(0 < _overlap_words(a.text, b.text) <= 10 for a, b in zip(pieces, pieces[1:]))


@pytest.mark.parametrize("strategy, size, overlap", [
    ("recursive", 40, 10), ("recursive", 200, 30), ("recursive", 64, 32), ("recursive", 16, 8),
    ("fixed", 40, 10), ("fixed", 200, 30), ("fixed", 64, 32),
])
def test_consecutive_chunks_of_a_long_section_overlap(strategy, size, overlap):
    text = sentences("L", 150)  # 900 words
    chunks = chunk_sections([Section(text, 4, ("Long",))], ChunkingConfig(strategy, size, overlap), count_words)
    assert len(chunks) >= 4
    shared = [_overlap_words(a.text, b.text) for a, b in zip(chunks, chunks[1:])]
    assert all(0 < k <= overlap for k in shared), shared
    assert all(k >= overlap // 3 for k in shared), shared  # about the asked overlap, not one stray word
    covered = [w for c in chunks for w in words(c.text)]
    assert set(covered) == set(words(text)) and covered[0] == "Lw0a" and covered[-1] == "Lw149f."


def test_small_sections_under_one_heading_and_page_make_one_chunk():
    sections = [Section("First paragraph.", 1, ("H",)), Section("Second paragraph.", 1, ("H",)),
                Section("Other page.", 2, ("H",)), Section("Other heading.", 2, ("H", "Sub"))]
    chunks = chunk_sections(sections, ChunkingConfig(), count_words)
    assert [(c.text, c.page, c.heading) for c in chunks] == [
        ("First paragraph.\n\nSecond paragraph.", 1, "H"), ("Other page.", 2, "H"),
        ("Other heading.", 2, "H > Sub")]


@pytest.mark.parametrize("sections", [
    [], [Section("", 1, ("H",))], [Section("  \n\n\t ", 1, ("H",)), Section("\u00a0", None, ())],
    [Section(" ", 1, ("H",), is_table_row=True)],
])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_empty_sections_give_no_chunks(sections, strategy):
    assert chunk_sections(sections, ChunkingConfig(strategy), count_words) == []


@pytest.mark.parametrize("config", CONFIGS, ids=_id)
def test_chunking_is_deterministic(config):
    assert chunk_sections(DOCUMENT, config, count_words) == chunk_sections(list(DOCUMENT), config, count_words)


# ---- table rows ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("strategy", STRATEGIES)
def test_each_table_row_is_one_chunk(strategy):
    rows = [Section(f"| row {i} | {'cell ' * 3}|", 1, ("Prices",), is_table_row=True) for i in range(5)]
    sections = [Section("Before the table.", 1, ("Prices",)), *rows, Section("After the table.", 1, ("Prices",))]
    chunks = chunk_sections(sections, ChunkingConfig(strategy, 200, 30), count_words)
    assert [c.text for c in chunks] == ["Before the table.", *[r.text for r in rows], "After the table."]
    assert {c.heading for c in chunks} == {"Prices"}


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_long_table_row_is_cut_with_a_mark(strategy):
    row = "| " + " | ".join(f"cell{i}" for i in range(60)) + " |"   # 121 words
    chunks = chunk_sections([Section(row, 5, ("T",), is_table_row=True)], ChunkingConfig(strategy, 32, 8), count_words)
    assert len(chunks) == 1
    text = chunks[0].text
    assert text.endswith(" " + TRUNCATION_MARK) and count_words(text) == 32
    assert row.startswith(text[:-2])


def test_a_table_row_that_is_one_long_word_is_cut_inside_it():
    row = "x" * 500
    chunk, = chunk_sections([Section(row, 1, (), is_table_row=True)], ChunkingConfig(chunk_tokens=16, overlap_tokens=0),
                            lambda text: len(text) // 10 + 1)
    assert chunk.text.endswith(TRUNCATION_MARK) and len(chunk.text) // 10 + 1 <= 16


# ---- fixed windows ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n_words, size, overlap, expected", [
    (100, 30, 10, [30, 30, 30, 30, 20]),
    (100, 50, 0, [50, 50]),
    (101, 50, 0, [50, 50, 1]),
    (20, 50, 10, [20]),
    (64, 32, 16, [32, 32, 32]),
])
def test_fixed_windows_have_exactly_the_size(n_words, size, overlap, expected):
    text = " ".join(f"w{i}" for i in range(n_words))
    chunks = chunk_sections([Section(text, 1, ("H",))], ChunkingConfig("fixed", size, overlap), count_words)
    assert [count_words(c.text) for c in chunks] == expected
    starts = [int(words(c.text)[0][1:]) for c in chunks]
    assert starts == [i * (size - overlap) for i in range(len(chunks))]


def test_fixed_windows_shrink_when_words_are_more_than_one_token():
    text = " ".join(f"w{i}" for i in range(100))
    two_per_word = lambda t: 2 * count_words(t)  # noqa: E731
    chunks = chunk_sections([Section(text, 1, ())], ChunkingConfig("fixed", 40, 10), two_per_word)
    assert all(two_per_word(c.text) <= 40 for c in chunks)
    assert [count_words(c.text) for c in chunks[:-1]] == [20] * (len(chunks) - 1)


class CharTokenizer:
    """One token per character, with encode/decode only (no offsets)."""

    def encode(self, text):
        return [ord(ch) for ch in text]

    def decode(self, ids):
        return "".join(map(chr, ids))


def test_fixed_windows_over_the_ids_of_a_given_tokenizer():
    text = "abcdefghij" * 10
    chunks = chunk_sections([Section(text, 1, ())], ChunkingConfig("fixed", 30, 5), len, tokenizer=CharTokenizer())
    assert [len(c.text) for c in chunks] == [30, 30, 30, 25]
    assert [c.text for c in chunks] == [text[i:i + 30] for i in (0, 25, 50, 75)]


# ---- Vietnamese --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("form", ["NFC", "NFD"])
@pytest.mark.parametrize("config", CONFIGS, ids=_id)
def test_vietnamese_text_is_kept_exactly(config, form):
    text = unicodedata.normalize(form, VIETNAMESE * 6)
    chunks = chunk_sections([Section(text, 1, ("Việt",))], config, count_words)
    assert all(c.text in text for c in chunks)  # slices of the original: no folding, no normalisation
    assert set(w for c in chunks for w in words(c.text)) == set(words(text))
    if config.overlap_tokens == 0 and config.strategy == "recursive":
        assert " ".join(c.text for c in chunks) == text.strip()


# ---- config -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("changes", [
    {"strategy": "semantic"}, {"strategy": ""},
    {"chunk_tokens": 15}, {"chunk_tokens": 2049}, {"chunk_tokens": 0}, {"chunk_tokens": 200.0},
    {"chunk_tokens": True}, {"chunk_tokens": "200"},
    {"overlap_tokens": -1}, {"overlap_tokens": 101}, {"chunk_tokens": 16, "overlap_tokens": 9},
    {"overlap_tokens": 1.5},
])
def test_invalid_config_is_refused_with_a_message(changes):
    with pytest.raises(StudioError) as error:
        ChunkingConfig(**changes)
    assert isinstance(error.value.args[0], Msg)


@pytest.mark.parametrize("changes", [{}, {"chunk_tokens": 16, "overlap_tokens": 8}, {"chunk_tokens": 2048},
                                     {"strategy": "fixed", "overlap_tokens": 0}, {"overlap_tokens": 100}])
def test_valid_configs(changes):
    assert ChunkingConfig(**changes)


def test_config_round_trip_and_defaults():
    config = ChunkingConfig("fixed", 128, 16)
    assert config.to_dict() == {"strategy": "fixed", "chunk_tokens": 128, "overlap_tokens": 16}
    assert ChunkingConfig.from_dict(config.to_dict()) == config
    assert ChunkingConfig.from_dict(None) == ChunkingConfig.from_dict({}) == ChunkingConfig("recursive", 200, 30)
    assert ChunkingConfig.from_dict({"chunk_tokens": 100, "unknown": 1}) == ChunkingConfig(chunk_tokens=100)
    with pytest.raises(StudioError):
        ChunkingConfig.from_dict({"overlap_tokens": 500})


# ---- the embedder's tokenizer -------------------------------------------------------------------------------------

def test_with_the_minilm_tokenizer_sizes_match_what_the_embedder_reads():
    count = embedder_token_counter()
    assert count("") == 0 and count("Hello world") == 2
    assert count("Thủ đô") == 4  # th ##u đ ##o: accents are folded by the tokenizer, never in the text
    document = [Section(VIETNAMESE * 10, 1, ("Việt",)), Section(sentences("M", 80), 2, ("English",)),
                Section("| Phở | " + "50.000 ₫ | " * 100, 2, ("English",), is_table_row=True)]
    tokenizer = embedder_tokenizer()
    for config in (ChunkingConfig(), ChunkingConfig("fixed")):
        chunks = chunk_sections(document, config, count, tokenizer=tokenizer)
        sizes = [count(c.text) for c in chunks]
        # a fixed window is exactly 200 ids; its text, tokenized again, may differ by a piece where it cut a word
        assert max(sizes) <= (200 if config.strategy == "recursive" else 202) and len(chunks) > 5
        assert all(c.text in document[0].text + document[1].text or c.text.endswith(TRUNCATION_MARK)
                   for c in chunks)
        assert chunks[-1].text.endswith(TRUNCATION_MARK)
        if config.strategy == "fixed":  # windows of exactly 200 word pieces, the last of a section shorter
            by_section = [[count(c.text) for c in chunks if c.page == page and c.text in document[page - 1].text]
                          for page in (1, 2)]
            assert all(abs(s - 200) <= 2 for sizes in by_section for s in sizes[:-1])


def test_hard_wrapped_text_is_cut_at_sentence_ends_not_at_line_ends():
    import textwrap

    from core.rag.chunking import passage_sentences

    prose = ("The harbour was built in 1850 by the city council after a long debate about its cost and its use "
             "for trade. It served fishing boats and ferries for a century and was rebuilt twice after storms "
             "damaged the outer wall. Today it holds a museum about the history of the town, a small market and "
             "the offices of the coast guard, which moved there in 1998 from the old lighthouse on the hill.")
    wrapped = textwrap.fill(prose, 72)  # as a plain-text file or a Markdown source is often written
    assert wrapped.count("\n") >= 4
    expected = [" ".join(s.split()) for s in passage_sentences(prose)]
    assert len(expected) == 3
    assert [" ".join(s.split()) for s in passage_sentences(wrapped)] == expected
    chunks = chunk_sections([Section(wrapped + "\n\n" + wrapped, None, ())], ChunkingConfig("recursive", 45, 0),
                            count_words)
    runs = {" ".join(expected[i:j]) for i in range(3) for j in range(i + 1, 4)}
    assert len(chunks) > 2 and all(" ".join(c.text.split()) in runs for c in chunks)  # whole sentences only


def test_lines_of_a_list_stay_sentences_of_their_own_inside_wrapped_text():
    from core.rag.chunking import passage_sentences

    text = ("Members of the club can borrow equipment from the store at any time during opening\n"
            "- a tent for up to four people\n- two sleeping bags\n"
            "Contact the desk at least two days before you leave so the equipment is ready for\n"
            "you when you arrive")
    assert passage_sentences(text) == [
        "Members of the club can borrow equipment from the store at any time during opening",
        "- a tent for up to four people", "- two sleeping bags",
        "Contact the desk at least two days before you leave so the equipment is ready for\nyou when you arrive"]


def test_a_full_stop_after_an_abbreviation_or_initial_does_not_end_the_sentence():
    from core.rag.chunking import passage_sentences

    text = ("Dr. Martin Luther King Jr. spoke in St. Louis in 1963. The U.S. Army and John F. Kennedy, e.g. The "
            "speech, were named. In Runyon v. McCrary the court ruled. It ended.")
    assert passage_sentences(text) == ["Dr. Martin Luther King Jr. spoke in St. Louis in 1963.",
                                       "The U.S. Army and John F. Kennedy, e.g. The speech, were named.",
                                       "In Runyon v. McCrary the court ruled.", "It ended."]
    cited = "It covers South America.[1] The basin is large,[2][citation needed] and wet.[3][4] See a[1] here."
    assert passage_sentences(cited) == ["It covers South America.[1]", "The basin is large,[2][citation needed] and "
                                        "wet.[3][4]", "See a[1] here."]
