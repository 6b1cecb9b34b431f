#!/usr/bin/env bash
# Packaging checks, run by .ci/run after the tests:
#
#  1. manifests: `kubectl apply -k manifests/ --dry-run=server` against a real control plane
#     (tests/testenv), for the default (wide RBAC) and the narrow RBAC variant; then a real apply.
#     kubectl rather than a Rust test: kustomize (resources, components, patches) and the server's
#     strict field validation run exactly as for a user, with nothing re-implemented.
#  2. image: the Dockerfile's final stage is built with buildah from the static binary and
#     packaging/rootfs.sh (the Dockerfile's Rust base image cannot be pulled here: no registry is
#     reachable), unpacked with umoci, and the binary is started from the unpacked image the way the
#     Deployment runs it: as user 65532 with no capabilities, on a read-only root, with the
#     Deployment's own arguments and an in-cluster service account, the API server reached by a
#     name that only a DNS server on loopback resolves. It must become the leader, answer the
#     probes and the metrics port, confine its hook workers, reconcile an example controller (a
#     Jsonnet hook, so a worker is re-executed from the image's binary), then exit cleanly on
#     SIGTERM and release its Lease.
#
# kubectl is built from the Go module proxy at the control plane's pinned version (Debian's
# kubernetes-client is 1.20: too old for a 1.35 server and for kustomize components) and cached
# beside the control-plane binaries. The static binary's build directory is cached too
# (PACKAGING_TARGET_DIR), so a warm run only recompiles kubelambda itself. PACKAGING_KEEP=1 keeps
# the work directory (image, logs) for a look afterwards.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=../tests/testenv/versions.env
. tests/testenv/versions.env

CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/kubelambda-testenv"
KUBECTL_DIR="$CACHE/kubectl-${KUBERNETES_VERSION}"
KUBECTL="$KUBECTL_DIR/bin/kubectl"
TARGET_DIR="${PACKAGING_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kubelambda-packaging/target}"
STORAGE=(--storage-driver vfs)          # no fuse-overlayfs or overlay-on-overlay needed
IMAGE=localhost/kubelambda:ci
# The ports the Deployment's arguments name; checked below against manifests/deployment.yaml.
HEALTH_PORT=8081
METRICS_PORT=9999

log() { printf 'packaging: %s\n' "$*" >&2; }
die() { printf 'packaging: error: %s\n' "$*" >&2; exit 1; }
step() { STEP_T0=$SECONDS; log "== $*"; }
done_step() { log "   done in $((SECONDS - STEP_T0))s"; }

WORK="$(mktemp -d /tmp/kubelambda-packaging.XXXXXX)"
CONTROLLER_PID=""
# The controller is PID 1 of its own PID namespace, the only child of `unshare`, which does not
# pass signals on: SIGTERM goes to the controller itself, as a container runtime sends it.
stop_controller() {
    local pid
    pid="$(cat "/proc/$CONTROLLER_PID/task/$CONTROLLER_PID/children" 2>/dev/null || true)"
    [[ -n "$pid" ]] && kill -TERM $pid 2>/dev/null
    local rc=0
    wait "$CONTROLLER_PID" || rc=$?
    CONTROLLER_PID=""
    return $rc
}
cleanup() {
    local rc=$?
    set +e
    if [[ -n "$CONTROLLER_PID" ]] && kill -0 "$CONTROLLER_PID" 2>/dev/null; then
        stop_controller || true
    fi
    if [[ $rc -ne 0 && -f "$WORK/controller.log" ]]; then
        log "last lines of the controller's log:"
        tail -n 30 "$WORK/controller.log" | sed 's/^/    /' >&2
    fi
    [[ -n "${DNS_PID:-}" ]] && kill "$DNS_PID" 2>/dev/null
    [[ -d "$WORK/testenv" ]] && tests/testenv/testenv down "$WORK/testenv"
    buildah "${STORAGE[@]}" rmi -f "$IMAGE" >/dev/null 2>&1
    [[ -n "${PACKAGING_KEEP:-}" ]] && log "kept $WORK" || rm -rf "$WORK"
    exit $rc
}
trap cleanup EXIT

