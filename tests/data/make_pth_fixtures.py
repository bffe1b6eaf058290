"""Write the small .pth fixtures of tests/test_zhang.py with PyTorch (run once; needs torch).

    python tests/data/make_pth_fixtures.py

Both containers torch.save writes (zip, and legacy with _use_new_zipfile_serialization=False)
hold a real module's state dict (conv + BatchNorm, with torch's _metadata and the int64
num_batches_tracked) plus a float16 tensor and a non-contiguous (transposed) one, so the
no-torch reader is tested on what PyTorch actually writes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def expected_tensors() -> dict[str, np.ndarray]:
    """The fixture's tensors, in state-dict order (computable without torch)."""
    rng = np.random.default_rng(2024)
    return {
        "0.weight": rng.standard_normal((4, 1, 3, 3)).astype(np.float32),
        "0.bias": rng.standard_normal(4).astype(np.float32),
        "1.weight": rng.uniform(0.5, 1.5, 4).astype(np.float32),
        "1.bias": rng.standard_normal(4).astype(np.float32),
        "1.running_mean": rng.standard_normal(4).astype(np.float32),
        "1.running_var": rng.uniform(0.5, 1.5, 4).astype(np.float32),
        "1.num_batches_tracked": np.array(7, np.int64),
        "extra.half": np.linspace(-2, 2, 6, dtype=np.float16).reshape(2, 3),
        "extra.transposed": np.arange(15, dtype=np.float32).reshape(3, 5).T.copy(),
    }


def main() -> None:
    """Save the fixture in both containers next to this script."""
    import torch
    from torch import nn

    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4))
    state = net.state_dict()
    values = expected_tensors()
    for key in state:
        state[key] = torch.from_numpy(values[key].copy())
    state["extra.half"] = torch.from_numpy(values["extra.half"].copy())
    state["extra.transposed"] = torch.arange(15, dtype=torch.float32).reshape(3, 5).t()
    assert not state["extra.transposed"].is_contiguous()
    torch.save(state, HERE / "tiny_state_dict_zip.pth")
    torch.save(state, HERE / "tiny_state_dict_legacy.pth", _use_new_zipfile_serialization=False)


if __name__ == "__main__":
    main()
