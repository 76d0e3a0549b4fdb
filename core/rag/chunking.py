"""Chunking: parsed document sections -> pieces small enough to embed and to quote in a prompt.

Two strategies:

* "recursive" (default) is structure-aware. Consecutive sections with the same heading path and page are
  joined (paragraphs separated by a blank line); a group that fits in `chunk_tokens` is one chunk, a longer
  one is cut into whole sentences (lines of a list and paragraphs end one too) packed into chunks. A chunk ends
  where a paragraph ends once it holds a tenth of `chunk_tokens` (short paragraphs are packed together), a
  paragraph too long for one chunk is cut at sentence ends, and only the pieces of such a paragraph share their
  last whole sentences, up to `overlap_tokens`: no chunk starts or ends inside a sentence, and none carries the
  end of the paragraph before it. Only a sentence longer than a chunk is cut inside it, by semchunk (clauses,
  then words).
* "fixed" cuts plain windows of exactly `chunk_tokens` tokens (the last one may be shorter), each starting
  `chunk_tokens - overlap_tokens` tokens after the previous one, over the same groups. With a `tokenizer`
  the windows are counted in its token ids; without one, in words (shortened when `count_tokens` says a
  window of words is too long).

In both, a chunk never crosses a heading-path or page boundary, so each chunk has one page and one heading;
a table row (`Section.is_table_row`) is one chunk of its own, never merged nor split (a row longer than
`chunk_tokens` is cut and ends with "…"); empty sections give nothing. Chunk text is always a slice of the
section text (only leading and trailing whitespace is dropped), so Vietnamese diacritics, Unicode
normalisation and spacing are kept exactly. The same input always gives the same chunks.

Sizes and the embedder: all-MiniLM-L6-v2 reads at most 256 word pieces, 2 of them its [CLS] and [SEP]
markers, and silently ignores the rest. `embedder_token_counter()` counts word pieces exactly as the embedder
splits them (markers not counted), so the default of 200 leaves room; a chunk of more than 254 word pieces is
still stored whole but only its beginning is embedded, so the end of it cannot be found by vector search.
"""

from __future__ import annotations

import functools
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable

from core.errors import StudioError
from core.i18n import Msg
from core.rag.parsers.common import CITATION_MARK

STRATEGIES = ("recursive", "fixed")
STRATEGY_HELP: dict[str, str] = {
    "recursive": Msg("Follows the document: a chunk stays inside one heading and page, and is cut at paragraph "
                     "and sentence ends."),
    "fixed": Msg("Windows of exactly the same number of tokens, cut anywhere (still inside one heading and page)."),
}
MIN_CHUNK_TOKENS = 16
MAX_CHUNK_TOKENS = 2048
EMBEDDER_MAX_TOKENS = 256      # all-MiniLM-L6-v2 reads at most this many word pieces, [CLS] and [SEP] included
TRUNCATION_MARK = "…"
HEADING_SEPARATOR = " > "
PARAGRAPH_MIN_FRACTION = 0.1   # a chunk this full ends at the next paragraph; smaller paragraphs are packed together

