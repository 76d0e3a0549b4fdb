"""A one-page report of an assistant for people who never open the studio: the ladder's scoreboard of one eval
run (a table and a bar chart of the main metric), a few sample answers of the best variant with their sources, the
recipe, and the data it was built and measured with.

build_report() gathers and formats everything once, in the reader's language; render_html() (Jinja2, autoescaped,
self-contained) and render_pdf() (fpdf2, core.report_pdf) only lay it out, so both say exactly the same. Text that
comes from users or models is cleaned first (core.report.clean): bidirectional override characters, which could make
a sentence read differently from what was written, are shown as visible codes.
"""

from __future__ import annotations

import re
import time
import unicodedata
from dataclasses import dataclass
from pathlib import PurePath

from core.evaluate import labels
from core.evaluate.labels import metric_label
from core.evaluate.metrics import METRICS
from core.evaluate.runs import EvalRun, list_eval_runs
from core.evaluate.variants import Variant
from core.i18n import Msg, translate
from core.recipe import Recipe
from core.workspace import BIDI_CONTROLS as DIRECTION_CONTROLS, Project

SAMPLES = 5  # sample answers in a report (fewer when the run answered fewer questions)
EXCERPT = {"system_prompt": 400, "template": 200, "answer": 700, "question": 400, "reference": 500}
BIDI_CONTROLS = re.compile(f"[{DIRECTION_CONTROLS}]")

TEXT = {
    "report": Msg("Assistant report"),
    "scoreboard": Msg("Scoreboard"),
    "variant": Msg("Variant"),
    "answered": Msg("Answers"),
    "samples": Msg("Sample answers"),
    "question": Msg("Question"),
    "reference": Msg("Reference"),
    "sources": Msg("Sources"),
    "no_sources": Msg("No passages retrieved."),
    "recipe": Msg("Recipe"),
    "data": Msg("Data"),
    "no_run": Msg("No finished evaluation yet: run one on the Evaluation page to add the scoreboard."),
    "no_answers": Msg("The evaluation has no answers yet."),
    "footnote": Msg("Each score is the average over the questions a variant answered, from 0 to 1 (higher is "
                    "better). Made with the LLM Customization Studio."),
}


@dataclass(frozen=True)
class ScoreRow:
    key: str
    label: str
    note: str                  # why the variant has no scores ("not set up: …"); '' when it answered
    scores: dict               # as EvalRun.summary() gives it: each metric's mean, "answered"
    cells: tuple[str, ...]     # formatted: the answer count, then each of Report.metrics
    main: float | None         # the main metric, drawn in the chart
    best: bool = False


@dataclass(frozen=True)
class Sample:
    question: str
    reference: str
    answer: str
    score: str                 # the main metric, formatted ('' when it has none)
    sources: tuple[str, ...]   # "source · #chunk" of each passage retrieved


@dataclass(frozen=True)
class Report:
    language: str
    text: dict                 # headings and captions, translated (keys of TEXT, plus "chart", "best", "answer")
    title: str                 # the project's name
    subtitle: str              # recipe, version and date
    run_id: str | None
    run_caption: str
    headers: tuple[str, ...]   # Variant, Answers, then each metric's label
    metrics: tuple[str, ...]
    main_metric: str | None
    rows: tuple[ScoreRow, ...]
    samples: tuple[Sample, ...]
    recipe: tuple[tuple[str, str], ...]
    data: tuple[tuple[str, str], ...]

    @property
    def bars(self) -> list[ScoreRow]:
        return [row for row in self.rows if row.main is not None]


# ---- labels and values ------------------------------------------------------------------------------------------

def clean(text, limit: int | None = None) -> str:
    """User or model text fit for a report: NFC, control characters dropped, direction controls made visible
    as [U+202E], cut to `limit` characters."""
    text = unicodedata.normalize("NFC", "" if text is None else str(text))
    text = BIDI_CONTROLS.sub(lambda m: f"[U+{ord(m.group()):04X}]", text)
    text = "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch) != "Cc")
    if limit and len(text) > limit:
        text = text[:limit].rstrip() + "…"
    return text.strip()


def variant_label(variant: Variant, language: str) -> str:
    return clean(labels.variant_label(variant, language))


