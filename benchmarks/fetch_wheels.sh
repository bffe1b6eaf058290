#!/usr/bin/env bash
# Download the wheels that the GPU machine lacks into .whl/ (git-ignored) for `device_run.sh`.
#   bash benchmarks/fetch_wheels.sh            # grain + array_record + portpicker for cp312
# The device image (Python 3.12, no network) has jax, flax, optax, orbax, torch, absl, etils,
# cloudpickle, protobuf and psutil, but not Grain and its two own needs; TFDS is never needed
# there (only `tfds:` sources import it). The versions are this checkout's so both sides run
# the same loader. PYTHON_VERSION / PLATFORMS override the target.
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}"
target_py="${PYTHON_VERSION:-3.12}"
dest=".whl"
version() { "$py" -c "import importlib.metadata as m; print(m.version('$1'))" 2>/dev/null || true; }
pin() { local v; v="$(version "$1")"; if [ -n "$v" ]; then echo "$1==$v"; else echo "$1"; fi; }
mkdir -p "$dest"
# pip matches manylinux tags exactly, so name every tag these wheels are published under.
platforms=(${PLATFORMS:-manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64
  manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64})
args=(--no-deps --only-binary=:all: --python-version "$target_py" --implementation cp -d "$dest")
for p in "${platforms[@]}"; do args+=(--platform "$p"); done
"$py" -m pip download -q "${args[@]}" "$(pin grain)" "$(pin array_record)" "$(pin portpicker)"
# One version of each package: two would stop the whole install on the device.
ls -1 "$dest"/*.whl | sed 's#.*/##; s/-[0-9].*//' | sort | uniq -d | while read -r dup; do
  echo "warning: several $dup wheels in $dest; keep one" >&2
done
du -ch "$dest"/*.whl | tail -1
ls -1 "$dest"
