"""Experiment configs: JSON round trip, typed `--set` overrides, clear errors for bad keys."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from colorjax.config import (
    ExperimentConfig,
    apply_override,
    list_presets,
    load_config,
    valid_keys,
)
from colorjax.errors import ConfigError

EXPERIMENTS = sorted((Path(__file__).resolve().parents[1] / "experiments").glob("*.py"))
PRESETS = list_presets()


def test_round_trip_through_json():
    c = ExperimentConfig()
    c.model.overrides = {"width": 8}
    c.optim.grad_clip_norm = 0.5
    again = ExperimentConfig.from_dict(json.loads(c.to_json()))
    assert again == c


def test_overrides_are_parsed_with_the_field_type():
    c = ExperimentConfig()
    for item in [
        "train.steps=17",
        "optim.learning_rate=3e-4",
        "train.progress=false",
        "optim.grad_clip_norm=none",
        "data.drop_gray_threshold=2.5",
        "data.source=folder:/x=y",
        "model.overrides.width=24",
    ]:
        apply_override(c, item)
    assert c.train.steps == 17 and isinstance(c.train.steps, int)
    assert c.optim.learning_rate == pytest.approx(3e-4)
    assert c.train.progress is False
    assert c.optim.grad_clip_norm is None
    assert c.data.drop_gray_threshold == 2.5
    assert c.data.source == "folder:/x=y"  # only the first '=' splits
    assert c.model.overrides == {"width": 24}
    apply_override(c, 'model.overrides={"depth": 2}')
    assert c.model.overrides == {"depth": 2}


@pytest.mark.parametrize(
    "item",
    [
        "train.stepz=3",
        "nosuch.key=1",
        "train=3",
        "train.steps",
        "train.steps=abc",
        "train.progress=maybe",
    ],
)
def test_bad_overrides_raise_config_error(item):
    with pytest.raises(ConfigError) as info:
        apply_override(ExperimentConfig(), item)
    if "stepz" in item or "nosuch" in item:
        assert "train.steps" in str(info.value)  # lists the valid keys


def test_from_dict_rejects_unknown_keys_and_wrong_types():
    with pytest.raises(ConfigError, match="train.bogus"):
        ExperimentConfig.from_dict({"train": {"bogus": 1}})
    with pytest.raises(ConfigError, match="train.steps"):
        ExperimentConfig.from_dict({"train": {"steps": "ten"}})


def test_valid_keys_cover_every_section():
    keys = valid_keys()
    for key in [
        "model.name",
        "data.source",
        "optim.learning_rate",
        "train.batch_size",
        "loss.lambda_l1",
    ]:
        assert key in keys


@pytest.mark.parametrize("path", [*EXPERIMENTS, *PRESETS], ids=lambda p: getattr(p, "stem", p))
def test_every_experiment_loads_and_names_a_registered_model(path):
    from colorjax.models import get_spec

    c = load_config(path, ["train.steps=5"])
    assert c.train.steps == 5
    get_spec(c.model.name)
    assert ExperimentConfig.from_dict(c.to_dict()) == c


def test_load_config_validates_choices(tmp_path):
    with pytest.raises(ConfigError, match="train.dtype"):
        load_config(EXPERIMENTS[0], ["train.dtype=float16"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.py")


def test_presets_ship_in_the_package_and_derive_from_the_base():
    from colorjax.configs import default

    for name in ("default", "demo_cpu", "colornet_imagenet", "zhang_eccv16_finetune"):
        assert name in PRESETS
    assert load_config("default") == default.get_config() == ExperimentConfig()
    # Every Tiny ImageNet experiment shares the base's data block and evaluation set.
    base = load_config("tinyimagenet")
    runs = [load_config(p) for p in EXPERIMENTS if p.stem.startswith("tinyimagenet_")]
    assert len(runs) >= 5  # the committed Tiny ImageNet experiments, none skipped
    for c in runs:
        # The same photos and eval set; the training size is the model's choice (the ImageNet
        # encoder upsamples the 64 px photos to 128).
        same_size = dataclasses.replace(base.data, image_size=c.data.image_size)
        assert c.data == same_size and c.data.source.endswith("tiny-imagenet/train")
        assert c.data.image_size in (64, 128)
        assert (c.train.eval_batch_size, c.train.eval_batches) == (64, 2)


def test_train_a_preset_by_name_from_any_folder(tmp_path, monkeypatch, capsys):
    from colorjax import cli

    monkeypatch.chdir(tmp_path)  # no experiments/ folder here: the name must come from the package
    args = ["train", "--config", "demo_cpu", "--workdir", "run", "--no-progress"]
    small = ["train.steps=2", "train.batch_size=2", "data.image_size=16", "train.eval_every=0"]
    assert cli.main(args + [f"--set={item}" for item in small]) == 0
    assert "trained colornet-tiny to step 2" in capsys.readouterr().out
    saved = ExperimentConfig.from_dict(json.loads((tmp_path / "run" / "config.json").read_text()))
    assert saved == load_config("demo_cpu", [*small, "train.progress=false"])
