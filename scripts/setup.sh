#!/usr/bin/env bash
# Installs every system dependency of rdprune from Debian's packages (run as root, or with sudo).
# Idempotent: packages already present are not fetched again.
set -euo pipefail

packages=(
  build-essential cmake ccache pkg-config git
  libtorch-dev libgloo-dev python3-torch python3-torchvision
  libgtest-dev libgmock-dev libbenchmark-dev
  libcli11-dev nlohmann-json3-dev libfmt-dev zlib1g-dev libstb-dev
  gnuplot-nox
  dataset-fashion-mnist
)

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#packages[@]} packages present"
  exit 0
fi
echo "setup: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
