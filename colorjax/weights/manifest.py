"""The pretrained-weights registry: manifest entries as `arch.tag` PretrainedCfg records.

A manifest (JSON, ``colorjax/weights/manifest.json`` by default; ``colorjax weights export``
writes one beside the weights it exports) lists named weights. Names follow timm: the
architecture's registry name, a dot, and a tag naming the training (``colornet-small-cls4.
tinyimagenet``, ``zhang-eccv16.official``). An entry's ``aliases`` keep older names working;
an architecture's bare name picks its default tag.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from colorjax.errors import WeightsError
from colorjax.fileio import atomic_write_bytes

MANIFEST_VERSION = 1
WEIGHTS_DIR = Path(__file__).resolve().parent
DEFAULT_MANIFEST = WEIGHTS_DIR / "manifest.json"
USER_MANIFEST = "manifest.json"  # what `weights export` keeps in its output folder
PTH_FORMAT = "pytorch-state-dict"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

ManifestLike = str | os.PathLike | Mapping[str, Any] | None


@dataclasses.dataclass(frozen=True)
class PretrainedCfg:
    """One named set of pretrained weights: what to build, where to fetch it, how to check it."""

    name: str  # arch.tag (user exports may use any name)
    model: str  # the architecture: a colorjax.models registry name
    # Full hash of the published file, checked before it is parsed. None only for official
    # PyTorch files whose publisher gives no hash (see `pinned`): the hash of the first download
    # is recorded and every later download must match it.
    sha256: str | None
    urls: tuple[str, ...]  # bundled:FILE, http(s)://, file://, hf://owner/repo/path; in order
    family: str | None = None
    format: str = "colorjax-weights"  # or "pytorch-state-dict" (converted once into the cache)
    overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    working_size: int | None = None
    temperature: float | None = None
    aliases: tuple[str, ...] = ()
    default: bool = False
    size: int | None = None
    dtype: str | None = None
    description: str = ""
    hub_size_mb: float | None = None  # the size the hub shows (decimal MB, 3 digits), unpinned
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # licence, paper, evals

    @property
    def tag(self) -> str:
        """The part after 'arch.' (the whole name when the name does not start with it)."""
        return self.name.removeprefix(self.model + ".")

    @property
    def pinned(self) -> bool:
        """True when the manifest gives the file's sha256 (else: trust on first download)."""
        return self.sha256 is not None

    @property
    def is_pth(self) -> bool:
        """True for official PyTorch .pth files converted on first use."""
        return self.format == PTH_FORMAT

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> PretrainedCfg:
        """Build from a (validated) manifest entry; unknown keys are kept in `extra`."""
        fields = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in entry.items() if k in fields and v is not None}
        known["sha256"] = entry["sha256"]  # None for an unpinned entry, kept as such
        known["urls"] = tuple(entry["urls"])
        known["aliases"] = tuple(entry.get("aliases") or ())
        known["default"] = bool(entry.get("default"))
        known["overrides"] = dict(entry.get("overrides") or {})
        extra = {k: v for k, v in entry.items() if k not in fields}
        return cls(**known, extra=extra)

    def to_entry(self) -> dict[str, Any]:
        """The manifest JSON entry (inverse of from_entry)."""
        entry = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        entry.pop("extra")
        entry.update({"urls": list(self.urls), "aliases": list(self.aliases)})
        entry["overrides"] = dict(self.overrides)
        return {**entry, **self.extra}

    def get(self, key: str, default: Any = None) -> Any:
        """Entry-style read of a field or an extra key (licence, paper, ...)."""
        if key in self.extra:
            return self.extra[key]
        return getattr(self, key, default)


def as_cfg(entry: PretrainedCfg | Mapping[str, Any]) -> PretrainedCfg:
    """Accept a PretrainedCfg or a raw manifest entry."""
    if isinstance(entry, PretrainedCfg):
        return entry
    check_entry(entry, "weights entry")
    return PretrainedCfg.from_entry(entry)