CountTokens = Callable[[str], int]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class ChunkingConfig:
    strategy: str = field(default="recursive", metadata={
        "help": "recursive: follow headings, paragraphs and sentences; fixed: equal windows of tokens."})
    chunk_tokens: int = field(default=200, metadata={
        "help": "Largest chunk, in tokens (16 to 2048). The embedder reads about 254 word pieces of a chunk; "
                "the rest of a longer chunk is not embedded."})
    overlap_tokens: int = field(default=30, metadata={
        "help": "Tokens shared by neighbouring chunks of the same section (0 to half the chunk size)."})

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise StudioError(Msg("Unknown chunking strategy '{strategy}'.", strategy=self.strategy))
        if not _is_int(self.chunk_tokens) or not MIN_CHUNK_TOKENS <= self.chunk_tokens <= MAX_CHUNK_TOKENS:
            raise StudioError(Msg("Chunk size must be a whole number of tokens between {low} and {high}.",
                                  low=MIN_CHUNK_TOKENS, high=MAX_CHUNK_TOKENS))
        if not _is_int(self.overlap_tokens) or not 0 <= self.overlap_tokens <= self.chunk_tokens // 2:
            raise StudioError(Msg("Chunk overlap must be a whole number of tokens between 0 and {high} (half the "
                                  "chunk size).", high=self.chunk_tokens // 2))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> "ChunkingConfig":
        data = data or {}
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass(frozen=True)
class Chunk:
    text: str
    page: int | None
    heading: str          # heading path joined with " > "
    index: int            # position in the document (0-based)


def chunk_sections(sections: list, config: ChunkingConfig, count_tokens: CountTokens,
                   tokenizer: Any = None) -> list[Chunk]:
    """The chunks of one document, in reading order.

    `sections` are `core.rag.parse.Section`s (anything with text, page, headings and is_table_row).
    `count_tokens(text) -> int` measures sizes; `tokenizer` (optional, used by the "fixed" strategy) is either
    a `tokenizers.Tokenizer` / Hugging Face fast tokenizer, whose character offsets give exact slices of the
    text, or any object with `encode(text) -> ids` and `decode(ids) -> text`.
    """
    count = functools.lru_cache(maxsize=8192)(count_tokens)  # semchunk asks for the same spans again and again
    pieces: list[tuple[str, int | None, str]] = []
    for text, page, heading, is_row in _groups(sections):
        if is_row:
            texts = [_truncate(text.strip(), config.chunk_tokens, count)]
        elif config.strategy == "fixed":
            texts = _fixed(text, config, count, tokenizer)
        else:
            texts = _recursive(text, config, count)
        pieces.extend((t, page, heading) for t in texts if t and not t.isspace())
    return [Chunk(text, page, heading, i) for i, (text, page, heading) in enumerate(pieces)]


def _groups(sections: Iterable) -> Iterable[tuple[str, int | None, str, bool]]:
    """(text, page, heading, is_table_row): runs of ordinary sections under the same heading path on the same
    page, joined with blank lines; each table row alone."""
    run: list[str] = []
    key: tuple | None = None
    for section in sections:
        text = section.text or ""
        if not text.strip():
            continue
        page, heading = section.page, HEADING_SEPARATOR.join(h for h in section.headings if h)
        if getattr(section, "is_table_row", False):
            if run:
                yield "\n\n".join(run), key[0], key[1], False
                run, key = [], None
            yield text, page, heading, True
            continue
        if run and key != (page, heading):
            yield "\n\n".join(run), key[0], key[1], False
            run = []
        run.append(text.strip())
        key = (page, heading)
    if run:
        yield "\n\n".join(run), key[0], key[1], False


# ---- recursive ------------------------------------------------------------------------------------------------

def _recursive(text: str, config: ChunkingConfig, count: CountTokens) -> list[str]:
    """Whole sentences packed into chunks of at most `chunk_tokens`. A chunk ends where a paragraph ends once it
    holds `PARAGRAPH_MIN_FRACTION` of the size: a passage that is one paragraph is about one thing, so it is found
    for it and read without a neighbour's topic (on the SQuAD dev set, against packing paragraphs up to half the
    size with sentences shared across them: hybrid hit@1 0.697 → 0.740, hit@5 0.887 → 0.920, bench/README.md).
    The pieces of a paragraph too long for one chunk share their last sentences, up to `overlap_tokens`, so no
    chunk starts or ends inside a sentence (a passage cut mid-sentence hides the fact it was cut from). Only a
    sentence longer than a chunk is cut inside, by semchunk (clauses, then words)."""
    text = text.strip()
    if count(text) <= config.chunk_tokens:
        return [text]
    units = _sentence_units(text, config, count)
    size = lambda first, last: count(text[units[first][0]:units[last][1]])  # noqa: E731
    enough = max(1, int(config.chunk_tokens * PARAGRAPH_MIN_FRACTION))
    chunks, first = [], 0
    while first < len(units):
        last = first
        while last + 1 < len(units) and size(first, last + 1) <= config.chunk_tokens:
            if units[last + 1][2] and size(first, last) >= enough:
                break  # a new paragraph starts a new chunk
            last += 1
        chunks.append(text[units[first][0]:units[last][1]])
        if last + 1 >= len(units):
            break
        following = last + 1
        if not units[following][2]:  # cut inside a paragraph: the next chunk repeats its last sentences
            while following - 1 > first and size(following - 1, last) <= config.overlap_tokens:
                following -= 1
        first = following
    return chunks


# a sentence ends at a full stop, after closing quotes and brackets and citation marks ("America.[1] This")
_SENTENCE_END = re.compile(r"[.!?…。！？](?:[\"'”’»)\]]|" + CITATION_MARK + r")*\s+")


def _sentence_units(text: str, config: ChunkingConfig, count: CountTokens) -> list[tuple[int, int, bool]]:
    """(start, end, starts a paragraph) of each sentence of the text, in order; lines of a list or table and
    paragraphs always end a sentence, a line wrapped inside a sentence does not. A sentence longer than a chunk
    comes in semchunk's pieces."""
    from core.rag.parsers.common import abbreviation_at, text_width

    units: list[tuple[int, int, bool]] = []
    width = text_width([text])
    for paragraph in re.finditer(r"\S(?:.*?\S)?(?=\s*\n\s*\n|\s*$)", text, re.DOTALL):
        paragraph_start = True
        for line_start, line_end in _unwrapped_lines(paragraph.group(), width):
            offset = paragraph.start() + line_start
            body = paragraph.group()[line_start:line_end]
            cuts = [0] + [m.end() for m in _SENTENCE_END.finditer(body)
                          if _starts_sentence(body, m.end()) and not abbreviation_at(body, m.start())]
            cuts.append(len(body))
            for begin, finish in zip(cuts, cuts[1:]):
                piece = body[begin:finish].strip()
                if not piece:
                    continue
                begin = offset + begin + (len(body[begin:finish]) - len(body[begin:finish].lstrip()))
                for sub_start, sub_end in _fit(text, begin, begin + len(piece), config, count):
                    units.append((sub_start, sub_end, paragraph_start))
                    paragraph_start = False
    return units


def _unwrapped_lines(paragraph: str, width: int) -> list[tuple[int, int]]:
    """(start, end) of each line of the paragraph, a wrapped line taken together with the line it wraps into
    (hard-wrapped text and Markdown: a line break inside a sentence does not end it)."""
    from core.rag.parsers.common import wraps_into

    joined: list[tuple[int, int]] = []
    previous = ""
    for line in re.finditer(r"[^\n]+", paragraph):
        if joined and wraps_into(previous, line.group(), width):
            joined[-1] = (joined[-1][0], line.end())
        else:
            joined.append(line.span())
        previous = line.group()
    return joined


def _starts_sentence(body: str, at: int) -> bool:
    """After a full stop, a new sentence starts with a capital letter, a digit or an opening quote ("e.g. the"
    and "approx. 3" do not split when a small letter follows)."""
    following = body[at:at + 1]
    return bool(following) and (following.isupper() or following.isdigit() or following in "\"'“‘«([")


def _fit(text: str, start: int, end: int, config: ChunkingConfig, count: CountTokens) -> list[tuple[int, int]]:
    """The span as it is when it fits in a chunk, else semchunk's pieces of it (as spans of `text`)."""
    if count(text[start:end]) <= config.chunk_tokens:
        return [(start, end)]
    import semchunk

    spans, cursor = [], start
    for piece in semchunk.chunk(text[start:end], config.chunk_tokens, count, memoize=False):
        found = text.find(piece, cursor, end)
        if found < 0:
            continue
        spans.append((found, found + len(piece)))
        cursor = found + len(piece)
    return spans or [(start, end)]


# ---- fixed ----------------------------------------------------------------------------------------------------

def _fixed(text: str, config: ChunkingConfig, count: CountTokens, tokenizer: Any) -> list[str]:
    size, stride = config.chunk_tokens, config.chunk_tokens - config.overlap_tokens
    if tokenizer is not None:
        spans, ids = _token_spans(tokenizer, text)
        if spans is not None:
            return [text[spans[start][0]:spans[min(start + size, len(spans)) - 1][1]].strip()
                    for start in _window_starts(len(spans), size, stride)]
        return [tokenizer.decode(ids[start:start + size]).strip() for start in _window_starts(len(ids), size, stride)]
    words = [m.span() for m in re.finditer(r"\S+", text)]
    windows, start = [], 0
    while start < len(words):
        end = min(start + size, len(words))
        piece = text[words[start][0]:words[end - 1][1]]
        if count(piece) > size:  # words are only an estimate of tokens: shorten the window until it fits
            low, high = start + 1, end - 1
            while low < high:
                middle = (low + high + 1) // 2
                if count(text[words[start][0]:words[middle - 1][1]]) <= size:
                    low = middle
                else:
                    high = middle - 1
            end = low
            piece = text[words[start][0]:words[end - 1][1]]
        windows.append(piece)
        if end >= len(words):
            break
        start = max(start + 1, end - config.overlap_tokens)
    return windows


def _window_starts(total: int, size: int, stride: int) -> list[int]:
    if total == 0:
        return []
    starts = [0]
    while starts[-1] + size < total:
        starts.append(starts[-1] + stride)
    return starts


def _token_spans(tokenizer: Any, text: str) -> tuple[list[tuple[int, int]] | None, list[int]]:
    """(character span of each token, token ids); spans are None when the tokenizer cannot give them."""
    if hasattr(tokenizer, "backend_tokenizer") and callable(tokenizer):  # Hugging Face fast tokenizer
        out = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, truncation=False, verbose=False)
        return [tuple(span) for span in out["offset_mapping"]], list(out["input_ids"])
    try:
        encoded = tokenizer.encode(text, add_special_tokens=False)
    except TypeError:
        encoded = tokenizer.encode(text)
    if hasattr(encoded, "offsets"):  # tokenizers.Encoding: leave out padding and special tokens
        keep = [i for i, special in enumerate(encoded.special_tokens_mask) if not special]
        return [encoded.offsets[i] for i in keep], [encoded.ids[i] for i in keep]
    return None, list(encoded)


# ---- table rows -------------------------------------------------------------------------------------------------

def _truncate(text: str, limit: int, count: CountTokens) -> str:
    """The text if it fits in `limit` tokens, else its longest beginning that fits with " …" after it."""
    if count(text) <= limit:
        return text

    def fits(end: int, mark: str) -> bool:
        return count(text[:end].rstrip() + mark) <= limit

    ends = [m.end() for m in re.finditer(r"\S+", text)]
    mark = " " + TRUNCATION_MARK
    if not ends or not fits(ends[0], mark):  # not even one word fits: cut inside it
        ends, mark = list(range(1, len(text) + 1)), TRUNCATION_MARK
        if not fits(ends[0], mark):
            return TRUNCATION_MARK
    low, high = 0, len(ends) - 1
    while low < high:
        middle = (low + high + 1) // 2
        if fits(ends[middle], mark):
            low = middle
        else:
            high = middle - 1
    return text[:ends[low]].rstrip() + mark


# ---- what is embedded ---------------------------------------------------------------------------------------------

def text_to_embed(text: str, heading: str, source: str) -> str:
    """A passage as the embedder reads it: under its heading path, or the document's name when it has none, so a
    passage that never names its subject ("It was founded in 1850") is still found by it. Only the vector sees
    this; the stored and quoted text stays the passage itself."""
    title = heading or re.sub(r"[_\-]+", " ", source.rsplit("/", 1)[-1].rsplit(".", 1)[0]).strip()
    return f"{title}\n{text}" if title and not text.startswith(title) else text


def passage_sentences(text: str) -> list[str]:
    """The sentences of a passage as the chunker cuts them (lines of a list or table and paragraphs end one too);
    one sentence, or none, for a passage that is a single sentence."""
    units = _sentence_units(text, ChunkingConfig(chunk_tokens=MAX_CHUNK_TOKENS), lambda piece: 0)
    return [text[start:end] for start, end, _ in units]


def sentences_to_embed(text: str, heading: str, source: str) -> list[str]:
    """What is embedded for each sentence of a passage, under the passage's title as in `text_to_embed`; empty
    for a passage of one sentence (its own vector is that sentence's). A passage is found by the best of its
    vector and its sentences' (core.rag.store): a short question matches the one sentence that answers it better
    than a whole paragraph (hybrid hit@1 0.74 -> 0.79 on public articles, bench/README.md)."""
    sentences = passage_sentences(text)
    return [text_to_embed(sentence, heading, source) for sentence in sentences] if len(sentences) > 1 else []


def passage_texts_to_embed(passages: list[tuple[str, str, str]]) -> tuple[list[str], list[int]]:
    """Everything embedded for these (text, heading, source) passages, in one list: each passage, then the
    sentences of each; and how many sentences each one has (for `split_passage_vectors`)."""
    sentences = [sentences_to_embed(text, heading, source) for text, heading, source in passages]
    return ([text_to_embed(text, heading, source) for text, heading, source in passages]
            + [sentence for found in sentences for sentence in found], [len(found) for found in sentences])


def split_passage_vectors(vectors, sentence_counts: list[int]) -> tuple[Any, list[list]]:
    """(the passages' own vectors, each passage's sentence vectors) from the vectors of `passage_texts_to_embed`."""
    rest = iter(vectors[len(sentence_counts):])
    return vectors[:len(sentence_counts)], [[next(rest) for _ in range(count)] for count in sentence_counts]


# ---- the embedder's tokenizer -------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def embedder_tokenizer():
    """The word-piece tokenizer of the embedded all-MiniLM-L6-v2 (a `tokenizers.Tokenizer` copy without the
    padding and truncation the embedder sets on its own), loaded with the embedder on first use."""
    from tokenizers import Tokenizer

    from core.models.embedder import _load

    tokenizer = Tokenizer.from_str(_load().tokenizer.backend_tokenizer.to_str())
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def embedder_token_counter() -> CountTokens:
    """count_tokens(text) -> number of MiniLM word pieces in the text, [CLS] and [SEP] not counted. Nothing is
    loaded until it is first called. The embedder reads at most 254 of them; the rest of a text is ignored."""

    def count_tokens(text: str) -> int:
        return len(embedder_tokenizer().encode(text, add_special_tokens=False).ids)

    return count_tokens
