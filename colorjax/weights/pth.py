"""Read PyTorch ``.pth`` state dicts into NumPy without PyTorch and without running pickled code.

A ``.pth`` file is a pickle, and unpickling can call any importable function. This reader
never does: its unpickler resolves only the handful of globals a plain state dict needs, each
to a local stand-in that builds NumPy data, and refuses every other global *before* anything is
called, naming it. Both container formats PyTorch writes are read:

- zip (PyTorch >= 1.6): ``<dir>/data.pkl`` plus one raw little-endian file ``<dir>/data/<key>``
  per storage;
- legacy (older files such as Zhang et al.'s): five pickles in a row (magic number, protocol
  version, system info, the object, the storage keys), then each storage as an 8-byte element
  count followed by its raw bytes.

Tensors are rebuilt from (storage, offset, size, stride) with bounds checks, so a malformed
file raises :class:`~colorjax.errors.WeightsError` instead of reading outside its data.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import os
import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from colorjax.errors import WeightsError

__all__ = ["load_state_dict"]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

# torch.<Name>Storage -> NumPy dtype (bfloat16 through ml_dtypes, which JAX depends on).
_STORAGE_DTYPES = {
    "FloatStorage": "float32",
    "DoubleStorage": "float64",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
}


def _np_dtype(name: str) -> np.dtype:
    """NumPy dtype for a storage dtype name (little-endian, as PyTorch writes)."""
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name).newbyteorder("<")


@dataclasses.dataclass(frozen=True, slots=True)
class _StorageType:
    """Stand-in for a ``torch.<Name>Storage`` class (frozen: a pickle cannot alter it)."""

    name: str

    @property
    def dtype(self) -> str:
        """The element dtype name."""
        return _STORAGE_DTYPES[self.name]


class _Storage:
    """A storage named in the pickle; its bytes are attached after unpickling."""

    def __init__(self, key: str, dtype: str, numel: int) -> None:
        self.key, self.dtype, self.numel = key, dtype, numel
        self.array: np.ndarray | None = None


class _TensorRef:
    """The arguments of a tensor rebuild, turned into an array once the storages are read."""

    def __init__(self, storage: Any, offset: Any, size: Any, stride: Any) -> None:
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def materialise(self) -> np.ndarray:
        """Return a C-contiguous copy of the tensor, after checking it lies inside its storage."""
        storage = self.storage
        if not isinstance(storage, _Storage) or storage.array is None:
            raise WeightsError(
                "a tensor in the .pth file refers to no storage; the file is damaged"
            )
        size, stride, offset = self.size, self.stride, self.offset
        ok = (
            isinstance(offset, int)
            and isinstance(size, tuple)
            and isinstance(stride, tuple)
            and len(size) == len(stride)
            and all(isinstance(v, int) and v >= 0 for v in (offset, *size, *stride))
        )
        if not ok:
            raise WeightsError(
                f"a tensor in the .pth file has a malformed layout (offset {offset!r}, size "
                f"{size!r}, stride {stride!r}); the file is damaged or not a state dict"
            )
        data = storage.array
        if 0 in size:
            return np.zeros(size, data.dtype)
        last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
        if last >= data.size:
            raise WeightsError(
                f"a tensor of size {size} reaches element {last} of a storage with {data.size}; "
                "the file is truncated or damaged"
            )
        item = data.itemsize
        view = np.lib.stride_tricks.as_strided(
            data[offset:], shape=size, strides=tuple(s * item for s in stride), writeable=False
        )
        return np.array(view, order="C")  # a copy; ascontiguousarray would make 0-d arrays 1-d


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *rest: Any) -> _TensorRef:
    """Stand-in for torch._utils._rebuild_tensor(_v2): requires_grad, hooks, metadata dropped."""
    return _TensorRef(storage, offset, tuple(size) if isinstance(size, list) else size, stride)


def _rebuild_parameter(data: Any, *rest: Any) -> Any:
    """Stand-in for torch._utils._rebuild_parameter: a parameter is its data here."""
    return data


_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(name) for name in _STORAGE_DTYPES},
}


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that maps an allow-list of globals to stand-ins and refuses the rest."""

    def __init__(self, file: BinaryIO, source: str) -> None:
        super().__init__(file)
        self.source = source
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        """Return the stand-in for an allowed global; refuse anything else before it is used."""
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise WeightsError(
                f"{self.source} refers to the Python global {module}.{name}, which a PyTorch "
                "state dict never needs; refusing to load it (nothing was run). Only plain "
                "state dicts of tensors are accepted: save one with "
                "torch.save(model.state_dict(), path) from a trusted source"
            ) from None

    def persistent_load(self, pid: Any) -> _Storage:
        """Resolve ('storage', type, key, location, numel[, view]) to a (shared) _Storage."""
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise WeightsError(f"{self.source} has an unknown persistent id {pid!r:.80}")
        storage_type, key, numel = pid[1], str(pid[2]), pid[4]
        if not isinstance(storage_type, _StorageType) or not isinstance(numel, int) or numel < 0:
            raise WeightsError(f"{self.source} has a malformed storage reference {pid!r:.80}")
        if len(pid) > 5 and pid[5] is not None:
            raise WeightsError(f"{self.source} uses storage views, which this reader does not")
        storage = self.storages.get(key)
        if storage is None:
            storage = self.storages[key] = _Storage(key, storage_type.dtype, numel)
        return storage


