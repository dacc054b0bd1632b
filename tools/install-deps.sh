#!/bin/sh
# Install what siamidx needs to build and test, from Debian 12 packages only.
# Idempotent: packages already present are not touched and apt is not even
# consulted when everything is installed. Must run as root when something is missing.
#   tools/install-deps.sh          build + test dependencies
#   tools/install-deps.sh --dev    also PyTorch (fixture generators, parity checks, benchmarks)
set -eu

pkgs="build-essential cmake pkg-config libfaiss-dev libopenblas-dev liblmdb-dev libstb-dev python3"
# The Python module (python/siamidx) and its tests: numpy, for Debian's python3.
pkgs="$pkgs python3-numpy"
# The libFuzzer targets (tools/fuzz.sh): clang, its runtimes (libFuzzer, ASan,
# UBSan) and its OpenMP (the library compiles with -fopenmp). gcc's TSan
# runtime (libtsan2) comes with build-essential.
pkgs="$pkgs clang libclang-rt-14-dev libomp-14-dev"
# tests/test_fsync.sh watches the fsync calls with strace.
pkgs="$pkgs strace"
# tests/test_slurm.sh runs the tools/slurm recipe on a one-node Slurm it starts
# itself (its own munged, slurmctld, slurmd, config and ports in a temporary
# folder). Installing them may also enable the system's munge/slurm services;
# those use /etc and are not what the test starts.
pkgs="$pkgs slurm-wlm munge"

# tests/test_html_report.sh renders the --html reports in headless Chromium;
# tests/test_manpage.sh renders the man page with groff.
pkgs="$pkgs chromium groff-base"
if [ "${1:-}" = "--dev" ]; then
    pkgs="$pkgs python3-torch python3-torchvision"
fi

missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "install-deps: missing packages:$missing (run as root to install them)" >&2
    exit 1
fi
echo "install-deps: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
