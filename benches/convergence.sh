#!/usr/bin/env bash
# Convergence benchmark: how fast, and at what cost, controllers turn N parents into 2 ConfigMap
# children each plus a status, against the physical limit (a raw client writing the same objects)
# and Metacontroller, all on one real control plane in one run.
#
# One control plane (tests/testenv/testenv up, kube-controller-manager with only its namespace
# controller, so that no garbage collector or root-CA publisher adds API traffic) serves every
# phase. A phase is one contender at one N in its own fresh namespace; phases run one at a time,
# repeated in ROUNDS rounds. Every contender gets the same parent CRD (BenchParent,
# bench.kubelambda.dev/v1) and the same Jsonnet hook (two ConfigMaps `<parent>-a`/`-b`,
# status `desiredChildren: 2`):
#
#   raw                      the client below writes the children and the status itself as
#                            each parent is created (up to 64 creates and 64 parents' writes in
#                            flight): the physical limit, no controller, no watches, no hook
#   kubelambda-ssa           kubelambda run, inline Jsonnet hook, --apply-strategy server-side-apply
#   kubelambda-dynamic       kubelambda run, inline Jsonnet hook, --apply-strategy dynamic-apply
#   kubelambda-webhook       kubelambda run (server-side apply), webhook hook served by
#                            `kubelambda httpd` on loopback
#   metacontroller-tuned     Metacontroller, same webhook, --client-go-qps 1000 --client-go-burst 2000
#   metacontroller-defaults  Metacontroller, same webhook, its defaults (QPS 5, burst 10): slow, so
#                            only at N <= MC_DEFAULTS_MAX_N and in the first MC_DEFAULTS_ROUNDS rounds
#
# A phase: create the namespace, the CompositeController (labelled for the contender's
# --target-label-selector) and start the controller (and hook server) with setsid; create one
# canary parent and wait until it converged (controller up, caches synced, hook warm); then
# create N parents, 64 at a time, and time until every parent has `status.desiredChildren: 2`
# and both of its ConfigMaps exist (seen through watches). Then wait until the API server sees no
# new counted request for 3 s (writes after convergence count too), stop the controller, delete
# the namespace and wait until it is gone.
#
# Measured per phase (the client is target/release/deps/convergence-*, benches/convergence/):
#   time      creation of the first parent -> the last parent converged
#   API calls the API server's own apiserver_request_total, before and after the phase, by verb
#             (POST create, PUT update, PATCH merge/JSON patch, APPLY server-side apply, GET,
#             LIST); WATCH, leases, namespaces and non-resource requests (discovery, /metrics)
#             are left out, and so are the client's own N parent creates. The same counter for
#             every contender; only the phase's contender writes to the cluster meanwhile.
#   CPU       utime+stime of the controller's session (kubelambda's evaluation workers are child
#             processes in it; exited ones through cutime/cstime), phase start -> settled
#   RSS       peak of the session's summed VmRSS, sampled every 100 ms during the phase
#   hook      the same two for the `kubelambda httpd` hook server of the webhook contenders
# The report gives per contender the median over rounds (time also min-max), writes per parent,
# and the ratios against raw and against metacontroller-tuned from the same run; it is printed
# and written to <target dir>/bench/convergence.md (raw results: convergence.jsonl next to it).
#
# Usage:
#   METACONTROLLER=/path/to/metacontroller benches/convergence.sh
#   COUNTS="300 1000 10000" ROUNDS=1 METACONTROLLER=... benches/convergence.sh
#
# Metacontroller is not on the Go module proxy and no binary is shipped with kubelambda: build
# it from a checkout of github.com/metacontroller/metacontroller (tag v4.17.2 was used) with Go
# >= the version its go.mod names; its modules come from the Go module proxy:
#   cd /tmp/metacontroller && GOTOOLCHAIN=local CGO_ENABLED=0 \
#       go build -o /tmp/metacontroller-bin/metacontroller ./pkg/cmd/metacontroller
# Without METACONTROLLER the two Metacontroller rows are skipped (and so are the ratios to it).
#
# Environment:
#   METACONTROLLER      Metacontroller binary (see above); unset: its rows are skipped
#   COUNTS              parent counts, in order (default "300 1000"; 10000 works but is slow)
#   ROUNDS              rounds (default 3)
#   CONTENDERS          which contenders, in order (default: all six above)
#   MC_DEFAULTS_MAX_N   largest N for metacontroller-defaults (default 300: ~4 min per phase)
#   MC_DEFAULTS_ROUNDS  rounds for metacontroller-defaults (default 1)
#   CONCURRENCY         the client's requests in flight (default 64)
#   PHASE_TIMEOUT       seconds before a phase fails (default 900)
#   KUBELAMBDA          kubelambda binary; unset: cargo build --release, target/release/kubelambda
#   CONVERGENCE_CLIENT  the client binary; unset: cargo bench --bench convergence --no-run
#   OUT                 Markdown report (default <target dir>/bench/convergence.md)
#   TESTENV_BIN_DIR     prebuilt control-plane binaries (see tests/testenv/testenv)
#
# Time: about 16 minutes with the defaults on a 2-CPU machine (31 phases: 4 minutes of it the one
# metacontroller-defaults phase, ~15-20 s per other phase with namespace set-up and deletion);
# each round at 10,000 parents adds several minutes more (not measured here).
#
# Exit status: 0 done, 1 a check or a phase failed, 2 a prerequisite is missing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$ROOT/$TARGET_DIR" ;; esac
OUT="${OUT:-$TARGET_DIR/bench/convergence.md}"
COUNTS="${COUNTS:-300 1000}"
ROUNDS="${ROUNDS:-3}"
CONTENDERS="${CONTENDERS:-raw kubelambda-ssa kubelambda-dynamic kubelambda-webhook metacontroller-tuned metacontroller-defaults}"
MC_DEFAULTS_MAX_N="${MC_DEFAULTS_MAX_N:-300}"
MC_DEFAULTS_ROUNDS="${MC_DEFAULTS_ROUNDS:-1}"
CONCURRENCY="${CONCURRENCY:-64}"
PHASE_TIMEOUT="${PHASE_TIMEOUT:-900}"
LABEL_KEY="bench.kubelambda.dev/contender"

