"""Weights files that take parameter subtrees from other named weights (header ``shared``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from colorjax.errors import WeightsError
from colorjax.weights.fileformat import load_weights
from colorjax.weights.manifest import ManifestLike, get_entry
from colorjax.weights.resolve import resolve_weights


def _subtree(tree: Mapping[str, Any], keys: list[str]) -> Any:
    """tree[k0][k1]...; None where a key is missing."""
    for key in keys:
        if not isinstance(tree, Mapping) or key not in tree:
            return None
        tree = tree[key]
    return tree


def merge_subtrees(tree: Mapping[str, Any], parts: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `tree` with every subtree of `parts` put in at its path (dicts merged)."""
    out = dict(tree)
    for key, value in parts.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_subtrees(out[key], value)
        else:
            out[key] = value
    return out


def read_variables(
    path: Path, manifest: ManifestLike = None, **fetch: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(variables, meta) of a weights file, with the subtrees it shares with other weights.

    A file may leave out a subtree that other named weights hold identically (the GAN whose
    generator's frozen ImageNet encoder is the bundled ColorNet-Lite's: 9.6 MB not shipped
    twice). Its header's ``shared`` maps each left-out path (``params/generator/encoder``) to
    the weights name, the path in them and their sha256. The name is looked up in the manifest
    (never used as a path), and the file found must be the one recorded.
    """
    variables, meta = load_weights(path)
    shared = meta.get("shared") or {}
    if not isinstance(shared, Mapping):
        raise WeightsError(f"{path} has a damaged 'shared' header; export the weights again")
    for target, spec in shared.items():
        try:
            source_name, source_path, sha = spec["weights"], spec["path"], spec["sha256"]
        except (TypeError, KeyError) as err:
            raise WeightsError(
                f"{path} has a damaged 'shared' entry for {target!r} ({err!r}); export the "
                "weights again"
            ) from err
        cfg = get_entry(str(source_name), manifest)
        if cfg.sha256 != sha:
            raise WeightsError(
                f"{path} takes {target} from weights {cfg.name!r} with sha256 {sha[:12]}..., but "
                f"the manifest's {cfg.name!r} is another file ({str(cfg.sha256)[:12]}...); "
                "install matching versions of both (reinstall colorjax or download both again)"
            )
        source_vars, _ = load_weights(resolve_weights(cfg, manifest, **fetch))
        part = _subtree(source_vars, str(source_path).split("/"))
        keys = str(target).split("/")
        if part is None or _subtree(variables, keys) is not None:
            raise WeightsError(
                f"{path} takes {target} from {source_path} of {cfg.name!r}, which "
                f"{'lacks it' if part is None else 'the file holds itself'}; export again"
            )
        for key in reversed(keys):
            part = {key: part}
        variables = merge_subtrees(variables, part)
    return variables, meta
