"""Training losses: ab regression, class-rebalanced soft-encoded cross-entropy, GAN objectives."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import optax

from colorjax import color


def l1_loss(pred: jax.Array, target: jax.Array) -> jax.Array:
    """Mean absolute error."""
    return jnp.mean(jnp.abs(pred.astype(jnp.float32) - target.astype(jnp.float32)))


def l2_loss(pred: jax.Array, target: jax.Array) -> jax.Array:
    """Mean squared error."""
    return jnp.mean(jnp.square(pred.astype(jnp.float32) - target.astype(jnp.float32)))


def huber_loss(pred: jax.Array, target: jax.Array, delta: float = 0.1) -> jax.Array:
    """Mean Huber loss (quadratic within `delta`, linear outside)."""
    return jnp.mean(
        optax.huber_loss(pred.astype(jnp.float32), target.astype(jnp.float32), delta=delta)
    )


def regression_loss(
    pred: jax.Array, target: jax.Array, kind: str = "l1", delta: float = 0.1
) -> jax.Array:
    """Regression loss on ab by name: 'l1', 'l2' or 'huber'."""
    if kind == "l1":
        return l1_loss(pred, target)
    if kind == "l2":
        return l2_loss(pred, target)
    if kind == "huber":
        return huber_loss(pred, target, delta)
    raise ValueError(f"unknown regression loss {kind!r}; use l1, l2 or huber")


def colorfulness_loss(rgb: jax.Array, eps: float = 1e-8) -> jax.Array:
    """DDColor's colourfulness term: mean over images of 1 - colourfulness of RGB in [0, 1].

    As DDColor's ``ColorfulnessLoss``: rg = |R - G|, yb = |(R + G) / 2 - B|, colourfulness
    sqrt(std_rg^2 + std_yb^2) + 0.3 sqrt(mean_rg^2 + mean_yb^2) with unbiased (n - 1)
    standard deviations, on the 0..1 scale. Minimising it pushes the prediction away from gray.
    DDColor sums over the batch; this takes the mean, so its weight does not change with the
    batch size. `eps` keeps the square roots differentiable at a flat gray prediction.
    """
    x = rgb.astype(jnp.float32)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    rg = jnp.abs(r - g)
    yb = jnp.abs(0.5 * (r + g) - b)
    axes = (1, 2)
    std = jnp.sqrt(jnp.var(rg, axis=axes, ddof=1) + jnp.var(yb, axis=axes, ddof=1) + eps)
    mean = jnp.sqrt(jnp.mean(rg, axis=axes) ** 2 + jnp.mean(yb, axis=axes) ** 2 + eps)
    return jnp.mean(1.0 - (std + 0.3 * mean))


def perceptual_loss(
    features: Callable[[jax.Array], Sequence[jax.Array]],
    pred_rgb: jax.Array,
    true_rgb: jax.Array,
    weights: Sequence[float],
) -> jax.Array:
    """Weighted L1 between feature maps of the prediction and of the truth (DDColor's VGG term).

    `features` maps RGB (N, H, W, 3) in [0, 1] to a list of maps (any network: DDColor uses
    VGG16-BN's conv1_1 ... conv5_1 with weights 1/16 ... 1); the truth's features take no
    gradient. colorjax ships no VGG weights, so no training step calls this yet.
    """
    pred_maps, true_maps = features(pred_rgb), features(jax.lax.stop_gradient(true_rgb))
    if not len(pred_maps) == len(true_maps) == len(weights):
        raise ValueError(
            f"perceptual_loss: {len(pred_maps)} feature maps and {len(weights)} weights; "
            "give one weight per map"
        )
    total = jnp.zeros((), jnp.float32)
    for p, t, w in zip(pred_maps, true_maps, weights, strict=True):
        total = total + w * l1_loss(p, t)
    return total


def area_downsample(x: jax.Array, size: tuple[int, int]) -> jax.Array:
    """Average (N, H, W, C) over k x k blocks down to (N, *size, C); H and W multiples of size.

    Targets of a head that predicts at H/k (Zhang et al.'s quarter resolution): the block mean
    is the ab a bilinear upsampling of the prediction should reproduce on average.
    """
    n, h, w, c = x.shape
    oh, ow = int(size[0]), int(size[1])
    if (oh, ow) == (h, w):
        return x
    if h % oh or w % ow:
        raise ValueError(f"cannot area-downsample {h}x{w} to {oh}x{ow}: not an integer factor")
    blocks = x.astype(jnp.float32).reshape(n, oh, h // oh, ow, w // ow, c)
    return jnp.mean(blocks, axis=(2, 4))


def colorful_image_mask(ab_cie: jax.Array, threshold: float) -> jax.Array:
    """1.0 for images (N,H,W,2) that are not near-gray (colorjax.color.is_near_gray), else 0.0."""
    # A mask, not a value to differentiate: the sqrt at ab = 0 never enters the gradient.
    gray = color.is_near_gray(jax.lax.stop_gradient(ab_cie.astype(jnp.float32)), threshold)
    return 1.0 - gray.astype(jnp.float32)


def soft_encode_sparse(
    ab_cie: jax.Array, centers: jax.Array, sigma: float = 5.0, neighbors: int = 5
) -> tuple[jax.Array, jax.Array]:
    """The non-zero entries of gamut.soft_encode: (bin indices, weights), each (..., neighbors).

    Same Gaussian weights on the same nearest bins (nearest first), but found with
    `neighbors` argmin passes instead of top_k and never expanded to a dense (..., Q)
    target: on CPU this is several times faster, and the loss only needs the k entries.
    """
    ab = ab_cie.astype(jnp.float32)
    centers = jnp.asarray(centers, jnp.float32)
    d2 = jnp.square(ab[..., 0:1] - centers[:, 0]) + jnp.square(ab[..., 1:2] - centers[:, 1])
    iota = jnp.arange(centers.shape[0])
    indices, dists = [], []
    for _ in range(neighbors):
        nearest = jnp.argmin(d2, axis=-1)
        indices.append(nearest)
        dists.append(jnp.min(d2, axis=-1))
        d2 = jnp.where(iota == nearest[..., None], jnp.inf, d2)
    idx = jnp.stack(indices, axis=-1)
    dist = jnp.stack(dists, axis=-1)
    # Relative to the nearest distance so far-away ab cannot underflow every weight to 0.
    w = jnp.exp(-(dist - dist[..., :1]) / (2.0 * sigma * sigma))
    return idx, w / jnp.sum(w, axis=-1, keepdims=True)


def rebalanced_cross_entropy(
    logits: jax.Array,
    ab_cie: jax.Array,
    centers: jax.Array,
    class_weights: jax.Array,
    *,
    sigma: float = 5.0,
    neighbors: int = 5,
    gray_threshold: float = color.GRAY_CHROMA,
) -> jax.Array:
    """Zhang et al. multinomial loss: soft-encoded targets, per-pixel rebalancing, gray masking.

    Targets are gamut.soft_encode's (in sparse form). The per-pixel weight is the
    rebalancing weight of the target's nearest ab bin. Near-gray images (max chroma below
    `gray_threshold`) carry no colour information, so their pixels get zero weight; the
    sum is divided by the number of unmasked pixels so the scale does not depend on how
    many are masked.
    """
    idx, w = soft_encode_sparse(ab_cie, centers, sigma=sigma, neighbors=neighbors)
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    ce = -jnp.sum(w * jnp.take_along_axis(log_probs, idx, axis=-1), axis=-1)  # (N, H, W)
    pixel_weight = jnp.asarray(class_weights, jnp.float32)[idx[..., 0]]
    image_mask = colorful_image_mask(ab_cie, gray_threshold)  # (N,)
    mask = jnp.broadcast_to(image_mask[:, None, None], ce.shape)
    denom = jnp.maximum(jnp.sum(mask), 1.0)
    return jnp.sum(ce * pixel_weight * mask) / denom


def palette_cross_entropy(
    scene_logits: jax.Array,
    ab_cie: jax.Array,
    centers: jax.Array,
    *,
    sigma: float = 5.0,
    neighbors: int = 5,
    gray_threshold: float = color.GRAY_CHROMA,
) -> jax.Array:
    """Cross-entropy of per-image logits (N, Q) against each photo's ab palette.

    The palette is the mean over pixels of the soft-encoded targets (the photo's ab-bin
    histogram, summing to 1). Near-gray photos are masked as in `rebalanced_cross_entropy`.
    """
    idx, w = soft_encode_sparse(ab_cie, centers, sigma=sigma, neighbors=neighbors)
    n, q = ab_cie.shape[0], scene_logits.shape[-1]
    rows = jnp.broadcast_to(jnp.arange(n)[:, None], (n, idx[0].size))
    palette = jnp.zeros((n, q), jnp.float32).at[rows, idx.reshape(n, -1)].add(w.reshape(n, -1))
    palette = palette / jnp.sum(palette, axis=-1, keepdims=True)
    log_probs = jax.nn.log_softmax(scene_logits.astype(jnp.float32), axis=-1)
    ce = -jnp.sum(palette * log_probs, axis=-1)
    mask = colorful_image_mask(ab_cie, gray_threshold)
    return jnp.sum(ce * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def gan_discriminator_loss(
    real_logits: jax.Array, fake_logits: jax.Array, kind: str = "vanilla"
) -> jax.Array:
    """Discriminator loss, averaged over real and fake halves as in pix2pix."""
    real_logits = real_logits.astype(jnp.float32)
    fake_logits = fake_logits.astype(jnp.float32)
    if kind == "vanilla":
        real = optax.sigmoid_binary_cross_entropy(real_logits, jnp.ones_like(real_logits))
        fake = optax.sigmoid_binary_cross_entropy(fake_logits, jnp.zeros_like(fake_logits))
    elif kind == "lsgan":
        real = jnp.square(real_logits - 1.0)
        fake = jnp.square(fake_logits)
    else:
        raise ValueError(f"unknown GAN loss {kind!r}; use vanilla or lsgan")
    return 0.5 * (jnp.mean(real) + jnp.mean(fake))


def gan_generator_loss(fake_logits: jax.Array, kind: str = "vanilla") -> jax.Array:
    """Adversarial part of the generator loss: make D call fakes real."""
    fake_logits = fake_logits.astype(jnp.float32)
    if kind == "vanilla":
        return jnp.mean(optax.sigmoid_binary_cross_entropy(fake_logits, jnp.ones_like(fake_logits)))
    if kind == "lsgan":
        return jnp.mean(jnp.square(fake_logits - 1.0))
    raise ValueError(f"unknown GAN loss {kind!r}; use vanilla or lsgan")
