#!/usr/bin/env bash
# Builds .venv with the pinned stack, from nothing. Idempotent: a stamp keyed on the
# pinned requirements and this script makes a re-run with nothing changed take seconds.
#
# `install.sh --check` only tells whether an install is needed (exit 1) or not (exit 0).
#
# Slow parts are cached outside the clone (a missing cache only costs time):
#   pip's own cache, and the patched horovod wheel in $MVKE_CACHE/wheels.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
venv=${VENV:-$here/.venv}
cache=${MVKE_CACHE:-$HOME/.cache/mvke-profiles}
python=${PYTHON:-$(command -v python3.11 || command -v python3 || echo python3)}
torch_version=2.13.0
petastorm_version=0.13.1
horovod_version=0.28.1

stamp_key=$(cat "$here/requirements.txt" "$here/tools/install.sh" "$here/setup.py" | sha256sum | cut -c1-16)
stamp=$venv/.installed-$stamp_key

say() { printf '[install] %s\n' "$*"; }

if [ -f "$stamp" ]; then
  say "up to date ($venv, stamp $stamp_key)"
  exit 0
fi
if [ "${1:-}" = "--check" ]; then
  say "install needed: no stamp $stamp_key in $venv (requirements, setup.py or this script changed)"
  exit 1
fi

start=$(date +%s)
if [ ! -x "$venv/bin/python" ]; then
  if ! "$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
    say "$python is not Python 3.11, which the pins need (setup.py): set PYTHON=/path/to/python3.11" >&2
    exit 2
  fi
  say "creating virtual environment $venv"
  "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
rm -f "$venv"/.installed-*

# pip takes a CPU build where it finds one (a wheel folder in pip's find-links, or PyTorch's CPU
# index given through PIP_EXTRA_INDEX_URL); from PyPI alone it is the default build, which bundles
# CUDA (several GB) and runs on the CPU too. Pinned here and below, nothing swaps it later.
say "torch $torch_version first, so no later requirement pulls another torch build"
"${pip[@]}" install -q "torch==$torch_version"

say "pinned requirements (pyspark, pyarrow, deltalake, ...)"
"${pip[@]}" install -q "torch==$torch_version" -r "$here/requirements.txt"

say "petastorm $petastorm_version without its stale setuptools pin"
"${pip[@]}" install -q --no-deps "petastorm==$petastorm_version"

wheel_dir=$cache/wheels
horovod_wheel=$(ls "$wheel_dir"/horovod-"$horovod_version"-*.whl 2>/dev/null | head -n 1 || true)
if [ -z "$horovod_wheel" ]; then
  say "horovod $horovod_version: building from the PyPI sdist with the C++17 fix (takes a few minutes)"
  build=$(mktemp -d)
  trap 'rm -rf "$build"' EXIT
  "${pip[@]}" download -q --no-deps --no-binary :all: "horovod==$horovod_version" -d "$build"
  tar -xzf "$build"/horovod-"$horovod_version".tar.gz -C "$build"
  src=$build/horovod-$horovod_version
  # Both files must agree, or the link fails with a duplicate gloo symbol.
  sed -i 's/set(CMAKE_CXX_STANDARD 14)/set(CMAKE_CXX_STANDARD 17)/' \
    "$src/CMakeLists.txt" "$src/horovod/torch/CMakeLists.txt"
  grep -q 'CMAKE_CXX_STANDARD 17' "$src/CMakeLists.txt"
  grep -q 'CMAKE_CXX_STANDARD 17' "$src/horovod/torch/CMakeLists.txt"
  mkdir -p "$wheel_dir"
  HOROVOD_WITH_PYTORCH=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 \
    HOROVOD_WITHOUT_TENSORFLOW=1 HOROVOD_WITHOUT_MXNET=1 MAKEFLAGS=-j2 \
    "${pip[@]}" wheel -q --no-deps --no-build-isolation "$src" -w "$build/out"
  cp "$build"/out/horovod-*.whl "$wheel_dir/"
  horovod_wheel=$(ls "$wheel_dir"/horovod-"$horovod_version"-*.whl | head -n 1)
else
  say "horovod $horovod_version: using cached wheel $horovod_wheel"
fi
"${pip[@]}" install -q --no-deps --force-reinstall "$horovod_wheel"

say "this project (editable)"
"${pip[@]}" install -q --no-deps --no-build-isolation -e "$here"

say "checking the stack imports together"
"$venv/bin/python" - <<'PY'
import deltalake, horovod.torch, numba, petastorm, pyarrow, pyspark, torch
print(f"[install] torch {torch.__version__}, pyspark {pyspark.__version__}, "
      f"pyarrow {pyarrow.__version__}, deltalake {deltalake.__version__}, "
      f"petastorm {petastorm.__version__}, horovod {horovod.__version__}, numba {numba.__version__}")
PY
touch "$stamp"
say "done in $(( $(date +%s) - start ))s"