def _unpickle(data: bytes | BinaryIO, source: str) -> tuple[Any, dict[str, _Storage]]:
    """Run the restricted unpickler on bytes or a file positioned at a pickle."""
    stream = io.BytesIO(data) if isinstance(data, bytes) else data
    unpickler = _RestrictedUnpickler(stream, source)
    try:
        obj = unpickler.load()
    except WeightsError:
        raise
    except Exception as err:  # truncated or corrupt pickle streams raise many kinds of errors
        raise WeightsError(
            f"{source} is not a readable PyTorch file ({type(err).__name__}: {err}); it is "
            "truncated or damaged: download it again"
        ) from err
    return obj, unpickler.storages


def _attach(storage: _Storage, raw: bytes, source: str) -> None:
    """Attach raw little-endian bytes to a storage, checking the length."""
    dtype = _np_dtype(storage.dtype)
    need = storage.numel * dtype.itemsize
    if len(raw) < need:
        raise WeightsError(
            f"{source}: storage {storage.key} holds {len(raw)} bytes, {need} expected; the file "
            "is truncated: download it again"
        )
    storage.array = np.frombuffer(raw[:need], dtype=dtype)


def _read_zip(path: Path) -> tuple[Any, dict[str, _Storage]]:
    """Read the zip container: <dir>/data.pkl and <dir>/data/<key>."""
    source = str(path)
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("data.pkl") and n.count("/") <= 1]
        if len(pickles) != 1:
            raise WeightsError(f"{source} is a zip file but not a PyTorch checkpoint (no data.pkl)")
        prefix = pickles[0][: -len("data.pkl")]
        byteorder = f"{prefix}byteorder"
        if byteorder in names and archive.read(byteorder).strip() != b"little":
            raise WeightsError(
                f"{source} was written big-endian; re-save it on a little-endian host"
            )
        obj, storages = _unpickle(archive.read(pickles[0]), source)
        for key, storage in storages.items():
            try:
                raw = archive.read(f"{prefix}data/{key}")
            except KeyError:
                raise WeightsError(
                    f"{source} lacks the data of storage {key}; it is damaged"
                ) from None
            _attach(storage, raw, source)
    return obj, storages


def _read_legacy(path: Path) -> tuple[Any, dict[str, _Storage]]:
    """Read the legacy container: header pickles, the object, keys, then raw storages."""
    source = str(path)
    with open(path, "rb") as f:
        magic, _ = _unpickle(f, source)
        if magic != _LEGACY_MAGIC:
            raise WeightsError(
                f"{source} is neither a zip nor a legacy PyTorch file (bad magic number); it is "
                "not a .pth state dict"
            )
        protocol, _ = _unpickle(f, source)
        if protocol != _LEGACY_PROTOCOL:
            raise WeightsError(
                f"{source} uses legacy protocol {protocol!r}, not {_LEGACY_PROTOCOL}"
            )
        sys_info, _ = _unpickle(f, source)
        if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
            raise WeightsError(
                f"{source} was written big-endian; re-save it on a little-endian host"
            )
        obj, storages = _unpickle(f, source)
        keys, _ = _unpickle(f, source)
        if not isinstance(keys, list) or sorted(map(str, keys)) != sorted(storages):
            raise WeightsError(f"{source} has a storage list that does not match its tensors")
        for key in map(str, keys):
            storage = storages[key]
            header = f.read(8)
            if len(header) < 8:
                raise WeightsError(f"{source} ends before storage {key}; it is truncated")
            (count,) = struct.unpack("<q", header)
            if count != storage.numel:
                raise WeightsError(
                    f"{source}: storage {key} has {count} elements, {storage.numel} expected"
                )
            _attach(storage, f.read(count * _np_dtype(storage.dtype).itemsize), source)
    return obj, storages


def _materialise(obj: Any) -> Any:
    """Replace every tensor reference in nested dicts/lists/tuples by its NumPy array."""
    if isinstance(obj, _TensorRef):
        return obj.materialise()
    if isinstance(obj, dict):
        return {k: _materialise(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialise(v) for v in obj)
    return obj


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Return {name: array} from a PyTorch state-dict file, without torch and running no code."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"PyTorch file {path} does not exist; check the path")
    reader = _read_zip if zipfile.is_zipfile(path) else _read_legacy
    obj, _ = reader(path)
    for wrapper in ("state_dict", "params"):
        # A training checkpoint that wraps the state dict; BasicSR-style files (DDColor's
        # releases) keep it under 'params', as the official inference reads it.
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
            break
    if not isinstance(obj, dict):
        raise WeightsError(
            f"{path} holds a {type(obj).__name__}, not a state dict; save one with "
            "torch.save(model.state_dict(), path)"
        )
    flat = _materialise(obj)
    bad = [k for k, v in flat.items() if not isinstance(k, str) or not isinstance(v, np.ndarray)]
    if bad:
        raise WeightsError(f"{path} has non-tensor entries {bad[:3]}; it is not a plain state dict")
    return flat
