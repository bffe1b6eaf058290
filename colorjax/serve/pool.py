"""The models a server offers: loaded once, on first use, shared by every request.

Only names the server was started with are offered, and a request picks one of them by name:
nothing a request sends is ever used as a path. Each entry holds one Colorizer, whose compiled
kernels (one per shape bucket) are reused across requests.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from pathlib import Path
from typing import Any

from colorjax.errors import ConfigError

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Offer:
    """One model the server offers: its public name and where it comes from."""

    name: str
    source: str  # weights name, weights file or run folder, or an exported .jaxexport file
    exported: bool = False


def offline_names() -> list[str]:
    """Weights usable without a network, the overall default first: bundled or already cached."""
    from colorjax.weights import list_pretrained
    from colorjax.weights.download import local_status
    from colorjax.weights.manifest import default_entry

    first = default_entry(None).name
    names = [cfg.name for cfg in list_pretrained() if local_status(cfg) != "remote"]
    return sorted(names, key=lambda n: n != first)


class ModelPool:
    """Colorizers by offered name, each built once (thread-safe) and kept for the server's life."""

    def __init__(self, offers: list[Offer]) -> None:
        if not offers:
            raise ConfigError(
                "no model to serve: pass --weights NAME (e.g. the bundled "
                "colornet-lite2-cls4.tinyimagenet) or --exported FILE.jaxexport"
            )
        names = [o.name for o in offers]
        if len(set(names)) != len(names):
            raise ConfigError(f"a model is offered twice in {names}; name each once")
        self.offers = {o.name: o for o in offers}
        self._loaded: dict[str, Any] = {}
        self._lock = threading.Lock()

    @property
    def names(self) -> list[str]:
        """Offered names, the default first."""
        return list(self.offers)

    def describe(self) -> list[dict[str, Any]]:
        """What the page lists: name, whether it takes hints (loads each model once)."""
        return [{"name": n, "takes_hints": self.get(n)[1]} for n in self.names]

    def get(self, name: str | None) -> tuple[Any, bool]:
        """(Colorizer, takes_hints) for an offered name (None: the default); ConfigError if not."""
        name = name or self.names[0]
        if name not in self.offers:
            raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(self.names)}")
        with self._lock:
            if name not in self._loaded:
                self._loaded[name] = _build(self.offers[name])
            return self._loaded[name]


def _build(offer: Offer) -> tuple[Any, bool]:
    """Load one offer into a Colorizer."""
    from colorjax.inference import make_colorizer
    from colorjax.models import model_contract

    if offer.exported:
        from colorjax.exported import load_exported

        model = load_exported(offer.source)
        variables, meta = {}, model.meta
    else:
        from colorjax.inference.pretrained import load_pretrained

        model, variables, meta = load_pretrained(offer.source)
    logger.info("loaded %s (%s)", offer.name, offer.source)
    colorizer = make_colorizer(model, variables, meta)
    return colorizer, model_contract(model).takes_hints


def offers_from(weights: list[str], exported: list[str]) -> list[Offer]:
    """Offers for the serve command's --weights and --exported lists (names as given)."""
    offers = [Offer(name=w, source=w) for w in weights]
    offers += [Offer(name=Path(e).name, source=e, exported=True) for e in exported]
    return offers
