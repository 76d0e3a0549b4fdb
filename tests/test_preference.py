"""Preference tuning on tiny random models: DPO raises the chosen-over-rejected margin, ORPO lowers its loss, KTO
learns from thumbs up and down, a reward model ranks answers; the losses match TRL's; pre-flight checks; cancel and
resume; the command line."""

from __future__ import annotations

import json

import pytest

from core.data.records import new_record
from core.data.store import DatasetStore
from core.errors import StudioError, TrainingError
from core.finetune import runs
from core.finetune.config import TrainConfig
from core.models.adapters import AdapterRegistry
from core.models.source import ModelSource
from core.recipe import Recipe, RecipeStore

# Chosen answers state a delivery time; rejected ones dodge the question. Lengths vary both ways.
PAIRS = [(f"When do orders to region {i} arrive?", f"Orders to region {i} arrive in {i % 5 + 2} days.",
          "I do not know." if i % 2 else "Sorry, I cannot help with shipping questions today, please ask later.")
         for i in range(12)]


def make_project(project, folder, pairs=PAIRS):
    records = [new_record("preference", prompt=p, chosen=c, rejected=r) for p, c, r in pairs]
    DatasetStore(project).create("prefs", "preference", records)
    recipe = Recipe(model=ModelSource(kind="local", location=str(folder)))
    RecipeStore(project).save(recipe)
    return recipe


def quick(**changes) -> TrainConfig:
    base = dict(dataset="prefs", objective="dpo", method="lora", epochs=3, batch_size=4, learning_rate=5e-3,
                lora_rank=4, lora_alpha=8, max_length=64, eval_fraction=0.0, precision="fp32")
    return TrainConfig(**{**base, **changes})


def train(project, recipe, config) -> tuple[runs.Run, list[dict]]:
    run = runs.create_run(project, config, recipe)
    events: list[dict] = []
    result = runs.execute(project, run.id, lambda **e: events.append(e))
    assert result["finished"] and AdapterRegistry(project).exists(run.id)
    return run, events


def steps(events: list[dict]) -> list[dict]:
    return [e for e in events if e.get("type") == "step"]


def mean_margin(model, pairs) -> float:
    """Mean over pairs of log p(chosen) - log p(rejected), summed over the answer tokens (plain forward passes)."""
    import torch

    def logp(example) -> float:
        ids, labels = torch.tensor([example.input_ids]), torch.tensor(example.labels[1:])
        with torch.no_grad():
            logprobs = model(ids).logits[0, :-1].log_softmax(-1)
        keep = labels != -100
        return float(logprobs[keep].gather(1, labels[keep][:, None]).sum())

    return sum(logp(p.chosen) - logp(p.rejected) for p in pairs) / len(pairs)