def format_value(name: str, value) -> str:
    if value is None:
        return "–"
    if name == "latency_s":
        return f"{value:.2f} s"
    if name == "weights_mb":
        return f"{value:,.0f} MB"
    if name.endswith("_tokens") or name == "answered":
        return f"{value:,.0f}"
    return f"{value:.2f}"


def report_metrics(summary: dict[str, dict]) -> list[str]:
    """The score metrics (registry order) some variant has, then the latency."""
    latency = ["latency_s"] if any("latency_s" in s for s in summary.values()) else []
    return labels.score_metrics(summary) + latency


def main_metric(summary: dict[str, dict], chosen: str | None = None) -> str | None:
    """`chosen` when some variant has it; else word overlap, else the first answer metric, else any score."""
    names = [n for n in report_metrics(summary) if METRICS[n].kind != "cost"]
    if chosen in names:
        return chosen
    answers = [n for n in names if METRICS[n].kind == "answer"]
    return "token_f1" if "token_f1" in names else (answers or names or [None])[0]


def latest_finished_run(project: Project) -> EvalRun | None:
    return next((run for run in list_eval_runs(project) if run.status().state == "done"), None)


# ---- building ---------------------------------------------------------------------------------------------------

def build_report(project: Project, run: EvalRun | None, recipe: Recipe, language: str, *,
                 recipe_version: int | None = None, metric: str | None = None, now: float | None = None) -> Report:
    """Everything the report says, formatted. `run`: the chosen (or latest finished) eval run, or None; `metric`:
    the one the chart shows and the best variant is picked by (word overlap by default)."""
    def tr(message, **params) -> str:
        return translate(message, language, **params)

    text = {key: tr(message) for key, message in TEXT.items()}
    version = tr(Msg("version {number}", number=recipe_version)) if recipe_version else tr(Msg("not saved yet"))
    subtitle = tr(Msg("Recipe {name}, {version} · {date}"), name=clean(recipe.name), version=version,
                  date=time.strftime("%Y-%m-%d", time.localtime(now)))
    rows, samples, metrics, caption, data = (), (), [], "", []
    main = None
    if run is not None:
        spec, summary = run.spec, run.summary()
        metrics = report_metrics(summary)
        main = main_metric(summary, metric)
        rows = _score_rows(run.variants, summary, metrics, main, language)
        caption = tr(Msg("Evaluation run {run} of {date} · {dataset} version {version} · {count} questions."),
                     run=run.id, date=time.strftime("%Y-%m-%d", time.localtime(spec.get("created"))),
                     dataset=clean(spec["dataset"]), version=spec["dataset_version"], count=spec["questions"])
        best = next((row for row in rows if row.best), None) or next((r for r in rows if not r.note), None)
        if best is not None:
            samples = _samples(run, best.key, main)
            text["answer"] = tr(Msg("Answer")) + " · " + best.label
            if main is not None:
                text["best"] = tr(Msg("Best variant on {metric}: {label} ({score})."),
                                  metric=metric_label(main, language), label=best.label,
                                  score=format_value(main, best.main))
                text["chart"] = tr(Msg("{metric} per variant (0 to 1, higher is better)"),
                                   metric=metric_label(main, language))
        data.append((tr(Msg("Evaluation set")), tr(Msg("{name} version {version} · {count} questions"),
                                                   name=clean(spec["dataset"]), version=spec["dataset_version"],
                                                   count=spec["questions"])))
    data += _adapter_data(project, recipe, language)
    return Report(language=language, text=text, title=clean(project.name), subtitle=subtitle,
                  run_id=run.id if run is not None else None, run_caption=caption,
                  headers=(text["variant"], text["answered"], *(metric_label(n, language) for n in metrics)),
                  metrics=tuple(metrics), main_metric=main, rows=tuple(rows), samples=tuple(samples),
                  recipe=tuple(_recipe_items(project, recipe, language)), data=tuple(data))


def _score_rows(variants: list[Variant], summary: dict[str, dict], metrics: list[str], main: str | None,
                language: str) -> tuple[ScoreRow, ...]:
    scored = [v for v in variants if main and main in summary.get(v.key, {})]
    top = max(scored, key=lambda v: summary[v.key][main], default=None)  # the first (cheapest rung) of equals
    rows = []
    for variant in variants:
        scores = summary.get(variant.key, {})
        note = "" if scores else (
            translate(Msg("not set up: {reason}"), language, reason=translate(variant.missing, language))
            if not variant.ready and variant.missing else translate(Msg("not answered"), language))
        cells = (format_value("answered", scores.get("answered")),
                 *(format_value(n, scores.get(n)) for n in metrics))
        value = scores.get(main) if main else None
        rows.append(ScoreRow(variant.key, variant_label(variant, language), clean(note), dict(scores), cells,
                             None if value is None else min(1.0, max(0.0, float(value))),
                             top is not None and variant.key == top.key))
    return tuple(rows)