# ---------------------------------------------------------------------------------------------------
step "tools"
declare -A NEED=([buildah]=buildah [umoci]=umoci [readelf]=binutils [unshare]=util-linux [chroot]=coreutils [curl]=curl [python3]=python3)
missing=()
for cmd in "${!NEED[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("${NEED[$cmd]}")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    # shellcheck disable=SC2207
    pkgs=($(printf '%s\n' "${missing[@]}" | sort -u))
    log "installing ${pkgs[*]}"
    [[ $(id -u) -eq 0 ]] || die "need root to install ${pkgs[*]} (and to build and unpack images)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
fi
[[ $(id -u) -eq 0 ]] || die "the image check needs root (buildah's vfs storage, chroot, mounts)"
if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
    export PATH="/usr/local/go/bin:$PATH"
fi

# kubectl v$KUBERNETES_VERSION: the library's own command (k8s.io/kubectl/pkg/cmd) in a generated
# module, built once per version into the cache; one build at a time.
build_kubectl() {
    local tmp="$1"
    cd "$tmp"
    go mod init kubelambda-ci.invalid/kubectl
    go mod edit -go=1.25.0 -require="k8s.io/kubectl@v0.${KUBERNETES_VERSION#*.}" \
        -require="k8s.io/component-base@v0.${KUBERNETES_VERSION#*.}"
    cat >main.go <<'GO'
// Command kubectl, built from the k8s.io/kubectl library for kubelambda's CI.
package main

import (
	"k8s.io/component-base/cli"
	"k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"
)

func main() {
	if err := cli.RunNoErrOutput(cmd.NewDefaultKubectlCommand()); err != nil {
		util.CheckErr(err)
	}
}
GO
    go mod tidy
    local minor="${KUBERNETES_VERSION#*.}" flags="-s -w" pkg
    minor="${minor%%.*}"
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        flags+=" -X $pkg.gitVersion=v${KUBERNETES_VERSION} -X $pkg.gitMajor=${KUBERNETES_VERSION%%.*}"
        flags+=" -X $pkg.gitMinor=${minor} -X $pkg.gitTreeState=clean"
    done
    go build -trimpath -ldflags "$flags" -o "$tmp/kubectl" .
    "$tmp/kubectl" version --client
}
if [[ ! -x "$KUBECTL" ]]; then
    command -v go >/dev/null 2>&1 || die "go not found: needed once to build kubectl v${KUBERNETES_VERSION}"
    mkdir -p "$KUBECTL_DIR"
    exec 9>"$KUBECTL_DIR/build.lock"
    flock 9
    if [[ ! -x "$KUBECTL" ]]; then
        log "building kubectl v${KUBERNETES_VERSION} into $KUBECTL_DIR (first run only)"
        tmp="$(mktemp -d "$KUBECTL_DIR/build.XXXXXX")"
        if ! (export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-buildvcs=false -mod=mod" GOWORK=off
              build_kubectl "$tmp") >"$tmp/build.log" 2>&1; then
            tail -n 25 "$tmp/build.log" | sed 's/^/    /' >&2
            die "building kubectl failed; log: $tmp/build.log"
        fi
        mkdir -p "$KUBECTL_DIR/bin"
        mv "$tmp/kubectl" "$KUBECTL"
        rm -rf "$tmp"
    fi
    exec 9>&-
fi
"$KUBECTL" version --client | sed 's/^/    /' >&2
done_step

# ---------------------------------------------------------------------------------------------------
step "static binary and image"
host="$(rustc -vV | sed -n 's/^host: //p')"
RUSTFLAGS="-C target-feature=+crt-static" CARGO_TARGET_DIR="$TARGET_DIR" \
    cargo build --release --locked --quiet --target "$host"
