#!/usr/bin/env bash
# Prepares a fresh Debian/Ubuntu machine (with only the Go and Rust toolchains) for the integration
# tests: installs the few tools tests/testenv/testenv uses, only when missing, then builds (or reuses
# from the cache) etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok (Go >= 1.26).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# command -> Debian package providing it
declare -A NEED=(
    [openssl]=openssl      # CA, serving certificate and service-account keys
    [curl]=curl            # readiness probes
    [setsid]=util-linux    # detach the control-plane processes
    [flock]=util-linux     # serialize concurrent builds of the cache
    [base64]=coreutils
    [stat]=coreutils       # where each component's latest start begins in its log
    [awk]=mawk
)
missing=()
for cmd in "${!NEED[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("${NEED[$cmd]}")
done
if ! [[ -e /etc/ssl/certs/ca-certificates.crt ]]; then
    missing+=(ca-certificates)    # HTTPS to the Go module proxy
fi

if [[ ${#missing[@]} -gt 0 ]]; then
    # shellcheck disable=SC2207
    pkgs=($(printf '%s\n' "${missing[@]}" | sort -u))
    echo "testenv-prereqs: installing ${pkgs[*]}" >&2
    SUDO=""
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || { echo "testenv-prereqs: need root (or sudo) to install ${pkgs[*]}" >&2; exit 1; }
        SUDO=sudo
    fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${pkgs[@]}"
fi

if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
    export PATH="/usr/local/go/bin:$PATH"
fi

exec "$ROOT/tests/testenv/testenv" build
