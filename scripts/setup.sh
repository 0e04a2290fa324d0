#!/usr/bin/env bash
# Installs what Spillway needs on a fresh Debian 12 (or Ubuntu) machine.
#
#   bash scripts/setup.sh          what building (npm ci) and running the demo need
#   bash scripts/setup.sh --test   also what the test suite needs: Chromium, the PyTorch
#                                  references, MPI, and the Python venv at $SPILLWAY_VENV
#   bash scripts/setup.sh --check  says what is missing and installs nothing (exit 1 if anything is)
#
# It says what it will install, installs only what is missing, and asks for root only to
# install system packages: apt-get directly as root, through sudo otherwise, and otherwise it
# prints the exact command to run as root and exits non-zero. A second run is instant.
set -euo pipefail

# ---------------------------------------------------------------------------------------------
# What gets installed, and why: the one list to edit. One package a line:
#   "debian-package|command that proves it is there (blank: ask dpkg)|why"

BUILD_PACKAGES=(
  "g++|g++|C++17 compiler: npm ci compiles the native engine and better-sqlite3"
  "make|make|drives those compiles (cmake-js and node-gyp generate Makefiles)"
  "cmake|cmake|configures the native engine (cmake-js)"
  "python3|python3|node-gyp runs it to build better-sqlite3"
  "libopenblas-dev||BLAS (cblas_sgemm) for the CPU backend's matrix products"
  "liburing-dev||io_uring for the SSD tier (without it the tier falls back to pread/pwrite)"
)

TEST_PACKAGES=(
  "chromium||the end-to-end GUI tests drive it headless (playwright-core, /usr/bin/chromium)"
  "python3-torch||PyTorch 1.13 for the readable references in tests/reference (/usr/bin/python3)"
  "python3-numpy||numpy for the same references (noise, bf16/fp16 rounding)"
  "python3-venv||creates the venv of the Hugging Face references below"
  "openmpi-bin||mpirun and Open MPI's libmpi.so.40 (dlopened by the engine): the ranks of train --ranks"
  "libopenmpi-dev||mpi.h: native/tests/dist_abi checks the engine's own Open MPI prototypes against it"
)

# The venv of the Hugging Face references (tests compare against transformers, peft, tokenizers).
VENV_REQUIREMENTS=(
  "torch==2.13.0+cpu"
  "transformers==5.18.0"
  "peft"
  "tokenizers"
  "safetensors"
  "jinja2"
  "numpy"
)

# Node: the CLI, the server, the build and the tests need what package.json's engines says.
NODE_MIN=$(sed -n 's/.*"node": *">= *\([0-9.]*\)".*/\1/p' "$(dirname "$0")/../package.json" | head -n1)

# ---------------------------------------------------------------------------------------------

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; }

want_test=0
check_only=0
for arg in "$@"; do
  case "$arg" in
    --test) want_test=1 ;;
    --check) check_only=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "setup: unknown option $arg" >&2; usage >&2; exit 2 ;;
  esac
done

say() { echo "setup: $*"; }

packages=("${BUILD_PACKAGES[@]}")
[ "$want_test" = 1 ] && packages+=("${TEST_PACKAGES[@]}")

installed() {
  local pkg=$1 cmd=$2
  if [ -n "$cmd" ]; then
    command -v "$cmd" >/dev/null 2>&1
  else
    [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" = "install ok installed" ]
  fi
}

missing=()
for entry in "${packages[@]}"; do
  IFS='|' read -r pkg cmd why <<<"$entry"
  installed "$pkg" "$cmd" || missing+=("$pkg|$why")
done

node_ok=1
node_version=$(node --version 2>/dev/null | sed 's/^v//') || node_version=""
if [ -z "$node_version" ] || [ "$(printf '%s\n%s\n' "$NODE_MIN" "$node_version" | sort -V | head -n1)" != "$NODE_MIN" ]; then
  node_ok=0
fi

if [ ${#missing[@]} -eq 0 ]; then
  say "system packages: all present"
else
  say "system packages to install (Debian names):"
  for entry in "${missing[@]}"; do
    IFS='|' read -r pkg why <<<"$entry"
    printf '  %-16s %s\n' "$pkg" "$why"
  done
fi

names=()
for entry in "${missing[@]}"; do names+=("${entry%%|*}"); done
apt_command="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${names[*]:-}"

if [ "$check_only" = 1 ]; then
  [ "$node_ok" = 1 ] || say "Node ${node_version:-(none)} found; Spillway needs Node >= $NODE_MIN"
  [ ${#missing[@]} -eq 0 ] && [ "$node_ok" = 1 ] || exit 1
  exit 0
fi

if [ ${#missing[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    say "apt-get not found: this script installs Debian packages. Install the equivalents of: ${names[*]}" >&2
    exit 1
  fi
  if [ "$(id -u)" = 0 ]; then
    as_root=()
  elif command -v sudo >/dev/null 2>&1; then
    say "installing needs root: asking sudo"
    as_root=(sudo)
  else
    say "installing needs root, and sudo is not here. Run as root:" >&2
    echo "  $apt_command" >&2
    say "then run this script again." >&2
    exit 1
  fi
  "${as_root[@]}" apt-get update -qq
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${names[@]}"
  say "installed ${names[*]}"
fi

if [ "$node_ok" = 0 ]; then
  say "Node ${node_version:-(none)} found; Spillway needs Node >= $NODE_MIN (with npm)." >&2
  say "Debian 12's own nodejs is 18: install a current one (nodejs.org, or NodeSource's Debian packages)." >&2
  exit 1
fi
say "node $node_version"

[ "$want_test" = 1 ] || exit 0

# ---------------------------------------------------------------------------------------------
# The venv of the Hugging Face references. A stamp file holds the requirement list it was made
# with: when it matches, there is nothing to do.

venv=${SPILLWAY_VENV:-$HOME/.cache/spillway/venv}
stamp="$venv/.spillway-requirements"
wanted=$(printf '%s\n' "${VENV_REQUIREMENTS[@]}")
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
  say "python venv $venv: up to date"
  exit 0
fi

python=${SPILLWAY_PYTHON:-python3}
if [ ! -x "$venv/bin/python" ]; then
  say "creating the python venv $venv (with $($python --version 2>&1))"
  mkdir -p "$(dirname "$venv")"
  "$python" -m venv "$venv"
fi

# Offline from the machine's local package index when it has one; otherwise PyPI, with
# PyTorch's own index for the +cpu build.
pip_args=(install --disable-pip-version-check --quiet)
if [ -z "${PIP_INDEX_URL:-}" ] && [ -d /opt/pypi/simple ]; then
  export PIP_INDEX_URL=file:///opt/pypi/simple
elif [ -z "${PIP_INDEX_URL:-}" ]; then
  pip_args+=(--extra-index-url https://download.pytorch.org/whl/cpu)
fi
say "installing into the venv from ${PIP_INDEX_URL:-PyPI}: ${VENV_REQUIREMENTS[*]}"
rm -f "$stamp"
"$venv/bin/python" -m pip "${pip_args[@]}" "${VENV_REQUIREMENTS[@]}"
printf '%s\n' "$wanted" >"$stamp"
say "python venv $venv: ready"