binary="$TARGET_DIR/$host/release/kubelambda"
# The stand-in for the Dockerfile's `build` stage: DIR/rootfs, as that stage leaves /rootfs.
packaging/rootfs.sh "$binary" "$WORK/build/rootfs"
buildah "${STORAGE[@]}" bud --quiet --build-context build="$WORK/build" -t "$IMAGE" . >/dev/null
config="$(buildah "${STORAGE[@]}" inspect --type image --format '{{.OCIv1.Config.User}} {{.OCIv1.Config.Entrypoint}} {{.OCIv1.Config.Cmd}}' "$IMAGE")"
[[ "$config" == '65532:65532 [/usr/local/bin/kubelambda] [run]' ]] \
    || die "unexpected image config (user, entrypoint, cmd): $config"
buildah "${STORAGE[@]}" push --quiet "$IMAGE" "oci:$WORK/oci:ci" >/dev/null
umoci unpack --image "$WORK/oci:ci" "$WORK/bundle" >/dev/null
IMG="$WORK/bundle/rootfs"
files="$(cd "$IMG" && find . -mindepth 1 \( -type f -o -type l \) | sort | tr '\n' ' ')"
[[ "$files" == "./etc/group ./etc/nsswitch.conf ./etc/passwd ./etc/ssl/certs/ca-certificates.crt ./usr/local/bin/kubelambda " ]] \
    || die "unexpected files in the image: $files"
size="$(du -sm "$IMG" | cut -f1)"
log "   image $IMAGE: ${size} MiB unpacked, user 65532, entrypoint /usr/local/bin/kubelambda"
done_step

# ---------------------------------------------------------------------------------------------------
step "control plane"
tests/testenv/testenv up "$WORK/testenv" --owner-pid $$
export KUBECONFIG="$WORK/testenv/kubeconfig"
k() { "$KUBECTL" --request-timeout=30s "$@"; }
done_step

step "manifests: server-side dry-run"
# Namespaced objects cannot be dry-run into a namespace that a dry run only pretends to create.
k apply -f manifests/namespace.yaml >/dev/null
k apply -k manifests/ --dry-run=server >"$WORK/dry-run.txt"
sed 's/^/    /' "$WORK/dry-run.txt" >&2
grep -q '^deployment.apps/kubelambda .*(server dry run)$' "$WORK/dry-run.txt" \
    || die "the dry run did not reach the Deployment"
# The narrow RBAC variant, used as documented: the manifests plus the component and a
# controller's ClusterRole, in a kustomization of one's own (kustomize takes relative paths only).
mkdir -p "$WORK/narrow"
rel="$(realpath --relative-to="$WORK/narrow" "$ROOT")"
cat >"$WORK/narrow/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- $rel/manifests
- $rel/examples/useless-controller/rbac.yaml
components:
- $rel/manifests/rbac-narrow
EOF
k kustomize --load-restrictor=LoadRestrictionsNone "$WORK/narrow" >"$WORK/narrow.yaml"
# Every object's kind, name and rules, one a line: the own ClusterRole is patched, and no role
# grants '*'.
"$KUBECTL" create --dry-run=client -f "$WORK/narrow.yaml" -o jsonpath='{.kind}/{.metadata.name} {.rules}{"\n"}' \
    | grep -E '^(Cluster)?Role/' >"$WORK/narrow-rules"
grep -q '^ClusterRole/kubelambda \[{.*compositecontrollers' "$WORK/narrow-rules" \
    || die "the narrow variant did not replace the rules of the ClusterRole kubelambda: $(cat "$WORK/narrow-rules")"
grep -q '^Role/kubelambda-leader-election ' "$WORK/narrow-rules" || die "the narrow variant has no leader-election Role"
if grep -F '"*"' "$WORK/narrow-rules" >&2; then
    die "the narrow variant still grants '*' (above)"
