"""The loop's one rule for periodic actions, and a run that logs, evaluates and saves by it."""

from __future__ import annotations

import json

import pytest

from colorjax.checkpoint import CheckpointStore
from colorjax.config import ExperimentConfig
from colorjax.parallel import make_mesh
from colorjax.train.loop import train_and_evaluate
from colorjax.train.run import due


def test_due_every_n_steps_and_always_after_the_last():
    assert [s for s in range(1, 11) if due(s, 3, 10)] == [3, 6, 9, 10]
    assert [s for s in range(1, 7) if due(s, 2, 6)] == [2, 4, 6]  # the last step counted once
    assert [s for s in range(1, 4) if due(s, 1, 3)] == [1, 2, 3]
    assert [s for s in range(1, 5) if due(s, 100, 4)] == [4]  # longer than the run: the end


@pytest.mark.parametrize("every", [0, -1])
def test_due_never_when_disabled_even_at_the_last_step(every):
    assert not any(due(s, every, 5) for s in range(0, 6))


def test_due_never_at_step_zero():
    # Step 0 is before any update: a fresh run has nothing to save, a resumed one saved it.
    assert not due(0, 1, 10) and not due(0, 5, 0)


def test_a_run_logs_evaluates_and_saves_at_the_due_steps(tmp_path):
    c = ExperimentConfig()
    c.model.name = "colornet-tiny"
    c.data.source = "embedded"
    c.data.val_fraction = 0.2
    c.data.image_size = 16
    c.train.batch_size = 2
    c.train.steps = 5
    c.train.log_every = 2
    c.train.eval_every = 3
    c.train.eval_batch_size = 2
    c.train.checkpoint_every = 2
    c.train.keep = 10
    c.train.keep_best = False
    c.train.progress = False
    result = train_and_evaluate(c, tmp_path / "run", mesh=make_mesh(1))
    assert result.step == 5 and result.eval_metrics is not None
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    train_steps = [r["step"] for r in records if r["kind"] == "train"]
    eval_steps = [r["step"] for r in records if r["kind"] == "eval"]
    assert train_steps == [2, 4, 5] and eval_steps == [3, 5]
    assert all(r["images_per_sec"] > 0 for r in records if r["kind"] == "train")
    store = CheckpointStore(tmp_path / "run", read_only=True, async_save=False)
    try:
        assert store.all_steps() == [2, 4, 5]
    finally:
        store.close()
