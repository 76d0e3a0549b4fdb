"""Pre-flight checks for preference data, shown on the Fine-tune page before DPO, ORPO, KTO or a reward model:

* empty sides: a pair whose prompt, chosen or rejected answer is empty (skipped in training);
* identical sides: the same answer chosen and rejected (it teaches nothing; skipped in training);
* length bias: the chosen answer is the longer one in nearly every pair (or the shorter one), so the model can learn
  "longer is better" instead of what makes an answer better;
* too few: below MIN_PAIRS training refuses to start; below RECOMMENDED_PAIRS it warns.

Findings are checks.Finding values (code, severity, message, record ids), like the dataset checks. For the Chat
page's thumbs up and down (KTO), check_feedback counts the rated answers and warns when one kind is missing.
"""

from __future__ import annotations

from core.data.checks import Finding, normalize_text, record_id
from core.data.rated import rated_from_feedback
from core.data.records import problems
from core.data.split import MIN_EXAMPLES
from core.i18n import Msg

MIN_PAIRS = MIN_EXAMPLES       # training refuses fewer (preference_data.check_size)
RECOMMENDED_PAIRS = 50         # below this, preference tuning is unreliable
LENGTH_BIAS_SHARE = 0.9        # chosen longer (or shorter) in at least this share of the pairs
LENGTH_BIAS_MIN_PAIRS = 5      # too few pairs say nothing about a bias
PREFERENCE_CODES = ("too_few", "empty_side", "identical_sides", "length_bias", "one_sided")


def check_pairs(records: list[dict]) -> list[Finding]:
    """Findings for a preference dataset, errors first. Rejected records are left out."""
    active = [(record_id(r, i), r) for i, r in enumerate(records) if r.get("status") != "rejected"]
    empty = [rid for rid, r in active if problems("preference", r)]
    usable = [(rid, r) for rid, r in active if not problems("preference", r)]
    found = _too_few(sum(not _identical(r) for _, r in usable), Msg("pairs"))
    if empty:
        found.append(Finding("empty_side", "warning", Msg(
            "{count} pairs have an empty prompt, chosen or rejected answer and will be skipped; fill them in or "
            "reject them.", count=len(empty)), tuple(empty)))
    return found + side_findings(usable)


def side_findings(usable: list[tuple[str, dict]]) -> list[Finding]:
    """Identical sides and length bias among usable (record id, preference record) pairs; the dataset checks
    (checks.run_checks) add these for preference datasets too."""
    identical = [rid for rid, r in usable if _identical(r)]
    found = []
    if identical:
        found.append(Finding("identical_sides", "warning", Msg(
            "{count} pairs have the same chosen and rejected answer; they teach nothing and will be skipped. Fix "
            "one side or reject them.", count=len(identical)), tuple(identical)))
    return found + _length_bias([(rid, r) for rid, r in usable if not _identical(r)])


def _identical(record: dict) -> bool:
    return normalize_text(record["chosen"]) == normalize_text(record["rejected"])


def _length_bias(pairs: list[tuple[str, dict]]) -> list[Finding]:
    if len(pairs) < LENGTH_BIAS_MIN_PAIRS:
        return []
    longer = [rid for rid, r in pairs if len(r["chosen"].strip()) > len(r["rejected"].strip())]
    shorter = [rid for rid, r in pairs if len(r["chosen"].strip()) < len(r["rejected"].strip())]
    found = []
    for ids, message in ((longer, Msg(
            "The chosen answer is the longer one in {share}% of the pairs, so the model may learn that longer is "
            "better rather than what makes an answer better. Add pairs in which the better answer is the shorter "
            "one.", share=round(100 * len(longer) / len(pairs)))), (shorter, Msg(
            "The chosen answer is the shorter one in {share}% of the pairs, so the model may learn that shorter is "
            "better rather than what makes an answer better. Add pairs in which the better answer is the longer "
            "one.", share=round(100 * len(shorter) / len(pairs))))):
        if len(ids) >= LENGTH_BIAS_SHARE * len(pairs):
            found.append(Finding("length_bias", "warning", message, ()))
    return found


def _too_few(count: int, unit: Msg) -> list[Finding]:
    if count < MIN_PAIRS:
        return [Finding("too_few", "error", Msg(
            "Only {count} usable {unit}: preference tuning needs at least {minimum}; label more before training.",
            count=count, unit=unit, minimum=MIN_PAIRS), ())]
    if count < RECOMMENDED_PAIRS:
        return [Finding("too_few", "warning", Msg(
            "Only {count} usable {unit}; preference tuning is unreliable below about {recommended}, so expect a "
            "small or noisy effect.", count=count, unit=unit, recommended=RECOMMENDED_PAIRS), ())]
    return []


def check_feedback(entries: list[dict]) -> list[Finding]:
    """Findings for KTO on the Chat page's ratings: too few rated answers, or only one kind of rating."""
    rated = rated_from_feedback(entries)
    found = _too_few(len(rated), Msg("rated answers"))
    good = sum(r.desirable for r in rated)
    if rated and (good == 0 or good == len(rated)):
        found.append(Finding("one_sided", "warning", Msg(
            "All {count} rated answers are {kind}; KTO learns best from both good and bad answers, so rate some of "
            "the other kind too.", count=len(rated), kind=Msg("good") if good else Msg("bad")), ()))
    return found


def blocks_training(findings: list[Finding]) -> bool:
    return any(f.severity == "error" for f in findings)