fi
k apply -f "$WORK/narrow.yaml" --dry-run=server | sed 's/^/    /' >&2
done_step

step "manifests: apply"
k apply -k manifests/ --server-side >/dev/null
k wait --for=condition=Established --timeout=60s crd/compositecontrollers.metacontroller.k8s.io >/dev/null
done_step

# ---------------------------------------------------------------------------------------------------
step "image: run the binary as the Deployment does"
# The container's arguments, one a line, as the cluster has the Deployment.
k -n kubelambda get deployment kubelambda \
    -o jsonpath='{range .spec.template.spec.containers[0].args[*]}{@}{"\n"}{end}' >"$WORK/args"
mapfile -t ARGS <"$WORK/args"
log "   args: ${ARGS[*]}"
grep -qx -- "--health-probe-bind-address=:$HEALTH_PORT" "$WORK/args" || die "the Deployment's health port is not $HEALTH_PORT"
grep -qx -- "--metrics-address=:$METRICS_PORT" "$WORK/args" || die "the Deployment's metrics port is not $METRICS_PORT"
grep -qx -- "--leader-election" "$WORK/args" || die "the Deployment does not elect a leader"
for port in $HEALTH_PORT $METRICS_PORT; do
    ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || die "port $port is taken on this machine"
done

# What a container runtime and the kubelet add to the image's root: mount points for /proc and
# /dev, /etc/hosts and /etc/resolv.conf, and the service account. The API server is reached by the
# name kubernetes.default.svc (its certificate names it), which only a DNS server on 127.0.0.1
# knows, so the static binary's name resolution is checked as it works for Services in a
# cluster. Where UDP port 53 is taken here, /etc/hosts names it instead (and the log says so).
mkdir -p "$IMG/proc" "$IMG/dev" "$IMG/var/run/secrets/kubernetes.io/serviceaccount"
touch "$IMG/etc/hosts" "$IMG/etc/resolv.conf"
sa="$WORK/serviceaccount"
mkdir -p "$sa"
printf 'kubelambda' >"$sa/namespace"
cp "$WORK/testenv/pki/ca.crt" "$sa/ca.crt"
sed -n 's/^ *token: *//p' "$KUBECONFIG" | tr -d '\n' >"$sa/token"
[[ -s "$sa/token" ]] || die "no token in $KUBECONFIG"
printf '127.0.0.1 localhost\n' >"$WORK/hosts"
printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:2\n' >"$WORK/resolv.conf"
API_HOST=kubernetes.default.svc
python3 .ci/dns-responder.py "$API_HOST" 53 >"$WORK/dns.log" 2>&1 &
DNS_PID=$!
for _ in $(seq 1 50); do
    grep -qx ready "$WORK/dns.log" || ! kill -0 "$DNS_PID" 2>/dev/null && break
    sleep 0.1
done
DNS_CHECKED=""
if grep -qx ready "$WORK/dns.log"; then
    DNS_CHECKED=1
else
    log "   no DNS server on 127.0.0.1:53 ($(tail -n 1 "$WORK/dns.log")); the API server's name comes from /etc/hosts, DNS is not checked"
    printf '127.0.0.1 %s\n' "$API_HOST" >>"$WORK/hosts"
fi
chmod -R a+rX "$sa" "$WORK/hosts" "$WORK/resolv.conf"
api_port="$(sed -n 's|^ *server: https://127.0.0.1:\([0-9]*\)$|\1|p' "$KUBECONFIG")"

