"""reuse_freed_memory: large freed blocks are reused, not unmapped and page-faulted again."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

# In a fresh process (the setting is process-wide): page faults of allocating, touching and
# freeing a 64 MiB array ten times, before and after reuse_freed_memory(). (Above 32 MiB glibc
# always maps a block afresh; below, its threshold adapts to what was freed before.)
CHILD = """
import json, resource
import numpy as np
from colorjax.hostmem import reuse_freed_memory

def faults_per_cycle():
    np.ones(1 << 24, np.float32)  # warm-up cycle
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        a = np.ones(1 << 24, np.float32)  # 64 MiB, written
        del a
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10

default = faults_per_cycle()
ok = reuse_freed_memory()
print(json.dumps({"ok": ok, "default": default, "reuse": faults_per_cycle()}))
"""


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc malloc only"
)
def test_freed_blocks_are_reused_instead_of_faulted_in_again():
    out = subprocess.run(
        [sys.executable, "-c", CHILD], check=True, capture_output=True, text=True, timeout=120
    )
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["ok"] is True
    # glibc maps the block afresh, so its pages fault in again: at least one per 2 MiB (huge
    # pages, where the kernel uses them), 16384 with 4 KiB pages.
    assert got["default"] >= (1 << 26) / (2 << 20)
    assert got["reuse"] * 10 < got["default"]  # the heap keeps the block: (almost) no faults
