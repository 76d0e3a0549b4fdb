"""Two sessions saving at the same moment never lose a version: version files are created exclusively."""

from __future__ import annotations

import threading

import pytest

from core.data.records import new_record
from core.data.store import DatasetStore
from core.errors import StudioError
from core.recipe import Recipe, RecipeStore


def test_two_stores_saving_a_recipe_at_once_make_two_versions(project):
    RecipeStore(project).save(Recipe(), note="first")
    both_read = threading.Barrier(2, timeout=10)
    stores = [RecipeStore(project), RecipeStore(project)]
    for store in stores:  # each reads the latest version, then waits until the other has read it too
        read = store.latest
        store.latest = lambda read=read: (found := read(), both_read.wait(), found)[0]
    numbers, errors = {}, []

    def save(i: int) -> None:
        try:
            numbers[i] = stores[i].save(Recipe().with_changes(adapter=f"session-{i}"), note=f"session {i}")
        except Exception as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)

    threads = [threading.Thread(target=save, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert errors == []
    assert sorted(numbers.values()) == [2, 3]
    saved = {v.number: v.recipe.adapter for v in RecipeStore(project).versions()}
    assert saved == {1: None, numbers[0]: "session-0", numbers[1]: "session-1"}  # none lost


def test_two_sessions_creating_one_dataset_name_cannot_overwrite_its_kind(project, monkeypatch):
    """The second session checked before the first created it; its create must fail, not replace the kind."""
    first, second = DatasetStore(project), DatasetStore(project)
    first.create("faq", "sft", [new_record("sft", prompt="q", response="a")])
    monkeypatch.setattr(second, "exists", lambda name: False)  # its check ran before the first one's write
    with pytest.raises(StudioError, match="already exists"):
        second.create("faq", "eval")
    assert first.kind("faq") == "sft" and first.latest_version("faq") == 1


def test_a_dataset_version_someone_committed_is_never_replaced(project, monkeypatch):
    """Even when the save lock does not hold (a network file system), a version's metadata file is created
    exclusively: the later save is told, and the first version's metadata stays."""
    import contextlib

    from core.data import store as store_module

    store = DatasetStore(project)
    store.create("faq", "sft", [new_record("sft", prompt="q", response="a")])
    monkeypatch.setattr(store_module, "FileLock", lambda path: contextlib.nullcontext())
    real_latest = DatasetStore.latest_version
    monkeypatch.setattr(DatasetStore, "latest_version", lambda self, name: 1)  # a stale read: v2 is unseen
    theirs = [new_record("sft", prompt="theirs", response="a")]
    assert store.save("faq", theirs, base_version=1, note="theirs") == 2
    with pytest.raises(StudioError, match="Someone saved"):
        store.save("faq", [new_record("sft", prompt="mine", response="b")], base_version=1, note="mine")
    monkeypatch.setattr(DatasetStore, "latest_version", real_latest)
    assert [v.note for v in store.versions("faq")] == ["Created", "theirs"]
    assert store.load("faq", 2)[0] == theirs  # their records too, not only their metadata
