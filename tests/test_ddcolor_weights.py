"""DDColor's official weights: manifest entries, trust-on-first-download, conversion, colorize.

The files are synthetic `pytorch_model.bin`s with the official key names: the official DDColor
(modelscope's files, loaded by path) with random weights, saved by torch. The real files cannot
be downloaded here (no hub access); their entries are checked for what they promise.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from skimage import color as skcolor
from test_ddcolor import official_ddcolor

import colorjax
from colorjax import weights
from colorjax.errors import WeightsError
from colorjax.inference.colorizer import make_colorizer
from colorjax.weights import download, pth_convert
from colorjax.weights.manifest import get_tagged
from colorjax.weights.pth import load_state_dict

FAST = {"retries": 1, "backoff": 0.01, "timeout": 10.0, "progress": False}
SIZE = 64  # the test entries' working size: small, so the network compiles and runs fast


def _official_tiny(seed: int):  # noqa: ANN202
    """The official DDColor-T, random weights made well-behaved (see test_ddcolor)."""
    torch, official = official_ddcolor()
    torch.manual_seed(seed)
    net = official.DDColor(encoder_name="convnext-t", input_size=(SIZE, SIZE), num_queries=100)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("gamma") and p.ndim == 1 and p.numel() > 1:
                p.copy_(torch.randn_like(p) * 0.3)
    net.train()
    with torch.no_grad():  # spectral norm's u, v and BatchNorm's statistics settle
        for _ in range(2):
            net(torch.rand(2, 3, SIZE, SIZE))
    return torch, net.eval()


@pytest.fixture(scope="module")
def official_files(tmp_path_factory):  # noqa: ANN001, ANN201
    """Two synthetic official files (seeds 0 and 1) and the seed-0 network."""
    folder = tmp_path_factory.mktemp("hub")
    torch, net = _official_tiny(0)
    first = folder / "pytorch_model.bin"
    torch.save(net.state_dict(), first)
    _, other = _official_tiny(1)
    second = folder / "other.bin"
    torch.save({"params": other.state_dict()}, second)  # the wrapper the .pt releases carry
    return torch, net, first, second


def _shown_mb(path: Path) -> float:
    """The size as the hub shows it: decimal MB, three significant digits."""
    return float(f"{path.stat().st_size / 1e6:.3g}")


def _entry(path: Path, **changes) -> dict:  # noqa: ANN003
    entry = {
        "name": "ddcolor-test.official",
        "model": "ddcolor-tiny",
        "family": "ddcolor",
        "format": "pytorch-state-dict",
        "urls": [path.as_uri()],
        "sha256": None,
        "working_size": SIZE,
        "resize": "stretch",
    }
    if "hub_size_mb" not in changes:
        entry["hub_size_mb"] = _shown_mb(path)
    return {**entry, **changes}


def _photo() -> np.ndarray:
    """An 80 x 120 colour photo-like image: smooth gradients and a few blocks."""
    y, x = np.mgrid[0:80, 0:120] / np.array([80.0, 120.0])[:, None, None]
    rgb = np.stack([x, y, 1 - x * y], axis=-1)
    rgb[20:50, 30:70] = (0.8, 0.2, 0.1)
    return np.round(rgb * 255).astype(np.uint8)


def test_unpinned_download_is_checked_converted_recorded_and_colorizes(
    tmp_path, official_files, monkeypatch
) -> None:  # noqa: ANN001
    import cv2

    torch, net, first, _ = official_files
    manifest = {"weights": [_entry(first)]}
    env = {"COLORJAX_HOME": str(tmp_path / "home")}
    path = weights.resolve_weights("ddcolor-test.official", manifest, env=env, **FAST)
    cfg = weights.get_entry("ddcolor-test.official", manifest)
    record = download.first_download_record(cfg, env)
    import hashlib

    digest = hashlib.sha256(first.read_bytes()).hexdigest()
    assert record.read_text().strip() == digest  # the first download's hash, kept
    meta = weights.read_metadata(path)
    assert meta["model"] == "ddcolor-tiny" and meta["resize"] == "stretch"
    assert meta["converted_from"]["sha256"] == digest
    assert meta["converted_from"]["sha256_pinned"] is False
    assert not list(path.parent.glob("*.pth"))  # the download is gone once converted

    monkeypatch.setenv("COLORJAX_HOME", env["COLORJAX_HOME"])
    monkeypatch.setenv("COLORJAX_OFFLINE", "1")  # the converted cache alone serves it now
    model, variables, meta = colorjax.load_pretrained("ddcolor-test.official", manifest=manifest)
    colorizer = make_colorizer(model, variables, meta)
    assert colorizer.resize == "stretch" and colorizer.working_size == SIZE
    rgb = _photo()
    ((l_small, ab_small),) = colorizer.predict_small([rgb])
    assert l_small.shape == ab_small.shape[:2] == (SIZE, SIZE)  # stretched, not padded
    # The official inference's network input from the same working-size L: (L, 0, 0) in Lab
    # to RGB by OpenCV; the official module normalises it itself.
    lab = np.concatenate([(l_small[..., None] + 1) * 50, np.zeros((SIZE, SIZE, 2))], axis=-1)
    gray = cv2.cvtColor(lab.astype(np.float32), cv2.COLOR_LAB2RGB)
    with torch.no_grad():
        want = net(torch.from_numpy(gray.transpose(2, 0, 1))[None]).numpy()[0].transpose(1, 2, 0)
    want = np.clip(want, -128, 127)
    scale = float(np.abs(want).max())
    assert np.std(want) > 0.05 * scale  # a varied output
    np.testing.assert_allclose(ab_small * 110, want, atol=2e-3 * scale + 0.05)

    out = colorizer.colorize(rgb)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    l_in = skcolor.rgb2lab(rgb)[..., 0]
    l_out = skcolor.rgb2lab(out)[..., 0]
    assert np.mean(np.abs(l_out - l_in)) < 1.0  # the photo's own lightness is kept
    # Its colour is the prediction's, resized back (the mean chroma of the two agree).
    ab_out = skcolor.rgb2lab(out)[..., 1:].reshape(-1, 2)
    np.testing.assert_allclose(ab_out.mean(0), (ab_small * 110).reshape(-1, 2).mean(0), atol=0.3)

    # The all-on-device path (`colorjax eval`) stretches too, and agrees up to resampling.
    from colorjax.inference import predict_rgb

    on_device = np.asarray(predict_rgb(model, variables, rgb[None], SIZE, resize="stretch"))[0]
    assert np.abs(on_device.astype(int) - out).mean() < 2.0
    for shape in ((50, 200, 3), (300, 90, 3)):  # any aspect: still the one square bucket
        assert colorizer.colorize(np.full(shape, 128, np.uint8)).shape == shape
    assert colorizer.num_compilations == 1

    # The CLI names the same weights; its output is the API's.
    from PIL import Image

    from colorjax import cli

    src = tmp_path / "photo.png"
    Image.fromarray(rgb).save(src)
    manifest_file = tmp_path / "manifest.json"
    manifest_file.write_text(json.dumps(manifest))
    argv = ["colorize", str(src), "-o", str(tmp_path / "out"), "--manifest", str(manifest_file)]
    assert cli.main([*argv, "--weights", "ddcolor-test.official"]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out" / "photo.png")), out)


def test_a_later_download_must_match_the_first(tmp_path, official_files) -> None:  # noqa: ANN001
    _, _, first, second = official_files
    src = tmp_path / "pytorch_model.bin"
    src.write_bytes(first.read_bytes())
    manifest = {"weights": [_entry(src)]}
    env = {"COLORJAX_HOME": str(tmp_path / "home")}
    path = weights.resolve_weights("ddcolor-test.official", manifest, env=env, **FAST)
    path.unlink()  # the cache is lost; the hub now serves another file
    src.write_bytes(second.read_bytes())
    manifest = {"weights": [_entry(src, hub_size_mb=_shown_mb(src))]}
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        weights.resolve_weights("ddcolor-test.official", manifest, env=env, **FAST)
    assert not path.exists()
    with pytest.raises(WeightsError, match="sha256 mismatch"):  # an import is held to it too
        pth_convert.import_pth(src, "ddcolor-test.official", manifest, env=env)
    assert src.exists()  # a user's own file is never deleted


def test_a_first_download_of_the_wrong_size_is_deleted_and_nothing_recorded(
    tmp_path, official_files
) -> None:  # noqa: ANN001
    _, _, first, _ = official_files
    manifest = {"weights": [_entry(first, hub_size_mb=_shown_mb(first) + 3)]}
    env = {"COLORJAX_HOME": str(tmp_path / "home")}
    with pytest.raises(WeightsError, match="hub lists"):
        weights.resolve_weights("ddcolor-test.official", manifest, env=env, **FAST)
    cfg = weights.get_entry("ddcolor-test.official", manifest)
    assert not download.first_download_record(cfg, env).exists()
    assert not [p for p in (tmp_path / "home" / "weights").iterdir() if p.suffix != ".lock"]
    assert first.exists()


def test_a_wrapped_file_converts_and_a_foreign_one_is_refused(tmp_path, official_files) -> None:  # noqa: ANN001
    torch, _, _, second = official_files
    variables = pth_convert.state_dict_to_variables(load_state_dict(second), "ddcolor-tiny", SIZE)
    assert set(variables["params"]) >= {"encoder", "decoder_color_decoder", "refine_net_0_0"}
    # A state dict of the right keys but the large encoder's shapes is another size.
    foreign = tmp_path / "zhang.bin"
    torch.save({"model1.0.weight": torch.zeros(64, 1, 3, 3)}, foreign)
    manifest = {"weights": [_entry(foreign)]}
    env = {"COLORJAX_HOME": str(tmp_path / "home")}
    with pytest.raises(WeightsError, match="not an official DDColor|has no"):
        weights.resolve_weights("ddcolor-test.official", manifest, env=env, **FAST)
    cfg = weights.get_entry("ddcolor-test.official", manifest)
    assert not download.first_download_record(cfg, env).exists()  # nothing trusted
    assert not download.cache_path(cfg, env).exists()


def test_unpinned_entries_are_only_for_official_pytorch_files(tmp_path) -> None:  # noqa: ANN001
    entry = _entry(tmp_path / "x.bin", hub_size_mb=1.0)
    entry["format"] = "colorjax-weights"
    with pytest.raises(WeightsError, match="sha256 is null"):
        weights.load_manifest({"weights": [entry]})
    entry = _entry(tmp_path / "x.bin", hub_size_mb=1.0)
    del entry["hub_size_mb"]
    with pytest.raises(WeightsError, match="hub_size_mb"):
        weights.load_manifest({"weights": [entry]})


def test_packaged_manifest_lists_the_official_ddcolor_files() -> None:
    entries = {e["name"]: e for e in weights.load_manifest()["weights"]}
    expected = {
        "ddcolor-modelscope.official": ("ddcolor-large", "ddcolor_modelscope", 912),
        "ddcolor-paper.official": ("ddcolor-large", "ddcolor_paper", 912),
        "ddcolor-artistic.official": ("ddcolor-large", "ddcolor_artistic", 912),
        "ddcolor-paper-tiny.official": ("ddcolor-tiny", "ddcolor_paper_tiny", 220),
    }
    aliases = {e["aliases"][0]: e for e in entries.values() if e["aliases"]}
    for name, (model, repo, mb) in expected.items():
        entry = aliases[name]  # the names DDColor's model zoo uses; entries are arch.tag
        assert entry["name"] == f"{model}.{repo.split('_', 1)[1].replace('_tiny', '')}"
        assert weights.get_entry(name).name == entry["name"]
        assert entry["model"] == model and entry["family"] == "ddcolor"
        assert entry["urls"] == [f"hf://piddnad/{repo}/pytorch_model.bin"]
        assert entry["format"] == "pytorch-state-dict" and entry["licence"].startswith("Apache")
        assert entry["hub_size_mb"] == mb and entry["sha256"] is None and entry["sha256_note"]
        assert (entry["working_size"], entry["resize"]) == (512, "stretch")
        # The size is what the architecture holds in float32, within the hub's rounding and
        # the buffers and unused classifier the file also carries (the official modules'
        # state dicts are 220.2 and 911.7 MB).
        params = colorjax.models.count_params(
            colorjax.models.cost.abstract_variables(colorjax.models.build_model(model), 64)[
                "params"
            ]
        )
        assert abs(mb - params * 4 / 1e6) < 1.0, name
    default = weights.default_entry("ddcolor")
    assert default.name == "ddcolor-large.modelscope"
    assert weights.get_entry("ddcolor-tiny").name == "ddcolor-tiny.paper"
    assert weights.get_entry("ddcolor-large").name == "ddcolor-large.modelscope"
    cfg = get_tagged("ddcolor-large", "paper")
    assert download.cache_path(cfg, {"COLORJAX_HOME": "/c"}) == Path(
        "/c/weights/ddcolor-paper.official-unpinned.safetensors"
    )
