#!/usr/bin/env bash
# The wheel in a fresh virtual environment (CI runs this): build the wheel against the project's torch
# (`pip wheel --no-build-isolation`: the ninja objects of `make setup` are reused, only the links run), install
# it with the same torch into a new venv, and run a test subset there, from outside the source tree so that
# `import fastnoise` is the installed wheel.
#   tools/wheel_check.sh [PYTHON]    (default: .venv/bin/python; the wheel and venv go to a temporary folder)
# FASTNOISE_CPU_CAPABILITIES as for setup.py (unset: every capability of this architecture; `make wheel-check`
# and CI pass `host`, the ones this CPU runs, i.e. what make setup compiled). The venv is a plain one (no
# system site packages); torch is pinned to the version the wheel was built against, from the configured index.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
py=${1:-.venv/bin/python}
work=$(mktemp -d /tmp/fastnoise-wheel.XXXXXX)
trap 'rm -rf "$work"' EXIT
t0=$(date +%s)
torch_pin=$("$py" -c 'import torch; print(torch.__version__)')
# triton too (the [triton] extra, pinned as in the dev venv): the op tests iterate over every backend of the table
triton_pin=$("$py" -c 'import triton; print(triton.__version__)')
# setup.py rewrites fastnoise/_build_info.json for what it builds: keep the editable install's own
[ -f fastnoise/_build_info.json ] && cp fastnoise/_build_info.json "$work/build_info.json"
# build/lib keeps the modules of earlier builds: a capability no longer built would ride along in the wheel
rm -f build/lib*/fastnoise/_C_*.so
MAX_JOBS=${MAX_JOBS:-2} "$py" -m pip --disable-pip-version-check wheel -q --no-build-isolation --no-deps -w "$work/dist" .
[ -f "$work/build_info.json" ] && cp "$work/build_info.json" fastnoise/_build_info.json
wheel=$(ls "$work"/dist/fastnoise-*.whl)
echo "[wheel] built $(basename "$wheel") ($(du -h "$wheel" | cut -f1)) in $(( $(date +%s) - t0 )) s:" \
  $(unzip -l "$wheel" | grep -o 'fastnoise/_C_[a-z0-9_]*' | sort -u | tr '\n' ' ')
"$py" -m venv "$work/venv"
vpy="$work/venv/bin/python"
"$vpy" -m pip --disable-pip-version-check install -q "torch==$torch_pin" "triton==$triton_pin" numpy tqdm safetensors pytest pytest-timeout
"$vpy" -m pip --disable-pip-version-check install -q --no-deps "$wheel"
echo "[wheel] fresh venv with torch $torch_pin + the wheel in $(( $(date +%s) - t0 )) s"
cd "$work"
"$vpy" - "$work/venv" <<'EOF'
import sys, fastnoise
assert fastnoise.__file__.startswith(sys.argv[1]), f"fastnoise imported from {fastnoise.__file__}, not the venv"
print("[wheel] import fastnoise:", fastnoise.__file__, "capability", fastnoise.cpu_capability())
EOF
"$vpy" -m fastnoise info | sed 's/^/[wheel] /'
# the build, capability dispatch and bit-identity tests, the RNG, a noise op and mask_blend on the C++ kernels
"$vpy" -m pytest -q -p no:cacheprovider --timeout=600 -k "not triton" \
  "$root/tests/test_build.py" "$root/tests/test_cpu_capability.py" "$root/tests/ops/test_philox.py" \
  "$root/tests/ops/test_noise_add.py"
echo "[wheel] passed in $(( $(date +%s) - t0 )) s"
