#!/usr/bin/env bash
# rootfs.sh BINARY OUT: lays out the container image's whole filesystem in OUT, from a statically
# linked kubelambda BINARY and this machine's CA bundle. The Dockerfile's build stage runs it, and
# so does .ci/packaging.sh (which cannot pull the Dockerfile's Rust base image), so both images
# hold exactly the same files:
#
#   /usr/local/bin/kubelambda      the controller; its hook evaluation workers are the same file,
#                                  started again through /proc/self/exe (src/hooks/sandbox)
#   /etc/passwd, /etc/group        root and `nonroot` (65532), so that runAsNonRoot can check the
#                                  numeric USER and tools show a name
#   /etc/nsswitch.conf             host names from /etc/hosts, then DNS (static glibc reads it)
#   /etc/ssl/certs/ca-certificates.crt
#                                  trust roots for webhooks without a caBundle
#   /tmp                           1777, for a root filesystem that is not read-only
set -euo pipefail

die() { printf 'rootfs.sh: error: %s\n' "$*" >&2; exit 1; }

[[ $# -eq 2 ]] || die "usage: rootfs.sh BINARY OUT"
binary="$1" out="$2"
ca_bundle="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"

[[ -x "$binary" ]] || die "$binary is not an executable file"
[[ -s "$ca_bundle" ]] || die "no CA bundle at $ca_bundle (install Debian's ca-certificates)"
# The image has no dynamic loader and no shared libraries: refuse a binary that would need them.
for tool in readelf strip; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found (install binutils)"
done
if readelf --program-headers "$binary" | grep -q 'INTERP'; then
    die "$binary is dynamically linked ($(readelf --program-headers "$binary" | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')); build it with RUSTFLAGS='-C target-feature=+crt-static' and an explicit --target"
fi
if readelf --dynamic "$binary" | grep -q '(NEEDED)'; then
    die "$binary needs shared libraries: $(readelf --dynamic "$binary" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' | tr '\n' ' ')"
fi

rm -rf "$out"
mkdir -p "$out/usr/local/bin" "$out/etc/ssl/certs" "$out/tmp"
# Without the release profile's line tables (about 100 MB); the symbols stay, so a backtrace
# still names functions.
strip --strip-debug -o "$out/usr/local/bin/kubelambda" "$binary"
chmod 0755 "$out/usr/local/bin/kubelambda"
install -m 0644 "$ca_bundle" "$out/etc/ssl/certs/ca-certificates.crt"
chmod 1777 "$out/tmp"
cat >"$out/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
PASSWD
cat >"$out/etc/group" <<'GROUP'
root:x:0:
nonroot:x:65532:
GROUP
cat >"$out/etc/nsswitch.conf" <<'NSS'
hosts: files dns
NSS
chmod 0644 "$out/etc/passwd" "$out/etc/group" "$out/etc/nsswitch.conf"