def load_manifest(manifest: ManifestLike = None) -> dict[str, Any]:
    """Load and validate a manifest from a path or dict (default: the packaged manifest)."""
    if manifest is None:
        manifest = DEFAULT_MANIFEST
    if isinstance(manifest, Mapping):
        data = dict(manifest)
        where = "<manifest dict>"
    else:
        where = str(manifest)
        try:
            data = json.loads(Path(manifest).read_text(encoding="utf-8"))
        except FileNotFoundError as err:
            raise WeightsError(
                f"weights manifest {where} does not exist; pass the path of a manifest.json"
            ) from err
        except (OSError, json.JSONDecodeError) as err:
            raise WeightsError(
                f"weights manifest {where} is unreadable ({err}); fix it or reinstall colorjax"
            ) from err
    if not isinstance(data, Mapping):
        raise WeightsError(
            f"weights manifest {where} is a JSON {type(data).__name__}, not an object with a "
            "'weights' list; fix the manifest (colorjax weights export writes valid ones)"
        )
    version = data.get("format_version", MANIFEST_VERSION)
    if isinstance(version, bool) or not isinstance(version, int):
        raise WeightsError(
            f"weights manifest {where}: format_version must be an integer, got {version!r}; "
            f"set it to {MANIFEST_VERSION}"
        )
    if version > MANIFEST_VERSION:
        raise WeightsError(
            f"weights manifest {where} has format {version}, newer than this "
            f"colorjax understands ({MANIFEST_VERSION}); upgrade colorjax"
        )
    entries = data.get("weights")
    if not isinstance(entries, list):
        raise WeightsError(f"weights manifest {where} has no 'weights' list; fix the manifest")
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        check_entry(entry, f"weights manifest {where}: entry {index}")
        for name in (entry["name"], *(entry.get("aliases") or ())):
            if name in seen:
                raise WeightsError(f"weights manifest {where}: name {name!r} appears twice")
            seen.add(name)
    return data


def list_pretrained(manifest: ManifestLike = None) -> list[PretrainedCfg]:
    """Every entry of a manifest, in file order."""
    return [PretrainedCfg.from_entry(e) for e in load_manifest(manifest)["weights"]]


def _check_unpinned(entry: Mapping[str, Any], where: str) -> None:
    """An entry without sha256: only official PyTorch files, with the hub's size to check."""
    size = entry.get("hub_size_mb")
    if (
        entry.get("format") != PTH_FORMAT
        or isinstance(size, bool)
        or not (isinstance(size, (int, float)) and size > 0)
    ):
        raise WeightsError(
            f"{where}: sha256 is null; that is allowed only for official PyTorch files "
            f'("format": "{PTH_FORMAT}") whose publisher gives no hash, with "hub_size_mb" (the '
            "size the hub shows) to check the first download; write the file's full sha256 "
            "(sha256sum FILE) instead"
        )


def check_entry(entry: Any, where: str) -> None:
    """Raise WeightsError unless an entry has the fields and types the loader relies on."""
    if not isinstance(entry, Mapping):
        raise WeightsError(f"{where} is a {type(entry).__name__}, not an object; fix the manifest")
    where = f"{where} ({entry.get('name', '?')!r})"
    missing = [k for k in ("name", "model", "sha256", "urls") if k not in entry]
    if missing:
        raise WeightsError(
            f"{where} lacks {missing}; add them (colorjax weights export writes complete entries)"
        )
    for key in ("name", "model"):
        if not isinstance(entry[key], str) or not entry[key]:
            raise WeightsError(f"{where}: {key} must be a non-empty string, got {entry[key]!r}")
    if entry["sha256"] is None:
        _check_unpinned(entry, where)
    elif not isinstance(entry["sha256"], str) or not re.fullmatch(
        r"[0-9a-fA-F]{64}", entry["sha256"]
    ):
        raise WeightsError(
            f"{where}: sha256 must be 64 hex digits as a string, got {entry['sha256']!r}; "
            "write the file's full sha256 (sha256sum FILE)"
        )
    urls = entry["urls"]
    if not isinstance(urls, list) or not all(isinstance(u, str) and u for u in urls):
        raise WeightsError(
            f'{where}: urls must be a list of strings, e.g. ["https://host/file.safetensors"], '
            f"got {urls!r}"
        )
    aliases = entry.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a for a in aliases):
        raise WeightsError(f"{where}: aliases must be a list of names, got {aliases!r}")
    # Names and aliases become cache file names: nothing that could leave the cache folder.
    for name in (entry["name"], *aliases):
        if not NAME_RE.match(name) or ".." in name:
            raise WeightsError(
                f"{where}: name or alias {name!r} is not allowed; use letters, digits, '.', '_' "
                "and '-' only, starting with a letter or digit (no '/', '\\' or '..')"
            )