def test_dpo_raises_the_chosen_over_rejected_margin(project, tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from core.finetune.preference_data import prepare_pairs
    from core.models.adapters import apply_adapter
    from core.models.base import CompletionLabels
    from core.prompt import PromptSettings

    folder = tiny_model_dir("llama")
    recipe = make_project(project, folder)
    run, events = train(project, recipe, quick())
    assert steps(events)[0]["reward_margin"] == pytest.approx(0.0, abs=1e-5)  # policy = reference before step 1
    assert steps(events)[-1]["reward_margin"] > 0 and steps(events)[-1]["reward_accuracy"] > 0.5
    spec = run.spec
    pairs, _ = prepare_pairs(DatasetStore(project).load("prefs")[0], AutoTokenizer.from_pretrained(str(folder)),
                             PromptSettings.from_dict(spec["prompt"]), CompletionLabels(**spec["labels"]), 64)
    before = mean_margin(AutoModelForCausalLM.from_pretrained(str(folder)), pairs)
    info = AdapterRegistry(project).get(run.id)
    after = mean_margin(apply_adapter(AutoModelForCausalLM.from_pretrained(str(folder)), info), pairs)
    assert after > before + 1.0, (before, after)
    assert info.objective == "dpo" and not info.is_reward and "reward_margin" in info.metrics
    assert (run.folder / "reference.json").exists()


def test_orpo_lowers_its_loss(project, tiny_model_dir):
    recipe = make_project(project, tiny_model_dir("gemma3"))
    _, events = train(project, recipe, quick(objective="orpo", method="full", learning_rate=1e-3, epochs=2))
    losses = [e["loss"] for e in steps(events)]
    assert losses[-1] < losses[0]
    assert all("reward_accuracy" in e for e in steps(events))


def test_kto_runs_on_unpaired_chat_feedback(project, tiny_model_dir):
    from core.feedback import record_feedback

    recipe = make_project(project, tiny_model_dir("llama", chat_template=True))
    for i, (question, good, bad) in enumerate(PAIRS[:10]):  # unpaired: each question rated once
        if i % 3 == 0:
            record_feedback(project, question=question, answer=good, rating=1)
        elif i % 3 == 1:
            record_feedback(project, question=question, answer=bad, rating=-1)
        else:
            record_feedback(project, question=question, answer=bad, rating=-1, correction=good)
    config = quick(dataset="", objective="kto", data_source="feedback", eval_fraction=0.2)
    run, events = train(project, recipe, config)
    assert len(run.spec["feedback"]) == 10  # the ratings are copied into the run
    last = steps(events)[-1]
    assert last["reward_margin"] > 0 and "kl" in last
    assert any(e.get("type") == "eval" and "eval_reward_margin" in e for e in events)
    info = AdapterRegistry(project).get(run.id)
    assert info.objective == "kto" and "chat feedback" in info.label


def test_kto_also_splits_preference_pairs(project, tiny_model_dir):
    recipe = make_project(project, tiny_model_dir("phi"))
    _, events = train(project, recipe, quick(objective="kto", epochs=1))
    report = next(e for e in events if e.get("type") == "report")
    assert report["used"] == 2 * len(PAIRS)  # each pair: a good and a bad answer


def test_reward_model_ranks_a_better_answer_above_a_worse_one(project, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from core.data.labeling import rank_by_score
    from core.evaluate.variants import ladder_adapter
    from core.finetune.adapters import merge_and_export
    from core.models.adapters import apply_adapter
    from core.finetune.reward import reward_models, score_answers

    folder = tiny_model_dir("gemma3")
    recipe = make_project(project, folder)
    run, events = train(project, recipe, quick(objective="reward", epochs=4))
    assert steps(events)[-1]["reward_accuracy"] == 1.0
    better, worse = "Orders to region 40 arrive in 3 days.", "I do not know."
    scores = score_answers(project, run.id, "When do orders to region 40 arrive?", [worse, better])
    assert scores[1] > scores[0]
    assert [r["answer"] for r in rank_by_score([worse, better], scores)] == [better, worse]
    info = AdapterRegistry(project).get(run.id)
    assert info.is_reward and [m.id for m in reward_models(project)] == [run.id]
    with pytest.raises(TrainingError, match="reward model"):
        apply_adapter(AutoModelForCausalLM.from_pretrained(str(folder)), info)
    with pytest.raises(TrainingError, match="reward model"):
        merge_and_export(info, folder, project.path / "merged")
    assert ladder_adapter(project, recipe) is None  # not a rung of the ladder


def test_full_fine_tuned_reward_model_scores_too(project, tiny_model_dir):
    from core.finetune.reward import score_answers

    recipe = make_project(project, tiny_model_dir("llama"))
    run, _ = train(project, recipe, quick(objective="reward", method="full", learning_rate=1e-3, epochs=2))
    assert not AdapterRegistry(project).get(run.id).is_peft
    scores = score_answers(project, run.id, PAIRS[0][0], [PAIRS[0][1], PAIRS[0][2]])
    assert scores[0] > scores[1]


def test_losses_match_trl(tmp_path, tiny_model_dir):
    """Our DPO loss (log-probabilities and formula) and ORPO's odds-ratio term against TRL 1.x's own."""
    pytest.importorskip("trl")
    import contextlib
    from types import SimpleNamespace

    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer
    from trl.experimental.orpo import ORPOTrainer
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    from core.finetune import preference, speed
    from core.finetune.data import Example

    folder = tiny_model_dir("llama")
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    policy = AutoModelForCausalLM.from_pretrained(str(folder)).eval()
    torch.manual_seed(7)
    reference = type(policy)(policy.config).eval()  # another random model, so the log-ratios are not zero
    rows = [{"prompt": p, "chosen": " " + c, "rejected": " " + r} for p, c, r in PAIRS[:3]]
    trainer = DPOTrainer(model=policy, ref_model=reference, train_dataset=Dataset.from_list(rows),
                         processing_class=tokenizer, args=DPOConfig(output_dir=str(tmp_path), beta=0.2,
                                                                    report_to="none", use_cpu=True))
    tokenized = [{k: trainer.train_dataset[i][k] for k in ("prompt_ids", "chosen_ids", "rejected_ids")}
                 for i in range(len(rows))]
    policy.eval()
    with torch.no_grad():
        expected = float(trainer.compute_loss(policy, DataCollatorForPreference(tokenizer.pad_token_id)(tokenized)))
    logged = trainer._metrics["eval"]  # what TRL logs: mean log-probabilities and reward margin

    def example(prompt_ids, answer_ids):
        return Example(prompt_ids + answer_ids, [-100] * len(prompt_ids) + answer_ids, "")

    chosen = [example(r["prompt_ids"], r["chosen_ids"]) for r in tokenized]
    rejected = [example(r["prompt_ids"], r["rejected_ids"]) for r in tokenized]

    def logps(model):
        fake = SimpleNamespace(model=model, head=speed.output_head(model), autocast=contextlib.nullcontext,
                               pad_id=tokenizer.pad_token_id, to_device=lambda batch: batch)
        with torch.no_grad():
            return preference.sequence_logps(fake, chosen + rejected)[0]

    mine, ref = logps(policy), logps(reference)
    assert float(mine[:3].mean()) == pytest.approx(logged["logps/chosen"][-1], rel=1e-5)
    assert float(mine[3:].mean()) == pytest.approx(logged["logps/rejected"][-1], rel=1e-5)
    losses, chosen_rewards, rejected_rewards = preference.dpo_loss(mine[:3], mine[3:], ref[:3], ref[3:], 0.2)
    # fp32 rounding in two different forward paths moves the log-ratios by ~1e-3 nats: a loose tolerance still
    # catches a wrong sign, scale or term.
    assert float(losses.mean()) == pytest.approx(expected, rel=1e-3)
    assert float((chosen_rewards - rejected_rewards).mean()) == pytest.approx(logged["rewards/margins"][-1],
                                                                                abs=5e-4)

    chosen_mean, rejected_mean = torch.tensor([-0.3, -2.0, -0.05]), torch.tensor([-0.9, -0.4, -3.0])
    trl_terms = ORPOTrainer.odds_ratio_loss(SimpleNamespace(beta=0.5, accelerator=SimpleNamespace(device="cpu")),
                                            chosen_mean, rejected_mean)[0]
    ours, _, _ = preference.orpo_loss(chosen_mean, rejected_mean, 0.5)
    assert torch.allclose(ours, -chosen_mean - trl_terms)  # TRL returns β·log σ(...) and subtracts it from the NLL


def test_kto_loss_formula():
    import torch

    from core.finetune.preference import kto_loss

    losses, rewards = kto_loss(torch.tensor([-1.0, -3.0]), torch.tensor([-2.0, -2.0]), torch.tensor([True, False]),
                               torch.tensor(0.5), beta=1.0, desirable_weight=2.0, undesirable_weight=1.0)
    assert torch.allclose(losses, torch.tensor([2 * (1 - torch.sigmoid(torch.tensor(0.5))),
                                                1 - torch.sigmoid(torch.tensor(1.5))]))
    assert torch.allclose(rewards, torch.tensor([1.0, -1.0]))


def test_cancel_then_resume_continues_a_dpo_run_from_its_checkpoint(project, tiny_model_dir):
    from safetensors.torch import load_file

    recipe = make_project(project, tiny_model_dir("llama"))
    config = quick(batch_size=2, eval_fraction=0.2, save_every=1000, eval_every=1000)
    run = runs.create_run(project, config, recipe)
    first: list[dict] = []
    stopped = runs.execute(project, run.id, lambda **e: first.append(e),
                           should_stop=lambda: len(steps(first)) >= 3)  # what the job does on Cancel (SIGTERM)
    assert not stopped["finished"] and stopped["step"] == 3 and run.has_checkpoint
    resumed: list[dict] = []
    assert runs.execute(project, run.id, lambda **e: resumed.append(e))["finished"]
    assert steps(resumed)[0]["step"] == 4
    templates = [e.get("message_template") or str(e.get("message", "")) for e in resumed]
    assert any(m.startswith("Resumed from the checkpoint") for m in templates)
    assert not any(m.startswith("Scoring the examples") for m in templates)  # the saved reference is reused
    straight, _ = train(project, recipe, config)
    registry = AdapterRegistry(project)
    a = load_file(str(registry.get(run.id).folder / "adapter_model.safetensors"))
    b = load_file(str(registry.get(straight.id).folder / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(a[k].allclose(b[k], atol=1e-6) for k in a)


def test_studio_train_with_a_dpo_config(project, tiny_model_dir, tmp_path):
    from typer.testing import CliRunner

    from core import cli

    make_project(project, tiny_model_dir("llama"))
    config_file = tmp_path / "dpo.json"
    config_file.write_text(json.dumps(quick(epochs=1).to_dict()))
    result = CliRunner().invoke(cli.app, ["train", project.name, "--config", str(config_file)])
    assert result.exit_code == 0, result.output
    assert "margin" in result.output and "accuracy" in result.output
    [run] = runs.list_runs(project)
    assert run.config.objective == "dpo" and run.status().state == "done"
    assert AdapterRegistry(project).get(run.id).objective == "dpo"


@pytest.mark.parametrize("changes, message", [
    ({"objective": "ppo"}, "Unknown training objective"),
    ({"data_source": "feedback"}, "Only KTO"),
    ({"objective": "reward", "method": "ia3"}, "LoRA or full"),
    ({"method": "prompt_tuning"}, "soft prompts"),
    ({"beta": 0.0}, "Beta must be above 0"),
    ({"desirable_weight": -1.0}, "KTO weights"),
    ({"retrieval_context": "mixed"}, "training pairs only"),
])
def test_config_refuses_bad_preference_settings(changes, message):
    with pytest.raises(StudioError, match=message):
        quick(**changes)


@pytest.mark.parametrize("kind, objective, message", [
    ("sft", "dpo", "not a preference dataset"),
    ("preference", "sft", "pick DPO, ORPO, KTO"),
])
def test_wrong_data_for_the_objective_is_explained(project, tiny_model_dir, kind, objective, message):
    recipe = Recipe(model=ModelSource(kind="local", location=str(tiny_model_dir("llama"))))
    DatasetStore(project).create("prefs", kind, [])
    with pytest.raises(TrainingError, match=message):
        runs.create_run(project, quick(objective=objective), recipe)


def test_kto_on_feedback_needs_ratings(project, tiny_model_dir):
    recipe = Recipe(model=ModelSource(kind="local", location=str(tiny_model_dir("llama"))))
    with pytest.raises(TrainingError, match="no thumbs up or down"):
        runs.create_run(project, quick(dataset="", objective="kto", data_source="feedback"), recipe)


# -- pre-flight checks ------------------------------------------------------------------------------------------

def pairs(n: int, chosen_longer: bool | None = None) -> list[dict]:
    """n distinct pairs; chosen_longer None alternates which side is longer."""
    out = []
    for i in range(n):
        longer = chosen_longer if chosen_longer is not None else i % 2 == 0
        short, long = f"Answer {i}.", f"A much longer answer number {i}, with details."
        out.append(new_record("preference", prompt=f"Question {i}?", chosen=long if longer else short,
                              rejected=short if longer else long))
    return out


def with_changes(records: list[dict], index: int, **changes) -> list[dict]:
    return [{**r, **changes} if i == index else r for i, r in enumerate(records)]


@pytest.mark.parametrize("records, expected", [
    (pairs(3), [("too_few", "error")]),
    (pairs(12), [("too_few", "warning")]),
    (pairs(60), []),
    (pairs(60, chosen_longer=True), [("length_bias", "warning")]),
    (pairs(60, chosen_longer=False), [("length_bias", "warning")]),
    (with_changes(pairs(60), 0, rejected=pairs(60)[0]["chosen"]), [("identical_sides", "warning")]),
    (with_changes(pairs(60), 5, chosen="  "), [("empty_side", "warning")]),
    (with_changes(pairs(8), 0, rejected=" " + pairs(8)[0]["chosen"].upper()),  # 7 usable pairs left
     [("too_few", "error"), ("identical_sides", "warning")]),
    (with_changes(pairs(8), 0, status="rejected"), [("too_few", "error")]),  # rejected records do not count
])
def test_preference_checks(records, expected):
    from core.data.preference_checks import blocks_training, check_pairs

    found = check_pairs(records)
    assert [(f.code, f.severity) for f in found] == expected
    assert blocks_training(found) == any(severity == "error" for _, severity in expected)


def test_identical_sides_name_their_records_and_dataset_checks_include_them():
    from core.data.checks import run_checks
    from core.data.preference_checks import check_pairs

    records = pairs(20, chosen_longer=True)
    records = with_changes(records, 3, rejected=records[3]["chosen"])
    [identical] = [f for f in check_pairs(records) if f.code == "identical_sides"]
    assert identical.record_ids == (records[3]["id"],)
    codes = {f.code for f in run_checks(records, "preference").findings}
    assert {"identical_sides", "length_bias"} <= codes


def test_feedback_checks():
    from core.data.preference_checks import check_feedback

    ups = [{"id": str(i), "question": f"q{i}", "answer": f"a{i}", "rating": 1} for i in range(3)]
    assert [(f.code, f.severity) for f in check_feedback(ups)] == [("too_few", "error"), ("one_sided", "warning")]
    mixed = ups + [{"id": f"d{i}", "question": f"q{i}", "answer": "no", "rating": -1, "correction": f"yes {i}"}
                   for i in range(3)]
    assert [(f.code, f.severity) for f in check_feedback(mixed)] == [("too_few", "warning")]  # 9 rated answers