def _samples(run: EvalRun, variant_key: str, main: str | None) -> list[Sample]:
    by_id = {r["record_id"]: r for r in run.results() if r["variant"] == variant_key}
    found = []
    for record_id in run.spec.get("record_ids", []):
        row = by_id.get(record_id)
        if row is None:
            continue
        sources = tuple(f"{clean(source)} · #{str(chunk)[:8]}" for chunk, source in row.get("retrieved") or [])
        score = row["scores"].get(main) if main else None
        found.append(Sample(clean(row["question"], EXCERPT["question"]),
                            clean(labels.reference_text(row), EXCERPT["reference"]),
                            clean(row["answer"], EXCERPT["answer"]),
                            "" if score is None else format_value(main, score), sources))
        if len(found) == SAMPLES:
            break
    return found


def _recipe_items(project: Project, recipe: Recipe, language: str) -> list[tuple[str, str]]:
    def tr(message, **params) -> str:
        return translate(message, language, **params)

    from core.rag.retriever import MODES

    fewshot, retriever, generation = recipe.fewshot, recipe.retriever, recipe.generation
    items = [(tr(Msg("Model")), _model_name(recipe, language)),
             (tr(Msg("Adapter")), _adapter_name(project, recipe, language)),
             (tr(Msg("System prompt")), clean(recipe.prompt.system_prompt, EXCERPT["system_prompt"]) or "–"),
             (tr(Msg("Question template")), clean(recipe.prompt.template, EXCERPT["template"]) or "–"),
             (tr(Msg("Few-shot examples")),
              tr(Msg("on · up to {k} examples from {dataset}"), k=fewshot.k, dataset=clean(fewshot.dataset))
              if fewshot.enabled else tr(Msg("off"))),
             (tr(Msg("Knowledge base")),
              tr(Msg("on · {name} · {mode} · {k} passages per question"), name=clean(retriever.knowledge_base),
                 mode=tr(MODES.get(retriever.mode, retriever.mode)), k=retriever.k)
              if retriever.enabled else tr(Msg("off"))),
             (tr(Msg("Generation settings")),
              tr(Msg("temperature {temperature} · top-p {top_p} · up to {tokens} new tokens · repetition penalty "
                     "{penalty}"), temperature=generation.temperature, top_p=generation.top_p,
                 tokens=generation.max_new_tokens, penalty=generation.repetition_penalty)),
             (tr(Msg("Context window")), tr(Msg("{count} tokens"), count=recipe.context_window)
              if recipe.context_window else tr(Msg("the model's maximum")))]
    if recipe.tools:
        names = [clean(tool.get("function", {}).get("name", "")) for tool in recipe.tools]
        items.append((tr(Msg("Tools")), ", ".join(n for n in names if n) or "–"))
    return items


def _model_name(recipe: Recipe, language: str) -> str:
    """A local folder or file by its name (the rest of its path says nothing to a reader); others as described."""
    source = recipe.model
    if source.kind in ("local", "gguf"):
        return clean(PurePath(source.location.rstrip("/\\")).name or source.location)
    return clean(translate(source.describe(), language))


def _adapter_info(project: Project, recipe: Recipe):
    from core.errors import StudioError
    from core.models.adapters import AdapterRegistry

    if not recipe.adapter:
        return None
    try:
        return AdapterRegistry(project).get(recipe.adapter)
    except (StudioError, OSError, ValueError):  # deleted, or a manifest half written
        return None


def _adapter_name(project: Project, recipe: Recipe, language: str) -> str:
    if not recipe.adapter:
        return translate(Msg("None"), language)
    info = _adapter_info(project, recipe)
    if info is None:
        return translate(Msg("{name} (no longer in the project)"), language, name=clean(recipe.adapter))
    return clean(info.label) + f" · {clean(info.manifest.get('config', {}).get('method', ''))}"


ADAPTER_METRICS = {"steps": Msg("Steps"), "train_loss": Msg("Training loss"), "eval_loss": Msg("Eval loss")}