def entry_family(entry: PretrainedCfg | Mapping[str, Any]) -> str:
    """Return an entry's model family, from the entry or else the model registry."""
    family = entry.family if isinstance(entry, PretrainedCfg) else entry.get("family")
    if family:
        return str(family)
    from colorjax.models import get_spec

    model = entry.model if isinstance(entry, PretrainedCfg) else entry["model"]
    return get_spec(model).family


def get_entry(name: str, manifest: ManifestLike = None) -> PretrainedCfg:
    """Entry by name, alias, or architecture (its default tag); else WeightsError listing names."""
    entries = list_pretrained(manifest)
    for cfg in entries:
        if name == cfg.name or name in cfg.aliases:
            return cfg
    of_arch = [cfg for cfg in entries if cfg.model == name]
    if of_arch:
        return next((cfg for cfg in of_arch if cfg.default), of_arch[0])
    names = ", ".join(cfg.name for cfg in entries) or "(none)"
    raise WeightsError(
        f"unknown weights {name!r}: not a manifest name and not an existing file. "
        f"Known names: {names}. Pass one of them or the path of a .safetensors file."
    )


def get_tagged(arch: str, tag: str, manifest: ManifestLike = None) -> PretrainedCfg:
    """Entry `arch.tag` (or a user entry named `tag` for that architecture)."""
    entries = list_pretrained(manifest)
    for cfg in entries:
        if cfg.model == arch and tag in (cfg.tag, cfg.name, *cfg.aliases):
            return cfg
    tags = ", ".join(cfg.tag for cfg in entries if cfg.model == arch) or "(none)"
    raise WeightsError(
        f"no pretrained weights {arch}.{tag}: the tags of {arch} are {tags}; pass one of them, "
        "pretrained=True for the default, or the path of a .safetensors file"
    )


def default_entry(family: str | None = None, manifest: ManifestLike = None) -> PretrainedCfg:
    """Return the default entry of a family (no family: the ColorNet default, else any default)."""
    entries = list_pretrained(manifest)
    if family is not None:
        entries = [e for e in entries if entry_family(e) == family]
    defaults = [e for e in entries if e.default]
    if family is None:
        # ColorNet is the lighter, steadier family, so it is the overall default.
        defaults.sort(key=lambda e: entry_family(e) != "colornet")
    candidates = defaults or entries
    if not candidates:
        which = f"for family {family!r} " if family else ""
        raise WeightsError(
            f"no pretrained weights {which}in the manifest; pass the path of a .safetensors "
            "file, or train a model and publish it with `colorjax weights export`"
        )
    return candidates[0]


def add_to_manifest(path: str | os.PathLike, entry: Mapping[str, Any]) -> Path:
    """Add (or replace, by name) an entry in a manifest.json, creating the file if needed."""
    path = Path(path)
    data = (
        load_manifest(path)
        if path.is_file()
        else {"format_version": MANIFEST_VERSION, "weights": []}
    )
    check_entry(entry, f"new entry for {path}")
    data["weights"] = [e for e in data["weights"] if e["name"] != entry["name"]] + [dict(entry)]
    atomic_write_bytes(path, (json.dumps(data, indent=2) + "\n").encode())
    return path
