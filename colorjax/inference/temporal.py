"""Colour that holds still across video frames: motion-compensated ab smoothing and its measure.

Per-frame colorization flickers: each frame's ab is predicted afresh. ``TemporalSmoother``
carries the previous frame's (smoothed) ab along the motion, warped by optical flow computed on
L (OpenCV's Farneback), and blends it into the new prediction where the warp is trusted (the
warped L matches the new L), so colour follows objects instead of re-rolling each frame. A
scene cut (the warped L does not match at all) resets it. ``motion_compensated_change`` is
the flicker measure: mean |delta ab| between consecutive frames after the same warp.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from colorjax.errors import ConfigError, MissingDependencyError

# L (0-100) difference at which a warped pixel's confidence has fallen to exp(-1).
CONFIDENCE_SIGMA = 6.0
# Mean |L - warped previous L| above which two frames are different shots (a cut).
DEFAULT_CUT_THRESHOLD = 12.0
DEFAULT_STRENGTH = 0.8


def _cv2():  # noqa: ANN202 - the module
    """OpenCV, or one clear error naming the extra that brings it."""
    try:
        import cv2
    except ImportError as err:
        raise MissingDependencyError(
            "video colorization needs OpenCV (optical flow) and imageio-ffmpeg: "
            "pip install 'colorjax[video]'"
        ) from err
    return cv2


def flow_to_previous(l_prev: np.ndarray, l_cur: np.ndarray) -> np.ndarray:
    """Dense flow (H, W, 2) from each pixel of the current frame to where it was before.

    Farneback on L as 8-bit gray; float32 pixel offsets (dx, dy).
    """
    cv2 = _cv2()
    to8 = [np.clip(v * 2.55, 0, 255).astype(np.uint8) for v in (l_cur, l_prev)]
    return cv2.calcOpticalFlowFarneback(to8[0], to8[1], None, 0.5, 3, 15, 3, 5, 1.2, 0)


def warp(values: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(values of the previous frame moved onto the current one, inside mask)."""
    cv2 = _cv2()
    h, w = flow.shape[:2]
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    map_x, map_y = xs + flow[..., 0], ys + flow[..., 1]
    moved = cv2.remap(
        np.ascontiguousarray(values, np.float32),
        map_x,
        map_y,
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    inside = (map_x >= 0) & (map_x <= w - 1) & (map_y >= 0) & (map_y <= h - 1)
    return moved.reshape(values.shape), inside


def confidence(l_cur: np.ndarray, l_moved: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """How far a warped pixel is trusted, in [0, 1]: its L must match the new frame's."""
    conf = np.exp(-np.square((l_cur - l_moved) / CONFIDENCE_SIGMA))
    return np.where(inside, conf, 0.0).astype(np.float32)


def blend_keeping_chroma(ab: np.ndarray, carried: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Mix two ab fields: the hue as vectors, the chroma as the same mix of their lengths.

    A plain vector average of two colours of different hue is grayer than either, so smoothing
    would wash colour out; mixing the lengths keeps the chroma where the hues disagree.
    """
    mixed = ab + weight * (carried - ab)
    length = np.linalg.norm(mixed, axis=-1, keepdims=True)
    target = (1.0 - weight) * np.linalg.norm(ab, axis=-1, keepdims=True) + weight * np.linalg.norm(
        carried, axis=-1, keepdims=True
    )
    return np.where(length > 1e-6, mixed * (target / np.maximum(length, 1e-6)), mixed)


@dataclasses.dataclass
class TemporalSmoother:
    """Blend each frame's ab with the previous smoothed ab warped along the motion.

    strength in [0, 1): 0 gives plain per-frame colour; the weight of the carried colour is
    strength x confidence per pixel. L is 0-100, ab in any unit (kept as given).
    """

    strength: float = DEFAULT_STRENGTH
    cut_threshold: float = DEFAULT_CUT_THRESHOLD
    _prev: tuple[np.ndarray, np.ndarray] | None = None
    cuts: list[int] = dataclasses.field(default_factory=list)
    frames: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.strength) < 1.0:
            raise ConfigError(
                f"temporal smoothing strength must be in [0, 1), got {self.strength}; 0 turns "
                "it off, 0.8 is the default"
            )

    def __call__(self, l_cur: np.ndarray, ab: np.ndarray) -> np.ndarray:
        """The smoothed ab of the next frame (same shape as `ab`)."""
        index, self.frames = self.frames, self.frames + 1
        out = np.asarray(ab, np.float32)
        if self._prev is not None and self._prev[0].shape != l_cur.shape:
            self._prev = None  # another size: nothing to carry
        if self._prev is not None:
            l_prev, ab_prev = self._prev
            flow = flow_to_previous(l_prev, l_cur)
            l_moved, inside = warp(l_prev, flow)
            if float(np.mean(np.abs(l_cur - l_moved))) > self.cut_threshold:
                self.cuts.append(index)
            elif self.strength > 0:
                ab_moved, _ = warp(ab_prev, flow)
                weight = (self.strength * confidence(l_cur, l_moved, inside))[..., None]
                out = blend_keeping_chroma(out, ab_moved, weight)
        self._prev = (np.asarray(l_cur, np.float32), out)
        return out


def motion_compensated_change(
    l_prev: np.ndarray, ab_prev: np.ndarray, l_cur: np.ndarray, ab_cur: np.ndarray
) -> float:
    """Flicker between two frames: mean |delta ab| (Euclidean, ab's units) after the warp.

    Only pixels whose warp is trusted (confidence over 0.5) count, so motion and occlusion
    are not mistaken for flicker.
    """
    flow = flow_to_previous(l_prev, l_cur)
    l_moved, inside = warp(l_prev, flow)
    ab_moved, _ = warp(ab_prev, flow)
    trusted = confidence(l_cur, l_moved, inside) > 0.5
    if not trusted.any():
        return float("nan")
    change = np.linalg.norm(np.asarray(ab_cur, np.float32) - ab_moved, axis=-1)
    return float(change[trusted].mean())
