"""Compiled serving artefacts: a model and its weights as one `jax.export` file.

``export_model`` serialises ``L -> ab`` (the network, its weights, the ab-bin decode at the
weights' temperature) with symbolic batch, height and width (multiples of the model's stride)
for CPU and CUDA. The file is a small header (magic, JSON metadata with the payload's sha256)
and the payload ``jax.export.Exported.serialize()`` wrote; ``load_exported`` reads it back
with nothing but JAX and NumPy, and ``ExportedModel`` runs it wherever colorjax expects a
model (``Colorizer``, ``colorjax serve --exported``).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from colorjax.errors import ConfigError, WeightsError
from colorjax.fileio import atomic_write_bytes

MAGIC = b"CJXEXPRT"
FORMAT_VERSION = 1
SUFFIX = ".jaxexport"
DEFAULT_PLATFORMS = ("cpu", "cuda")
_LENGTH = struct.Struct("<Q")  # header length, little-endian uint64


def export_model(
    model: Any,
    variables: Any,
    meta: dict[str, Any],
    *,
    temperature: float,
    platforms: tuple[str, ...] = DEFAULT_PLATFORMS,
) -> tuple[bytes, dict[str, Any]]:
    """(payload, header) of `L (N, s*h, s*w, 1) -> ab (N, s*h, s*w, 2)` in normalised units.

    N, h and w are symbolic: one artefact serves every batch and every size the stride
    divides. Models that take colour hints get (hint_ab, hint_mask) inputs of the same size.
    """
    from jax import export

    from colorjax.models import model_contract
    from colorjax.models.predict import predict_ab

    contract = model_contract(model)
    s = contract.stride
    l_spec = jax.ShapeDtypeStruct(export.symbolic_shape(f"b, {s}*h, {s}*w, 1"), jnp.float32)
    if contract.takes_hints:
        hint_shape = export.symbolic_shape(f"b, {s}*h, {s}*w, 2", scope=l_spec.shape[0].scope)
        mask_shape = (*hint_shape[:3], 1)
        specs = (
            l_spec,
            jax.ShapeDtypeStruct(hint_shape, jnp.float32),
            jax.ShapeDtypeStruct(mask_shape, jnp.float32),
        )

        def fn(l_norm: jax.Array, hint_ab: jax.Array, mask: jax.Array) -> jax.Array:
            return predict_ab(model, variables, l_norm, hints=(hint_ab, mask)).astype(jnp.float32)
    else:
        specs = (l_spec,)

        def fn(l_norm: jax.Array) -> jax.Array:
            ab = predict_ab(model, variables, l_norm, temperature=temperature)
            return ab.astype(jnp.float32)

    exported = export.export(jax.jit(fn), platforms=platforms)(*specs)
    payload = bytes(exported.serialize())
    header = {
        "format_version": FORMAT_VERSION,
        "name": meta.get("name"),
        "model": meta.get("model"),
        "working_size": int(meta["working_size"]),
        "stride": int(s),
        "takes_hints": bool(contract.takes_hints),
        "temperature": float(temperature),
        "platforms": list(platforms),
        "inputs": "L / 50 - 1 (N, H, W, 1)" + (", hint ab / 110, hint mask" if specs[1:] else ""),
        "outputs": "ab / 110 (N, H, W, 2)",
        "jax_version": jax.__version__,
        "payload_sha256": hashlib.sha256(payload).hexdigest(),
    }
    return payload, header


def save_exported(path: str | os.PathLike, payload: bytes, header: dict[str, Any]) -> Path:
    """Write header and payload as one file, atomically (a temporary name, then a rename)."""
    path = Path(path)
    head = json.dumps(header, sort_keys=True).encode("utf-8")
    atomic_write_bytes(path, MAGIC + _LENGTH.pack(len(head)) + head + payload)
    return path


def read_exported(path: str | os.PathLike) -> tuple[dict[str, Any], bytes]:
    """(header, payload) of a .jaxexport file; WeightsError naming the fault if it is not one."""
    path = Path(path)
    try:
        blob = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read exported model {path}: {err.strerror or err}") from err
    fixed = len(MAGIC) + _LENGTH.size
    if len(blob) < fixed or not blob.startswith(MAGIC):
        raise WeightsError(
            f"{path} is not a colorjax exported model (no {MAGIC.decode()} header); make one "
            "with `colorjax export NAME --out FILE.jaxexport`"
        )
    (length,) = _LENGTH.unpack(blob[len(MAGIC) : fixed])
    try:
        header = json.loads(blob[fixed : fixed + length].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise WeightsError(f"{path} has a damaged header ({err}); export the model again") from err
    payload = blob[fixed + length :]
    if header.get("format_version") != FORMAT_VERSION:
        raise WeightsError(
            f"{path} has format version {header.get('format_version')!r}; this colorjax reads "
            f"{FORMAT_VERSION}: export the model again with this version"
        )
    if hashlib.sha256(payload).hexdigest() != header.get("payload_sha256"):
        raise WeightsError(
            f"{path} is damaged (its payload does not match the sha256 in its header: a "
            "truncated copy?); copy or export it again"
        )
    return header, payload


def load_exported(path: str | os.PathLike) -> ExportedModel:
    """The artefact `colorjax export` wrote, ready to run (needs only JAX and NumPy)."""
    from jax import export

    header, payload = read_exported(path)
    try:
        exported = export.deserialize(bytearray(payload))
    except Exception as err:  # noqa: BLE001 - jax raises several types for a bad payload
        raise WeightsError(
            f"{path} could not be deserialised by this JAX {jax.__version__} (written by "
            f"{header.get('jax_version')}): {err}; export it again with this version"
        ) from err
    return ExportedModel(exported, header, os.fspath(path))


class ExportedModel:
    """A deserialised artefact: call it on L (and hints) or hand it to a Colorizer as a model.

    It declares a model contract (regression: it outputs decoded ab at the input's size) and
    an ``apply(variables, l_norm, *hints, train=False)`` that ignores the (empty) variables,
    so colorjax's inference code runs it exactly as a Flax model.
    """

    def __init__(self, exported: Any, header: dict[str, Any], path: str) -> None:
        self.exported = exported
        self.header = header
        self.path = path

    @property
    def contract(self) -> Any:
        """The contract colorjax's inference reads: stride, hints; ab already decoded."""
        from colorjax.models import ModelContract

        return ModelContract(
            task="regression",
            stride=int(self.header["stride"]),
            takes_hints=bool(self.header["takes_hints"]),
        )

    @property
    def meta(self) -> dict[str, Any]:
        """What colorjax.load_pretrained's meta holds, for the Colorizer and the server."""
        return {
            "name": self.header.get("name"),
            "model": self.header.get("model"),
            "working_size": int(self.header["working_size"]),
            "temperature": float(self.header["temperature"]),
            "exported": self.path,
        }

    def __call__(self, l_norm: Any, *hints: Any) -> jax.Array:
        """Normalised ab for normalised L (N, H, W, 1), H and W multiples of the stride."""
        stride = int(self.header["stride"])
        shape = tuple(getattr(l_norm, "shape", ()))
        if len(shape) != 4 or shape[-1] != 1 or shape[1] % stride or shape[2] % stride:
            raise ConfigError(
                f"the exported model takes L of shape (N, H, W, 1) with H and W multiples of "
                f"{stride}, got {shape}; pad or resize the input"
            )
        return self.exported.call(l_norm, *hints)

    def apply(self, variables: Any, l_norm: Any, *hints: Any, train: bool = False) -> jax.Array:
        """Flax-style apply for inference code; `variables` is unused (the weights are inside)."""
        del variables, train
        return self(l_norm, *hints)

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: object) -> bool:
        return other is self