for arg in "$@"; do
    case "$arg" in
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "convergence: unknown argument: $arg (try --help)" >&2; exit 2 ;;
    esac
done

log() { echo "[bench $(date +%H:%M:%S)] $*" >&2; }
die() { echo "convergence: $*" >&2; exit 1; }

for c in $CONTENDERS; do
    case "$c" in
        raw|kubelambda-ssa|kubelambda-dynamic|kubelambda-webhook|metacontroller-tuned|metacontroller-defaults) ;;
        *) die "CONTENDERS: unknown contender '$c'" ;;
    esac
done
for n in $COUNTS; do [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "COUNTS: '$n' is not a positive number"; done
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "ROUNDS: '$ROUNDS' is not a positive number"

# ---------------------------------------------------------------------------------------------
# Prerequisites.

for tool in python3 setsid; do
    command -v "$tool" >/dev/null || { echo "convergence: $tool is required" >&2; exit 2; }
done

MC_BIN=""
if [ -n "${METACONTROLLER:-}" ]; then
    [ -x "$METACONTROLLER" ] || { echo "convergence: METACONTROLLER=$METACONTROLLER is not executable" >&2; exit 2; }
    MC_BIN="$(cd "$(dirname "$METACONTROLLER")" && pwd)/$(basename "$METACONTROLLER")"
else
    log "METACONTROLLER is unset: the Metacontroller rows are skipped (see --help to build it)"
    CONTENDERS="$(for c in $CONTENDERS; do case "$c" in metacontroller-*) ;; *) printf '%s ' "$c" ;; esac; done)"
fi

if [ -n "${KUBELAMBDA:-}" ]; then
    KL_BIN="$KUBELAMBDA"
else
    log "cargo build --release --bin kubelambda"
    (cd "$ROOT" && cargo build --release --bin kubelambda) || die "cargo build --release failed"
    KL_BIN="$TARGET_DIR/release/kubelambda"
fi
[ -x "$KL_BIN" ] || die "no kubelambda binary at $KL_BIN"
KL_BIN="$(cd "$(dirname "$KL_BIN")" && pwd)/$(basename "$KL_BIN")"

if [ -n "${CONVERGENCE_CLIENT:-}" ]; then
    CLIENT="$CONVERGENCE_CLIENT"
else
    log "cargo bench --bench convergence --no-run (the client)"
    CLIENT="$(cd "$ROOT" && cargo bench --bench convergence --no-run --message-format=json \
        | python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "convergence" and m.get("executable"):
        print(m["executable"])')" || die "building the convergence client failed"
fi
[ -n "$CLIENT" ] && [ -x "$CLIENT" ] || die "no convergence client binary (${CLIENT:-none})"

# ---------------------------------------------------------------------------------------------
# Scratch space, control plane, process handling.

WORK="$(mktemp -d "${TMPDIR:-/tmp}/convergence-bench.XXXXXX")"
CP="$WORK/cp"
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do stop_session "$pid"; done
    "$ROOT/tests/testenv/testenv" down "$CP" >/dev/null 2>&1 || true
    if [ -n "${KEEP_WORK:-}" ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# stop_session PID: SIGTERM the session PID leads (the process and its workers), then SIGKILL.
stop_session() {
    local pid="$1" i
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# start_session LOG CMD...: starts CMD as the leader of a new session; prints its pid.
start_session() {
    local logfile="$1"; shift
    ( exec setsid "$@" >>"$logfile" 2>&1 </dev/null ) &
    local pid=$! sid
    sleep 0.2
    sid="$(python3 -c 'import sys; s = open(f"/proc/{sys.argv[1]}/stat").read(); print(s[s.rindex(")") + 2:].split()[3])' "$pid" 2>/dev/null || true)"
    [ "$sid" = "$pid" ] || { tail -n 20 "$logfile" >&2; die "$1 did not start as its own session (pid $pid, session ${sid:-gone})"; }
    echo "$pid"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

log "control plane: tests/testenv/testenv up $CP"
mkdir -p "$CP" "$WORK/logs" "$WORK/hooks"
TESTENV_KCM_CONTROLLERS=namespace "$ROOT/tests/testenv/testenv" up "$CP" >"$WORK/logs/testenv.log" 2>&1 \
    || { tail -n 30 "$WORK/logs/testenv.log" >&2; die "testenv up failed"; }
KUBECONFIG_FILE="$CP/kubeconfig"
[ -f "$KUBECONFIG_FILE" ] || die "testenv wrote no $KUBECONFIG_FILE"
client() { "$CLIENT" --kubeconfig "$KUBECONFIG_FILE" "$@"; }

# ---------------------------------------------------------------------------------------------
# CRDs, the parent CRD, the hook and the CompositeControllers.

"$KL_BIN" crds >"$WORK/crds.yaml" || die "kubelambda crds failed"
client apply "$WORK/crds.yaml" || die "applying kubelambda's CRDs failed"
cat >"$WORK/parent-crd.yaml" <<'EOF'
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: benchparents.bench.kubelambda.dev
spec:
  group: bench.kubelambda.dev
  scope: Namespaced
  names: {kind: BenchParent, plural: benchparents, singular: benchparent}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
EOF
client apply "$WORK/parent-crd.yaml" || die "applying the BenchParent CRD failed"

cat >"$WORK/hooks/sync.jsonnet" <<'EOF'
// Two ConfigMaps per BenchParent; the status says how many it asked for.
function(request) {
  local parent = request.parent,
  local name = parent.metadata.name,
  local child(suffix) = {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: name + '-' + suffix, labels: { 'bench.kubelambda.dev/parent': name } },
    data: { parent: name, value: parent.spec.value },
  },
  children: [child('a'), child('b')],
  status: { desiredChildren: 2 },
}
EOF

# write_controller CONTENDER HOOK_URL: the contender's CompositeController, as JSON (a YAML
# document) so that the inline source needs no quoting.
write_controller() {
    python3 - "$1" "$2" "$WORK/hooks/sync.jsonnet" "$LABEL_KEY" >"$WORK/cc-$1.yaml" <<'PY'
import json, sys
contender, url, hook_file, label_key = sys.argv[1:5]
hook = {"webhook": {"url": url}} if url else {"jsonnet": {"source": open(hook_file).read()}}
print(json.dumps({
    "apiVersion": "metacontroller.k8s.io/v1alpha1",
    "kind": "CompositeController",
    "metadata": {"name": f"bench-{contender}", "labels": {label_key: contender}},
    "spec": {
        "generateSelector": True,
        "parentResource": {"apiVersion": "bench.kubelambda.dev/v1", "resource": "benchparents"},
        "childResources": [{"apiVersion": "v1", "resource": "configmaps",
                            "updateStrategy": {"method": "InPlace"}}],
        "hooks": {"sync": hook},
    },
}, indent=1))
PY
}

# ---------------------------------------------------------------------------------------------
# Phases.

RESULTS="${OUT%.md}.jsonl"
mkdir -p "$(dirname "$OUT")"
: >"$WORK/results.jsonl"

# run_phase CONTENDER N ROUND
run_phase() {
    local c="$1" n="$2" round="$3"
    local ns="cb-$c-$n-r$round" logfile="$WORK/logs/cb-$c-$n-r$round.log"
    local hook_pid="" ctl_pid="" hook_url="" mode=controller
    local -a pid_args=()
    case "$c" in
        raw) mode=raw ;;
        kubelambda-webhook|metacontroller-*)
            local hport
            hport="$(free_port)"
            hook_pid="$(cd "$WORK/hooks" && start_session "$WORK/logs/httpd-$ns.log" "$KL_BIN" httpd -l "127.0.0.1:$hport" sync.jsonnet)"
            PIDS+=("$hook_pid")
            hook_url="http://127.0.0.1:$hport/sync"
            pid_args+=(--hook-pid "$hook_pid") ;;
    esac
    if [ "$mode" = controller ]; then
        write_controller "$c" "$hook_url"
        client apply "$WORK/cc-$c.yaml" || die "$ns: applying the CompositeController failed"
        local mport hport2
        mport="$(free_port)"; hport2="$(free_port)"
        local -a cmd
        case "$c" in
            kubelambda-ssa|kubelambda-webhook)
                cmd=("$KL_BIN" run --apply-strategy server-side-apply) ;;
            kubelambda-dynamic)
                cmd=("$KL_BIN" run --apply-strategy dynamic-apply) ;;
            metacontroller-tuned)
                cmd=("$MC_BIN" --client-go-qps 1000 --client-go-burst 2000) ;;
            metacontroller-defaults)
                cmd=("$MC_BIN") ;;
        esac
        cmd+=(--kubeconfig "$KUBECONFIG_FILE" --target-label-selector "$LABEL_KEY=$c"
              --metrics-address "127.0.0.1:$mport" --health-probe-bind-address "127.0.0.1:$hport2")
        ctl_pid="$(start_session "$logfile" "${cmd[@]}")"
        PIDS+=("$ctl_pid")
        pid_args+=(--controller-pid "$ctl_pid")
    fi
    log "$ns: timing $n parents ($c)"
    local out
    if ! out="$(client phase --namespace "$ns" --count "$n" --mode "$mode" --concurrency "$CONCURRENCY" \
            --timeout-seconds "$PHASE_TIMEOUT" "${pid_args[@]}")"; then
        tail -n 30 "$logfile" >&2 2>/dev/null || true
        die "$ns: the phase failed (controller log above)"
    fi
    [ -n "$ctl_pid" ] && stop_session "$ctl_pid"
    [ -n "$hook_pid" ] && stop_session "$hook_pid"
    PIDS=()
    echo "{\"contender\": \"$c\", \"round\": $round, \"result\": $out}" >>"$WORK/results.jsonl"
    python3 - "$out" <<'PY' >&2