# A mount namespace of its own: the image's root bound read-only (readOnlyRootFilesystem), then
# the binary started as 65532:65532 (runAsNonRoot; the switch from root drops every capability),
# with only the environment a pod has.
cat >"$WORK/start.sh" <<'EOF'
set -euo pipefail
img="$1" sa="$2" hosts="$3" resolv="$4"; shift 4
mount --make-rprivate /
mount --bind "$img" "$img"
mount -t proc proc "$img/proc"
mount --rbind /dev "$img/dev"
mount --bind "$hosts" "$img/etc/hosts"
mount --bind "$resolv" "$img/etc/resolv.conf"
mount --bind "$sa" "$img/var/run/secrets/kubernetes.io/serviceaccount"
mount -o remount,bind,ro "$img"
exec chroot --userspec=65532:65532 --groups=65532 "$img" "$@"
EOF
env -i KUBERNETES_SERVICE_HOST="$API_HOST" KUBERNETES_SERVICE_PORT="$api_port" \
    POD_NAME=kubelambda-ci KUBELAMBDA_LOG_LEVEL="info,kubelambda::hooks::sandbox=debug" \
    unshare --mount --pid --fork --kill-child bash "$WORK/start.sh" "$IMG" "$sa" "$WORK/hosts" "$WORK/resolv.conf" \
    /usr/local/bin/kubelambda "${ARGS[@]}" >"$WORK/controller.log" 2>&1 &
CONTROLLER_PID=$!

# wait_for DESCRIPTION COMMAND...: up to 60s, and only while the controller runs.
wait_for() {
    local what="$1" i; shift
    for i in $(seq 1 300); do
        "$@" >/dev/null 2>&1 && return 0
        kill -0 "$CONTROLLER_PID" 2>/dev/null || die "the controller exited while waiting for $what"
        sleep 0.2
    done
    die "timed out waiting for $what"
}
probe() { [[ "$(curl -fsS --max-time 2 "http://127.0.0.1:$1$2")" == "$3"* ]]; }
wait_for "/healthz" probe "$HEALTH_PORT" /healthz ok
wait_for "/readyz to say leader" probe "$HEALTH_PORT" /readyz "ok: leader"
k -n kubelambda get lease kubelambda -o jsonpath='{.spec.holderIdentity}' | grep -q '^kubelambda-ci' \
    || die "the Lease kubelambda/kubelambda is not held by the controller"
curl -fsS --max-time 5 "http://127.0.0.1:$METRICS_PORT/metrics" | grep -q '^# TYPE' \
    || die "no metrics on :$METRICS_PORT/metrics"

# A controller whose Jsonnet hook runs in a worker re-executed from the image's binary.
k apply -f examples/useless-controller/crd.yaml >/dev/null
k wait --for=condition=Established --timeout=60s crd/uselesspods.example.com >/dev/null
k apply -f examples/useless-controller/controller-inline.yaml >/dev/null
k apply -f examples/useless-controller/uselesspod.yaml >/dev/null
wait_for "the child Deployment of the example UselessPod" \
    k get deployment -l app=useless -o name --all-namespaces
k get deployment -l app=useless -A -o name | sed 's/^/    created: /' >&2
grep -q 'hook workers confined' "$WORK/controller.log" \
    || die "the hook workers did not report their confinement (no-new-privs and seccomp) from the image"
if grep -q 'hook workers run without' "$WORK/controller.log"; then
    die "hook workers in the image run unconfined: $(grep 'hook workers run without' "$WORK/controller.log")"
fi
stop_controller || die "the controller did not exit cleanly on SIGTERM (status $?)"
k -n kubelambda get lease kubelambda -o jsonpath='{.spec.holderIdentity}' | grep -q . \
    && die "the controller did not release its Lease on SIGTERM"
if [[ -n "$DNS_CHECKED" ]]; then
    grep -q "^query 1 $API_HOST$" "$WORK/dns.log" || die "the controller never asked the DNS server for $API_HOST"
    log "   the image's binary resolved $API_HOST through /etc/resolv.conf"
fi
if grep -E ' (WARN|ERROR) ' "$WORK/controller.log" >"$WORK/controller-warnings"; then
    log "   the controller's warnings (not failures):"
    sed 's/^/    /' "$WORK/controller-warnings" >&2
fi
done_step
log "all packaging checks passed"
