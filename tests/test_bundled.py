"""The bundled weights verify, load offline, and colour real photos better than gray."""

from pathlib import Path

import pytest

from colorjax import hub
from colorjax.data import make_source
from colorjax.evaluate import evaluate

TINY_VAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "tiny-imagenet" / "val"
BUNDLED = [e["name"] for e in hub.load_manifest()["weights"] if e["urls"][0].startswith("bundled:")]


def test_each_family_has_a_bundled_default():
    families = {hub.default_entry(f)["family"] for f in ("colornet", "deepcolorization")}
    assert families == {"colornet", "deepcolorization"}
    assert all(hub.default_entry(f)["name"] in BUNDLED for f in families)


def test_bundled_weights_fit_the_size_budget():
    sizes = [e["size"] for e in hub.load_manifest()["weights"] if e["name"] in BUNDLED]
    assert sum(sizes) <= 25 * 10**6


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_weights_colour_real_photos(name, monkeypatch, tmp_path):
    # Offline and with an empty cache: bundled weights need neither network nor cache.
    monkeypatch.setenv("COLORJAX_OFFLINE", "1")
    monkeypatch.setenv("COLORJAX_HOME", str(tmp_path))
    model, variables, meta = hub.load_pretrained(name)
    photos = make_source("embedded", split="all")
    summary = evaluate(model, variables, meta, [photos[i] for i in range(len(photos))])
    pred, gray = summary["model"], summary["baseline"]
    # Real colour, not near-gray output: a clear share of the truth's colourfulness ...
    assert pred["colorfulness_pred"] > 0.2 * pred["colorfulness_true"]
    # ... and closer to the true colours than the grayscale baseline on the same photos.
    assert pred["auc"] > gray["auc"]
    assert pred["psnr"] > gray["psnr"]


@pytest.mark.skipif(not TINY_VAL.is_dir(), reason="needs ../shared/data/tiny-imagenet")
@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_weights_on_held_out_tiny_imagenet(name):
    model, variables, meta = hub.load_pretrained(name)
    photos = make_source(f"folder:{TINY_VAL}", split="all")
    summary = evaluate(model, variables, meta, (photos[i] for i in range(256)), resolution=64)
    pred, gray = summary["model"], summary["baseline"]
    assert pred["colorfulness_pred"] > 0.2 * pred["colorfulness_true"]
    assert pred["auc"] > gray["auc"]
