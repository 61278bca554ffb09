#!/usr/bin/env bash
# Set up napari-unet on a fresh Debian/Ubuntu machine: system libraries for Qt and
# a virtual display (when run as root or with sudo), then a virtual environment
# in .venv with the package installed in editable mode.
#   scripts/setup.sh          -> runtime + Qt ([gui] extra), for the demo and napari
#   scripts/setup.sh --test   -> also the test tools ([test] extra)
set -euo pipefail
cd "$(dirname "$0")/.."

extra="gui"
if [[ "${1:-}" == "--test" ]]; then extra="test"; fi

apt_packages=(xvfb xauth libgl1 libegl1 libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0
  libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-xinerama0 libxcb-xfixes0
  libxcb-shape0 libxcb-cursor0 libdbus-1-3 libfontconfig1 libglib2.0-0)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if (( ${#missing[@]} )); then
  if [[ $(id -u) -eq 0 ]]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else sudo="none"; fi
  if [[ "$sudo" == "none" ]]; then
    echo "setup.sh: please install these Debian packages for napari: ${missing[*]}" >&2
  else
    echo "setup.sh: installing system packages: ${missing[*]}" >&2
    # wait (up to 10 min) for another apt/dpkg run to finish instead of failing at once
    lock="-o DPkg::Lock::Timeout=600"
    $sudo apt-get $lock update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get $lock install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

python="${PYTHON:-python3}"
if [[ ! -x .venv/bin/python ]]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[${extra}]"
if [[ "$extra" == "test" ]]; then
  # PyTorch for the tests of the other Keras backends (JAX comes with the [test] extra):
  # its CPU build, from a local wheel where the machine has one, else from pytorch.org
  # (PyPI's default Linux build bundles 3 GB of CUDA libraries)
  wheel=$(ls /opt/wheels/torch-*+cpu-cp3*.whl 2>/dev/null | head -1 || true)
  if [[ -z "$wheel" ]] || ! .venv/bin/python -m pip install -q "$wheel" 2>/dev/null; then
    .venv/bin/python -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu \
      --extra-index-url https://pypi.org/simple
  fi
fi
echo "setup.sh: ready (.venv, extra [${extra}])" >&2