import json, sys
r = json.loads(sys.argv[1])
c = r.get("controller") or {}
print("[bench]   %.2f s, calls %s, cpu %.2f s, rss %.1f MB" % (r["converge_seconds"], r["calls"], c.get("cpu_seconds", 0), c.get("peak_rss_bytes", 0) / 1e6))
PY
    [ "$mode" = controller ] && { client delete "$WORK/cc-$c.yaml" || die "$ns: deleting the CompositeController failed"; }
    client clean --namespace "$ns" || die "$ns: deleting the namespace failed"
}

T_START=$SECONDS
for n in $COUNTS; do
    for round in $(seq "$ROUNDS"); do
        for c in $CONTENDERS; do
            if [ "$c" = metacontroller-defaults ] && { [ "$n" -gt "$MC_DEFAULTS_MAX_N" ] || [ "$round" -gt "$MC_DEFAULTS_ROUNDS" ]; }; then
                continue
            fi
            run_phase "$c" "$n" "$round"
        done
    done
done
ELAPSED=$((SECONDS - T_START))
cp "$WORK/results.jsonl" "$RESULTS"

# ---------------------------------------------------------------------------------------------
# Report.

CPU_MODEL="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
KL_VERSION="$( ("$KL_BIN" --version 2>/dev/null || true) | head -1)"
{
    echo "# Convergence: N parents x 2 ConfigMap children"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'); $ROUNDS round(s); phases took ${ELAPSED} s in all"
    echo "- machine: $(nproc) CPUs, ${CPU_MODEL:-unknown CPU}, $(uname -sr); control plane, controller, hook server and client share them"
    echo "- kubelambda: \`$KL_BIN\` (${KL_VERSION:-version unknown})"
    [ -n "$MC_BIN" ] && echo "- Metacontroller: \`$MC_BIN\`"
    echo "- control plane: tests/testenv (Kubernetes $(. "$ROOT/tests/testenv/versions.env"; echo "$KUBERNETES_VERSION"), kube-controller-manager --controllers=namespace)"
    echo
    python3 - "$WORK/results.jsonl" "$COUNTS" "$CONTENDERS" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
counts = [int(n) for n in sys.argv[2].split()]
order = sys.argv[3].split()
names = {
    "raw": "raw parallel client (the physical limit)",
    "kubelambda-ssa": "kubelambda, inline Jsonnet, server-side apply",
    "kubelambda-dynamic": "kubelambda, inline Jsonnet, dynamic-apply",
    "kubelambda-webhook": "kubelambda, webhook (kubelambda httpd), server-side apply",
    "metacontroller-tuned": "Metacontroller, webhook, QPS 1000 / burst 2000",
    "metacontroller-defaults": "Metacontroller, webhook, its defaults (QPS 5 / burst 10)",
}
med = statistics.median
WRITES = ("POST", "PUT", "PATCH", "APPLY", "DELETE")

def fmt_calls(calls):
    kept = [(k, v) for k, v in calls.items() if round(v) > 0]
    return " + ".join(f"{round(v):,} {k}" for k, v in sorted(kept, key=lambda kv: -kv[1])) or "—"

for n in counts:
    by = {}
    for r in rows:
        if r["result"]["n"] == n:
            by.setdefault(r["contender"], []).append(r["result"])
    if not by:
        continue
    stats = {}
    for c, rs in by.items():
        times = [r["converge_seconds"] for r in rs]
        verbs = sorted({v for r in rs for v in r["calls"]})
        calls = {v: med([r["calls"].get(v, 0) for r in rs]) for v in verbs}
        ctl = [r["controller"] for r in rs if r.get("controller")]
        hook = [r["hook"] for r in rs if r.get("hook")]
        stats[c] = {
            "rounds": len(rs), "time": med(times), "tmin": min(times), "tmax": max(times),
            "calls": calls, "writes": sum(v for k, v in calls.items() if k in WRITES) / n,
            "cpu": med([t["cpu_seconds"] for t in ctl]) if ctl else None,
            "rss": med([t["peak_rss_bytes"] for t in ctl]) / 1e6 if ctl else None,
            "procs": max(t["max_processes"] for t in ctl) if ctl else None,
            "hcpu": med([t["cpu_seconds"] for t in hook]) if hook else None,
            "hrss": med([t["peak_rss_bytes"] for t in hook]) / 1e6 if hook else None,
            "load": rs[0].get("load_average", ""),
        }
    print(f"## N = {n:,} parents\n")
    print("| contender | rounds | time to converge, median (min–max) | API calls (median per phase) | writes / parent | controller CPU | controller peak RSS (processes) | hook server CPU / peak RSS |")
    print("| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |")
    for c in order:
        s = stats.get(c)
        if not s:
            continue
        cpu = f"{s['cpu']:.2f} s" if s["cpu"] is not None else "—"
        rss = f"{s['rss']:.1f} MB ({s['procs']})" if s["rss"] is not None else "—"
        hook = f"{s['hcpu']:.2f} s / {s['hrss']:.1f} MB" if s["hcpu"] is not None else "—"
        print(f"| {names[c]} | {s['rounds']} | {s['time']:.2f} s ({s['tmin']:.2f}–{s['tmax']:.2f}) | {fmt_calls(s['calls'])} | {s['writes']:.2f} | {cpu} | {rss} | {hook} |")
    print()
    ratios = []
    raw, mc = stats.get("raw"), stats.get("metacontroller-tuned")
    for c in order:
        s = stats.get(c)
        if not s or c == "raw":
            continue
        parts = []
        if raw:
            parts.append(f"time {s['time'] / raw['time']:.2f}× raw")
        if mc and c != "metacontroller-tuned":
            vs = [f"time {s['time'] / mc['time']:.2f}×"]
            if s["cpu"] is not None and mc["cpu"]:
                vs.append(f"CPU {s['cpu'] / mc['cpu']:.2f}×")
            if s["rss"] is not None and mc["rss"]:
                vs.append(f"peak RSS {s['rss'] / mc['rss']:.2f}×")
            parts.append("against Metacontroller tuned: " + ", ".join(vs))
        if parts:
            ratios.append(f"- {c}: " + "; ".join(parts))
    if ratios:
        print("Ratios (medians):\n")
        print("\n".join(ratios))
        print()
PY
    echo "API calls: the API server's apiserver_request_total over the phase (until 3 s without a new request),"
    echo "without WATCH, leases, namespaces, non-resource requests and the client's own N parent creates."
    echo "CPU and RSS: the controller's session (kubelambda: with its evaluation workers), from /proc."
} >"$OUT"
cat "$OUT"
log "report: $OUT (raw results: $RESULTS); phases took ${ELAPSED} s"
