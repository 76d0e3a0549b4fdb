"""Feedback on answers: record, list, update, validation and concurrent writers."""

from __future__ import annotations

import json
import threading

import pytest

from core.errors import ProjectNotFoundError
from core.feedback import list_feedback, record_feedback, update_feedback


def _record(project, **changes):
    fields = dict(question="Giờ mở cửa?", answer="8 giờ.", rating=1)
    fields.update(changes)
    return record_feedback(project, **fields)


def test_empty(project):
    assert list_feedback(project) == []


def test_record_and_list(project):
    up = _record(project, recipe="assistant", recipe_version=3, user="lan", stats={"output_tokens": 5})
    down = _record(project, question="Phí ship?", answer="Không biết.", rating=-1, correction="  Miễn phí.  ")
    rows = list_feedback(project)
    assert rows == [up, down]
    assert up["rating"] == 1 and down["rating"] == -1
    assert down["correction"] == "Miễn phí."  # stripped
    assert up["status"] == down["status"] == "new"
    assert (up["recipe"], up["recipe_version"], up["user"], up["stats"]) == ("assistant", 3, "lan", {"output_tokens": 5})
    assert down["stats"] == {}
    assert up["id"] != down["id"] and len(up["id"]) == 12
    assert up["time"] <= down["time"]
    raw = (project.path / "feedback" / "feedback.jsonl").read_text(encoding="utf-8")
    assert "Giờ mở cửa?" in raw  # readable UTF-8, one JSON object per line
    assert [json.loads(line)["id"] for line in raw.splitlines()] == [up["id"], down["id"]]


@pytest.mark.parametrize("rating", [0, 2, -2, "1", None, 0.5])
def test_rating_validation(project, rating):
    with pytest.raises(ValueError, match="rating"):
        _record(project, rating=rating)
    assert list_feedback(project) == []


def test_update(project):
    first = _record(project)
    second = _record(project, rating=-1)
    update_feedback(project, second["id"], status="labeled", correction="Sửa lại")
    rows = {row["id"]: row for row in list_feedback(project)}
    assert rows[second["id"]]["status"] == "labeled"
    assert rows[second["id"]]["correction"] == "Sửa lại"
    assert rows[first["id"]] == first  # others untouched
    update_feedback(project, "no-such-id", status="x")
    assert {row["id"]: row for row in list_feedback(project)} == rows


def test_record_into_deleted_project(workspace):
    project = workspace.create("Temp")
    workspace.delete(project, "Temp")
    with pytest.raises(ProjectNotFoundError):
        _record(project)
    assert not project.path.exists()


def test_concurrent_writes_all_land(project):
    threads, per_thread, errors = 8, 6, []

    def writer(n):
        try:
            for i in range(per_thread):
                _record(project, question=f"q{n}-{i}", rating=1 if i % 2 else -1)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    workers = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert errors == []
    rows = list_feedback(project)
    assert len(rows) == threads * per_thread
    assert {row["question"] for row in rows} == {f"q{n}-{i}" for n in range(threads) for i in range(per_thread)}
    assert len({row["id"] for row in rows}) == len(rows)


def test_concurrent_updates_and_records(project):
    base = [_record(project, question=f"base{i}") for i in range(5)]
    errors = []

    def updater():
        try:
            for row in base:
                update_feedback(project, row["id"], status="labeled")
        except Exception as exc:  # pragma: no cover
            errors.append(exc)

    def recorder():
        try:
            for i in range(5):
                _record(project, question=f"new{i}")
        except Exception as exc:  # pragma: no cover
            errors.append(exc)

    workers = [threading.Thread(target=updater), threading.Thread(target=recorder)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert errors == []
    rows = {row["question"]: row for row in list_feedback(project)}
    assert len(rows) == 10
    assert all(rows[f"base{i}"]["status"] == "labeled" for i in range(5))
    assert all(rows[f"new{i}"]["status"] == "new" for i in range(5))
