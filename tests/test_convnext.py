"""ConvNeXt (DDColor's encoder) against the official PyTorch code from the modelscope wheel."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
import types
from pathlib import Path

import jax
import numpy as np
import pytest

from colorjax.errors import ConfigError, WeightsError
from colorjax.models.backbones.convnext import ConvNeXt, state_dict_to_params

OFFICIAL = "modelscope/models/cv/image_colorization/ddcolor/utils/convnext.py"


def test_four_maps_at_strides_4_to_32():
    model = ConvNeXt("tiny")
    x = np.zeros((2, 64, 96, 3), np.float32)
    shapes = jax.eval_shape(lambda: model.init_with_output(jax.random.PRNGKey(0), x)[0])
    assert [s.shape for s in shapes] == [
        (2, 16, 24, 96),
        (2, 8, 12, 192),
        (2, 4, 6, 384),
        (2, 2, 3, 768),
    ]


def test_bad_inputs_and_variants_are_refused():
    with pytest.raises(ConfigError, match="multiples of 32"):
        ConvNeXt().init(jax.random.PRNGKey(0), np.zeros((1, 40, 64, 3), np.float32))
    with pytest.raises(ConfigError, match="unknown ConvNeXt variant 'huge'"):
        ConvNeXt("huge").init(jax.random.PRNGKey(0), np.zeros((1, 32, 32, 3), np.float32))
    with pytest.raises(WeightsError, match="the state dict has no 'downsample_layers"):
        state_dict_to_params({}, "tiny")


def official_convnext():
    """The official module, loaded by path from the installed modelscope wheel (no import of
    modelscope itself); timm's two helpers are stood in for (timm needs torchvision)."""
    torch = pytest.importorskip("torch")
    try:
        dist = importlib.metadata.distribution("modelscope")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("needs the modelscope wheel: pip install 'colorjax[reference]'")
    path = Path(dist.locate_file(OFFICIAL))
    if not path.is_file():
        pytest.skip(f"this modelscope has no {OFFICIAL}")
    try:
        import timm.models.layers  # noqa: F401 - the real one, where it imports
    except Exception:  # noqa: BLE001 - absent, or present without torchvision
        layers = types.ModuleType("timm.models.layers")
        layers.DropPath = lambda p: torch.nn.Identity()
        layers.trunc_normal_ = torch.nn.init.trunc_normal_
        sys.modules.setdefault("timm", types.ModuleType("timm"))
        sys.modules.setdefault("timm.models", types.ModuleType("timm.models"))
        sys.modules["timm.models.layers"] = layers
    spec = importlib.util.spec_from_file_location("ddcolor_convnext", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return torch, module


@pytest.mark.parametrize(("h", "w"), [(64, 96), (128, 128)])
def test_equals_the_official_convnext_tiny(h, w):
    torch, official = official_convnext()
    torch.manual_seed(0)
    net = official.ConvNeXt().eval()
    with torch.no_grad():  # non-trivial layer scales and norms, not the 1e-6 / identity init
        for name, p in net.named_parameters():
            if name.endswith("gamma") or ".norm" in name or name.startswith("norm"):
                p.copy_(torch.randn_like(p) * 0.5 + (1.0 if name.endswith("weight") else 0.0))
    captured = {}
    for i in range(4):
        getattr(net, f"norm{i}").register_forward_hook(
            lambda _m, _inp, out, i=i: captured.__setitem__(i, out.detach().numpy())
        )
    x = np.random.default_rng(1).normal(size=(2, 3, h, w)).astype(np.float32)
    with torch.no_grad():
        net(torch.from_numpy(x))
    state = {k: v.numpy() for k, v in net.state_dict().items()}
    params = state_dict_to_params(state, "tiny")
    ours = ConvNeXt("tiny").apply({"params": params}, x.transpose(0, 2, 3, 1))
    for i, feature in enumerate(ours):
        want = captured[i].transpose(0, 2, 3, 1)
        np.testing.assert_allclose(np.asarray(feature), want, atol=2e-4, rtol=1e-4)