def _adapter_data(project: Project, recipe: Recipe, language: str) -> list[tuple[str, str]]:
    info = _adapter_info(project, recipe)
    if info is None:
        return []
    manifest = info.manifest
    found = [(translate(Msg("Adapter training data"), language),
              translate(Msg("{name} version {version}"), language, name=clean(manifest.get("dataset") or "–"),
                        version=manifest.get("dataset_version") or "–"))]
    values = [f"{translate(label, language)} {_number(info.metrics[name])}" for name, label in ADAPTER_METRICS.items()
              if info.metrics.get(name) is not None]
    if values:
        found.append((translate(Msg("Adapter metrics"), language), " · ".join(values)))
    return found


def _number(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else clean(value)


# ---- HTML -------------------------------------------------------------------------------------------------------

CHART = {"label": 190, "bar": 330, "value": 50, "row": 26, "top": 8}


def _chart(report: Report) -> dict | None:
    bars = report.bars
    if not bars:
        return None
    c = CHART
    return {"width": c["label"] + c["bar"] + c["value"], "height": c["top"] * 2 + c["row"] * len(bars),
            "x": c["label"], "span": c["bar"], "bars": [
                {"y": c["top"] + i * c["row"], "w": round(row.main * c["bar"], 1), "row": row,
                 "text": format_value(report.main_metric, row.main)} for i, row in enumerate(bars)]}


def render_html(report: Report) -> str:
    """One self-contained page: inline CSS and SVG, nothing fetched; every value is escaped."""
    from jinja2 import Environment

    environment = Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
    return environment.from_string(HTML_TEMPLATE).render(r=report, chart=_chart(report))


def render_pdf(report: Report) -> bytes:
    """The same report as a PDF (fpdf2 with a Unicode TrueType font found on this computer)."""
    from core.report_pdf import render

    return render(report)


def pdf_font_found() -> bool:
    from core.report_pdf import find_font

    return find_font() is not None


HTML_TEMPLATE = """<!DOCTYPE html>
<html lang="{{ r.language }}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ r.title }} · {{ r.text.report }}</title>
<style>
  :root { --ink: #1f2933; --muted: #616e7c; --line: #d9dee3; --accent: #3b6fd8; --best: #1f9d55; }
  * { box-sizing: border-box; }
  body { margin: 0; color: var(--ink); background: #fff; font: 14px/1.45 system-ui, -apple-system, "Segoe UI",
         Roboto, "Noto Sans", "DejaVu Sans", Arial, sans-serif; }
  main { max-width: 920px; margin: 0 auto; padding: 28px 32px 40px; }
  header { border-bottom: 3px solid var(--accent); padding-bottom: 10px; margin-bottom: 18px; }
  .kicker { margin: 0; color: var(--accent); font-weight: 600; text-transform: uppercase; letter-spacing: .06em;
            font-size: 12px; }
  h1 { margin: 2px 0 4px; font-size: 26px; }
  h2 { font-size: 17px; margin: 22px 0 8px; padding-bottom: 3px; border-bottom: 1px solid var(--line); }
  .meta, .caption, .note, .foot { color: var(--muted); }
  .caption { margin: 0 0 8px; font-size: 13px; }
  .note { font-size: 12px; }
  table { width: 100%; border-collapse: collapse; font-size: 13px; }
  th, td { text-align: left; vertical-align: top; padding: 5px 7px; border-bottom: 1px solid var(--line);
           overflow-wrap: anywhere; }
  th { background: #f3f5f7; font-weight: 600; }
  td.num, th.num { text-align: right; white-space: nowrap; }
  .scores td:first-child { min-width: 11em; }
  tr.best td { background: #eefaf3; font-weight: 600; }
  svg { display: block; margin: 10px 0 4px; max-width: 100%; height: auto; }
  svg text { font-size: 12px; fill: var(--ink); }
  .sample { border: 1px solid var(--line); border-radius: 6px; padding: 6px 12px; margin: 0 0 8px;
            break-inside: avoid; }
  .sample dl { display: grid; grid-template-columns: 11em 1fr; gap: 2px 10px; margin: 0; }
  .sample dt { font-weight: 600; color: var(--muted); }
  .sample dd { margin: 0; white-space: pre-wrap; overflow-wrap: anywhere; }
  .sample dd.sources { white-space: normal; font-size: 12px; color: var(--muted); }
  .sample ol { margin: 0; padding-left: 1.3em; }
  .pairs th { width: 12em; background: none; color: var(--muted); }
  .pairs td { white-space: pre-wrap; }
  .foot { margin-top: 24px; font-size: 12px; }
  @media print {
    @page { size: A4; margin: 14mm; }
    body { font-size: 11px; }
    main { max-width: none; padding: 0; }
    h2 { break-after: avoid; }
    table, svg { break-inside: avoid; }
    th, tr.best td { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  }
</style>
</head>
<body>
<main>
<header>
  <p class="kicker">{{ r.text.report }}</p>
  <h1>{{ r.title }}</h1>
  <p class="meta">{{ r.subtitle }}</p>
</header>

<section>
  <h2>{{ r.text.scoreboard }}</h2>
{% if r.rows %}
  <p class="caption">{{ r.run_caption }}</p>
  <table class="scores">
    <thead><tr>
{% for header in r.headers %}
      <th{% if not loop.first %} class="num"{% endif %}>{{ header }}</th>
{% endfor %}
    </tr></thead>
    <tbody>
{% for row in r.rows %}
      <tr{% if row.best %} class="best"{% endif %}>
        <td>{{ row.label }}{% if row.note %}<div class="note">{{ row.note }}</div>{% endif %}</td>
{% for cell in row.cells %}
        <td class="num">{{ cell }}</td>
{% endfor %}
      </tr>
{% endfor %}
    </tbody>
  </table>
{% if chart %}
  <svg xmlns="http://www.w3.org/2000/svg" width="{{ chart.width }}" height="{{ chart.height }}"
       viewBox="0 0 {{ chart.width }} {{ chart.height }}" role="img" aria-label="{{ r.text.chart }}">
    <rect x="{{ chart.x }}" y="0" width="{{ chart.span }}" height="{{ chart.height }}" fill="#f7f8fa"/>
{% for bar in chart.bars %}
    <text x="{{ chart.x - 8 }}" y="{{ bar.y + 15 }}" text-anchor="end">
      {{- bar.row.label|truncate(30, True, "…") -}}
    </text>
    <rect x="{{ chart.x }}" y="{{ bar.y + 3 }}" width="{{ bar.w }}" height="18" rx="2"
          fill="{{ '#1f9d55' if bar.row.best else '#3b6fd8' }}"/>
    <text x="{{ chart.x + bar.w + 6 }}" y="{{ bar.y + 15 }}">{{ bar.text }}</text>
{% endfor %}
  </svg>
  <p class="caption">{{ r.text.chart }}</p>
{% endif %}
{% if r.text.best %}
  <p><strong>{{ r.text.best }}</strong></p>
{% endif %}
{% elif r.run_id %}
  <p>{{ r.text.no_answers }}</p>
{% else %}
  <p>{{ r.text.no_run }}</p>
{% endif %}
</section>

{% if r.samples %}
<section>
  <h2>{{ r.text.samples }}</h2>
{% for sample in r.samples %}
  <div class="sample"><dl>
    <dt>{{ r.text.question }}</dt><dd>{{ sample.question }}</dd>
{% if sample.reference %}
    <dt>{{ r.text.reference }}</dt><dd>{{ sample.reference }}</dd>
{% endif %}
    <dt>{{ r.text.answer }}</dt><dd>{{ sample.answer }}
      {%- if sample.score %} <span class="note">({{ sample.score }})</span>{% endif %}</dd>
    <dt>{{ r.text.sources }}</dt><dd class="sources">
{%- if sample.sources -%}
      <ol>{% for source in sample.sources %}<li>{{ source }}</li>{% endfor %}</ol>
{%- else -%}
      <span class="note">{{ r.text.no_sources }}</span>
{%- endif -%}
    </dd>
  </dl></div>
{% endfor %}
</section>
{% endif %}

{% macro pairs(title, rows) %}
<section>
  <h2>{{ title }}</h2>
  <table class="pairs">
{% for label, value in rows %}
    <tr><th>{{ label }}</th><td>{{ value }}</td></tr>
{% endfor %}
  </table>
</section>
{% endmacro %}
{{ pairs(r.text.recipe, r.recipe) }}
{% if r.data %}{{ pairs(r.text.data, r.data) }}{% endif %}

<p class="foot">{{ r.text.footnote }}</p>
</main>
</body>
</html>
"""
