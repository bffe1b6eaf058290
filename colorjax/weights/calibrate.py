"""Calibrate a classification head in its weights: rebalancing taken out or put back.

Class-rebalanced cross-entropy is minimised by p(q|x) w(q) / Z, so trained logits carry
+ log w(q). Subtracting beta * log w(q) from the head's bias moves the decoded colour along the
fidelity/colourfulness curve: beta = 1 gives back the calibrated posterior (closer to the MMSE
colour, higher PSNR), beta < 0 puts rebalancing back into a net trained without it (more
saturated). The change is exact and lives in the weights: inference needs to know nothing.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from colorjax import gamut


def shift_head_bias(variables: dict[str, Any], beta: float, lam: float = 0.5) -> dict[str, Any]:
    """Variables with beta * log w(q) subtracted from the head bias (w: rebalancing weights).

    The head is ``params['head']`` or, for a GAN with a bin generator,
    ``params['generator']['head']``; `lam` is the lambda of w = ((1 - lam) p + lam / Q)^-1.
    """
    if not beta:
        return variables
    w = np.asarray(gamut.rebalancing_weights(gamut.default_prior(), lam), np.float32)
    params = jax.tree_util.tree_map(np.asarray, variables["params"])
    head = params["generator"]["head"] if "generator" in params else params["head"]
    head["bias"] = head["bias"] - np.float32(beta) * np.log(w)
    return {**variables, "params": params}
