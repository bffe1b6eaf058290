"""XLA:CPU lowerings of the layers' math; each equals the reference form's outputs and gradients.

The layers (`colorjax.models.layers`, `colorjax.models.conv4x4`, `zhang.Conv3x3`) own the
parameters and pick these forms with `jax.lax.platform_dependent` on CPU only; nothing here
changes parameters. Modules: `shapes` (NHWC dimension numbers, 'SAME' padding), `conv`
(GroupNorm, instance norm, 3x3 and 1x1 convs, nearest-x2 upsampling conv), `conv4x4` (the 4x4
up/down/patch convs), `depthwise` (the depthwise kxk conv), `winograd` (Zhang's wide 3x3 convs,
dilation 1 or 2, as Winograd F(2x2, 3x3) matmuls). The per-sample kernel-gradient loops take
the training step's mesh as an argument (`colorjax.parallel.sum_over_samples`).
"""
