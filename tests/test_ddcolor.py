"""DDColor's Flax port against the official PyTorch DDColor from the modelscope wheel."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_convnext import official_convnext

from colorjax.errors import WeightsError
from colorjax.models.ddcolor import (
    DDColor,
    PixelShuffleUp,
    blur,
    pixel_shuffle,
    state_dict_to_params,
)

UNUSED = ("encoder.arch.norm.", "encoder.arch.head_cls.")  # ConvNeXt's classifier, unused


def official_ddcolor():
    """(torch, the official DDColor module): its files loaded by path, as the benchmarks do."""
    torch, _ = official_convnext()  # skips without torch or the wheel; stands in for timm
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "torch_models.py"
    spec = importlib.util.spec_from_file_location("colorjax_torch_models", path)
    if "colorjax_torch_models" not in sys.modules:
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    return torch, sys.modules["colorjax_torch_models"].official_ddcolor()


def test_pixel_shuffle_and_blur_are_pytorchs():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).normal(size=(2, 12, 3, 5)).astype(np.float32)  # NCHW
    want = torch.nn.PixelShuffle(2)(torch.from_numpy(x)).numpy()
    got = pixel_shuffle(x.transpose(0, 2, 3, 1), 2)
    np.testing.assert_allclose(np.asarray(got), want.transpose(0, 2, 3, 1), atol=0)
    pool = torch.nn.Sequential(torch.nn.ReplicationPad2d((1, 0, 1, 0)), torch.nn.AvgPool2d(2, 1))
    want = pool(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(
        np.asarray(blur(x.transpose(0, 2, 3, 1))), want.transpose(0, 2, 3, 1), atol=1e-6
    )


@pytest.mark.slow
@pytest.mark.parametrize(("h", "w"), [(512, 512), (256, 384)])
def test_equals_the_official_ddcolor_tiny(h, w):
    _check_equals_official("tiny", h, w, 55.0e6)


def test_equals_the_official_ddcolor_large():
    # ConvNeXt-L's 227.9M parameters at a small non-square size (the large net at 512 is the
    # benchmark's work, not a test's).
    _check_equals_official("large", 64, 96, 227.9e6)


def _check_equals_official(variant: str, h: int, w: int, count: float) -> None:
    torch, official = official_ddcolor()
    torch.manual_seed(0)
    encoder = {"tiny": "convnext-t", "large": "convnext-l"}[variant]
    net = official.DDColor(encoder_name=encoder, input_size=(h, w), num_queries=100)
    with torch.no_grad():  # layer scales away from their 1e-6 init
        for name, p in net.named_parameters():
            if name.endswith("gamma") and p.ndim == 1 and p.numel() > 1:
                p.copy_(torch.randn_like(p) * 0.3)
    # A few training-mode passes: spectral norm's power iteration converges u and v (random
    # ones make sigma tiny and the activations explode), BatchNorm gathers real statistics.
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.rand(2, 3, h, w))
    net.eval()
    used = [p for n, p in net.named_parameters() if not n.startswith(UNUSED)]
    assert sum(p.numel() for p in used) == pytest.approx(count, rel=0.001)
    rng = np.random.default_rng(2)
    l_norm = rng.uniform(-1, 1, (1, h, w, 1)).astype(np.float32)
    model = DDColor(variant)
    # The official forward normalises a 3-channel input itself: it gets the gray RGB.
    img = np.array(model.apply({"params": {}}, l_norm, method=DDColor.gray_rgb))
    with torch.no_grad():
        want = net(torch.from_numpy(img.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)
    state = {k: v.numpy() for k, v in net.state_dict().items()}
    params = state_dict_to_params({"params": state}, variant)  # the wrapper some files carry
    flax_count = sum(np.size(v) for v in jax.tree_util.tree_leaves(params))
    # Parameter for parameter, but for the classifier ConvNeXt keeps and DDColor never uses.
    assert flax_count == sum(p.numel() for p in used)
    got = jax.jit(lambda x: model.apply({"params": params}, x))(l_norm)
    want = np.clip(want, -128, 127) / 110.0
    scale = float(np.abs(want).max())
    assert scale > 1e-3 and np.std(want) > 0.1 * scale  # a varied output, not a constant
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-3 * scale, rtol=1e-3)


def test_a_foreign_state_dict_is_refused():
    with pytest.raises(WeightsError, match="not a DDColor ConvNeXt of this size|has no"):
        state_dict_to_params({"encoder.arch.x": np.zeros(3)}, "tiny")


def test_folded_head_equals_maps_then_refine_conv_outputs_and_gradients():
    # DDColor folds its refine conv's map weights into the colour embeddings and projects
    # inside the last upsampler (before shuffle + blur); the official order builds the 100
    # full-resolution maps first. Same function: outputs and every gradient agree.
    n, q, c, h, w = 2, 5, 8, 3, 4
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, h, w, 6)).astype(np.float32)
    embed = rng.standard_normal((n, q, c)).astype(np.float32)
    img = rng.standard_normal((n, 4 * h, 4 * w, 3)).astype(np.float32)
    kernel = rng.standard_normal((q + 3, 2)).astype(np.float32)
    bias = rng.standard_normal(2).astype(np.float32)
    shuf = PixelShuffleUp(c, 4, batch_norm=False)
    v = shuf.init(jax.random.key(0), x)
    v = jax.tree.map(lambda a: a + 0.3 * rng.standard_normal(a.shape).astype(np.float32), v)
    cot = rng.standard_normal((n, 4 * h, 4 * w, 2)).astype(np.float32)

    def folded(v, x, embed, kernel):
        head = jnp.einsum("nqc,qk->nck", embed, kernel[:q])
        return shuf.apply(v, x, head) + img @ kernel[q:] + bias

    def official(v, x, embed, kernel):
        maps = jnp.einsum("nqc,nhwc->nhwq", embed, shuf.apply(v, x))
        return jnp.concatenate([maps, img], axis=-1) @ kernel + bias

    def value_and_grads(fn):
        loss = lambda *a: jnp.sum(fn(*a) * cot)  # noqa: E731
        return jax.jit(fn)(v, x, embed, kernel), jax.jit(jax.grad(loss, (0, 1, 2, 3)))(
            v, x, embed, kernel
        )

    (got, got_g), (want, want_g) = value_and_grads(folded), value_and_grads(official)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * np.abs(b).max()),
        got_g,
        want_g,
    )
