"""Pretrained weights: file format, `arch.tag` manifest, downloads, export, and the one loader.

Modules, one job each: ``fileformat`` (the safetensors weights file), ``manifest`` (named
weights as :class:`PretrainedCfg`), ``download`` (cache, offline mode, verified fetching),
``resolve`` (name or path -> verified local file, .pth converted), ``fit`` (does a tree fit a
model), ``loader`` (published weights into their model: ``load_published``), ``pth`` and
``pth_convert`` (official PyTorch weights), ``calibrate`` and ``shared``. Training runs become
weights in ``colorjax.train.export``; the public loaders are ``colorjax.create_model`` and
``colorjax.load_pretrained``.
The bundled ``.safetensors`` files and ``manifest.json`` live in this folder.
"""

from __future__ import annotations

from colorjax.weights.download import (
    DEFAULT_BACKOFF,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    cache_dir,
    cache_path,
    is_offline,
)
from colorjax.weights.fileformat import (
    FORMAT_VERSION,
    STORAGE_DTYPES,
    check_finite,
    flatten_variables,
    load_weights,
    read_metadata,
    save_weights,
    sha256_file,
    unflatten_variables,
)
from colorjax.weights.fit import check_variables
from colorjax.weights.loader import Pretrained, load_published, load_published_as
from colorjax.weights.manifest import (
    DEFAULT_MANIFEST,
    PretrainedCfg,
    add_to_manifest,
    default_entry,
    get_entry,
    list_pretrained,
    load_manifest,
)
from colorjax.weights.resolve import resolve_entry, resolve_weights, verify_weights

__all__ = [
    "DEFAULT_BACKOFF",
    "DEFAULT_MANIFEST",
    "DEFAULT_RETRIES",
    "DEFAULT_TIMEOUT",
    "FORMAT_VERSION",
    "STORAGE_DTYPES",
    "Pretrained",
    "PretrainedCfg",
    "add_to_manifest",
    "cache_dir",
    "cache_path",
    "check_finite",
    "check_variables",
    "default_entry",
    "flatten_variables",
    "get_entry",
    "is_offline",
    "list_pretrained",
    "load_manifest",
    "load_published",
    "load_published_as",
    "load_weights",
    "read_metadata",
    "resolve_entry",
    "resolve_weights",
    "save_weights",
    "sha256_file",
    "unflatten_variables",
    "verify_weights",
]
