#!/usr/bin/env bash
# Benchmark `kubelambda httpd` against its anchor, `kubecfg --alpha httpd` (kubecfg v0.36.0).
#
# kubelambda runs twice: `kubelambda-uncached` (--response-cache 0: every request is evaluated by a
# worker process, as kubecfg evaluates every request) and `kubelambda` (the defaults: wrk repeats
# one request, so after the first one it is answered from the response cache, as a controller's
# resyncs of an unchanged parent are). Both rows and both ratios are reported.
#
# The servers serve examples/useless-controller/sync.jsonnet (cwd = that directory, argument
# `sync.jsonnet`, so the route is POST /sync) on a free loopback port. Before anything is timed,
# both must answer request.json with the same JSON (compared as parsed JSON with python3). Then each
# server in turn is started, warmed up, loaded with wrk (POST request.json, Content-Type
# application/json) and stopped. The result is a Markdown table (requests/s, p50, p99, and the
# kubelambda/kubecfg throughput ratio), printed and written to target/bench/httpd_vs_kubecfg.md.
#
# With --rss (or RSS=1) a second phase sends ~RSS_REQUESTS (1,000,000) requests to kubelambda and
# reports the RSS of its process tree (the httpd process plus its worker subprocesses, summed from
# /proc) after warm-up, after each chunk of load, and at the end, with the growth in %.
#
# Usage:
#   KUBECFG=/path/to/kubecfg benches/httpd_vs_kubecfg.sh [--rss]
#
# Environment:
#   KUBECFG          kubecfg binary (v0.36.0). If unset: ~/.cache/kubelambda-bench/bin/kubecfg,
#                    then `kubecfg` on PATH. Without it the benchmark reports nothing (exit 2).
#   KUBELAMBDA       kubelambda binary; if unset, `cargo build --release` and target/release/kubelambda.
#   SERVERS          which servers to run, in order (default "kubecfg kubelambda-uncached
#                    kubelambda"); e.g.
#                    SERVERS=kubecfg to try the kubecfg half alone (no ratio then).
#   DURATION         wrk duration of each timed run (default 20s)
#   WARMUP           wrk duration of the warm-up before each timed run (default 5s)
#   CONNECTIONS      wrk connections (default 32)
#   THREADS          wrk threads (default 2)
#   WRK_EXTRA        extra wrk arguments (default none)
#   KUBECFG_ARGS     extra arguments for `kubecfg --alpha httpd` (default none)
#   KUBELAMBDA_ARGS  extra arguments for `kubelambda httpd` (default none)
#   RSS=1            same as --rss
#   RSS_SERVERS      servers measured in the RSS phase (default "kubelambda-uncached kubelambda")
#   RSS_REQUESTS     requests to send in the RSS phase (default 1000000)
#   RSS_CHUNK        longest single wrk run in the RSS phase, seconds (default 60); RSS is sampled
#                    after each chunk
#   RSS_MAX_GROWTH   growth target in % (default 10)
#   OUT              Markdown report (default <target dir>/bench/httpd_vs_kubecfg.md)
#
# Exit status: 0 done, 1 a check or a run failed, 2 a prerequisite (the kubecfg anchor) is missing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EXAMPLE_DIR="$ROOT/examples/useless-controller"
HOOK_ARG="sync.jsonnet"
ROUTE="/sync"
REQUEST_JSON="$EXAMPLE_DIR/request.json"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$ROOT/$TARGET_DIR" ;; esac
OUT="${OUT:-$TARGET_DIR/bench/httpd_vs_kubecfg.md}"
KUBECFG_WANT_VERSION="v0.36.0"

SERVERS="${SERVERS:-kubecfg kubelambda-uncached kubelambda}"
DURATION="${DURATION:-20s}"
WARMUP="${WARMUP:-5s}"
CONNECTIONS="${CONNECTIONS:-32}"
THREADS="${THREADS:-2}"
WRK_EXTRA="${WRK_EXTRA:-}"
KUBECFG_ARGS="${KUBECFG_ARGS:-}"
KUBELAMBDA_ARGS="${KUBELAMBDA_ARGS:-}"
RSS="${RSS:-0}"
RSS_SERVERS="${RSS_SERVERS:-kubelambda-uncached kubelambda}"
RSS_REQUESTS="${RSS_REQUESTS:-1000000}"
RSS_CHUNK="${RSS_CHUNK:-60}"
RSS_MAX_GROWTH="${RSS_MAX_GROWTH:-10}"

for arg in "$@"; do
    case "$arg" in
        --rss) RSS=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "httpd_vs_kubecfg: unknown argument: $arg (try --help)" >&2; exit 2 ;;
    esac
done

log() { echo "[bench] $*" >&2; }
die() { echo "httpd_vs_kubecfg: $*" >&2; exit 1; }

for s in $SERVERS; do
    case "$s" in
        kubecfg|kubelambda|kubelambda-uncached) ;;
        *) die "SERVERS: unknown server '$s' (kubecfg, kubelambda, kubelambda-uncached)" ;;
    esac
done
if [ "$RSS" = 1 ]; then
    for s in $RSS_SERVERS; do
        case " $SERVERS " in *" $s "*) ;; *) die "RSS_SERVERS: '$s' is not in SERVERS ('$SERVERS')" ;; esac
    done
fi
wants() { case " $SERVERS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

command -v python3 >/dev/null || die "python3 is required (JSON comparison, /proc sampling)"
command -v curl >/dev/null || die "curl is required"
[ -f "$REQUEST_JSON" ] || die "missing $REQUEST_JSON"

# ---------------------------------------------------------------------------------------------
# Prerequisites: the anchor first (no anchor, no numbers), then wrk, then kubelambda.

KUBECFG_BIN=""
if wants kubecfg; then
    if [ -n "${KUBECFG:-}" ]; then
        KUBECFG_BIN="$KUBECFG"
    elif [ -x "${XDG_CACHE_HOME:-$HOME/.cache}/kubelambda-bench/bin/kubecfg" ]; then
        KUBECFG_BIN="${XDG_CACHE_HOME:-$HOME/.cache}/kubelambda-bench/bin/kubecfg"
    elif command -v kubecfg >/dev/null; then
        KUBECFG_BIN="$(command -v kubecfg)"
    else
        # The registry route: the Go module proxy. (Here the proxy answers 403 for kubecfg, so
        # this fails and the message below says how to provide the binary instead.)
        cache_bin="${XDG_CACHE_HOME:-$HOME/.cache}/kubelambda-bench/bin"
        mkdir -p "$cache_bin"
        if GOBIN="$cache_bin" GOTOOLCHAIN=local CGO_ENABLED=0 \
            go install "github.com/kubecfg/kubecfg@$KUBECFG_WANT_VERSION" >&2; then
            KUBECFG_BIN="$cache_bin/kubecfg"
        fi
    fi
    if [ -z "$KUBECFG_BIN" ] || [ ! -x "$KUBECFG_BIN" ]; then
        cat >&2 <<EOF
httpd_vs_kubecfg: the anchor is unavailable: no kubecfg binary${KUBECFG_BIN:+ (KUBECFG=$KUBECFG_BIN is not executable)}.
  This benchmark compares kubelambda httpd with kubecfg $KUBECFG_WANT_VERSION and reports nothing without it.
  Provide the binary with:   KUBECFG=/path/to/kubecfg $0 $*
  (or put it at ${XDG_CACHE_HOME:-$HOME/.cache}/kubelambda-bench/bin/kubecfg, or on PATH).
  To run only the kubelambda side anyway (no comparison): SERVERS=kubelambda $0 $*
EOF
        exit 2
    fi
    KUBECFG_BIN="$(cd "$(dirname "$KUBECFG_BIN")" && pwd)/$(basename "$KUBECFG_BIN")"
    KUBECFG_VERSION="$( ("$KUBECFG_BIN" version 2>/dev/null || true) | sed -n 's/^kubecfg version: //p' | head -1)"
    if [ "$KUBECFG_VERSION" != "$KUBECFG_WANT_VERSION" ]; then
        log "warning: $KUBECFG_BIN reports version '${KUBECFG_VERSION:-?}', the anchor is $KUBECFG_WANT_VERSION"
    fi
fi

if ! command -v wrk >/dev/null; then
    log "wrk is missing; installing it with apt-get"
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq wrk >/dev/null \
        || die "could not install wrk (apt-get install wrk)"
fi
WRK_VERSION="$( (wrk -v 2>&1 || true) | head -1 | sed 's/ Copyright.*//')"

KUBELAMBDA_BIN=""
if wants kubelambda || wants kubelambda-uncached; then
    if [ -n "${KUBELAMBDA:-}" ]; then
        KUBELAMBDA_BIN="$KUBELAMBDA"
    else
        log "cargo build --release"
        (cd "$ROOT" && cargo build --release --bin kubelambda) || die "cargo build --release failed"
        KUBELAMBDA_BIN="$TARGET_DIR/release/kubelambda"
    fi
    [ -x "$KUBELAMBDA_BIN" ] || die "no kubelambda binary at $KUBELAMBDA_BIN"
    KUBELAMBDA_BIN="$(cd "$(dirname "$KUBELAMBDA_BIN")" && pwd)/$(basename "$KUBELAMBDA_BIN")"
    KUBELAMBDA_VERSION="$( ("$KUBELAMBDA_BIN" --version 2>/dev/null || true) | head -1)"
fi

# ---------------------------------------------------------------------------------------------
# Scratch space, the wrk Lua script, and server start/stop.

WORK="$(mktemp -d "${TMPDIR:-/tmp}/httpd-bench.XXXXXX")"
SERVER_PID=""
stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    local pid="$SERVER_PID"
    SERVER_PID=""
    # The server runs in its own session (setsid), so its process group holds its workers too.
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    local i
    for i in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    stop_server
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cat >"$WORK/post.lua" <<EOF
-- generated by benches/httpd_vs_kubecfg.sh
local f = assert(io.open([==[$REQUEST_JSON]==], "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d " ..
    "connect=%d read=%d write=%d status=%d timeout=%d\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
EOF

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_server NAME: starts it on a free loopback port; sets SERVER_PID and URL.
start_server() {
    local name="$1" port
    port="$(free_port)"
    URL="http://127.0.0.1:$port$ROUTE"
    local -a cmd
    case "$name" in
        # shellcheck disable=SC2206  # *_ARGS are word-split on purpose
        kubecfg) cmd=("$KUBECFG_BIN" --alpha httpd -l "127.0.0.1:$port" $KUBECFG_ARGS "$HOOK_ARG") ;;
        # shellcheck disable=SC2206
        kubelambda) cmd=("$KUBELAMBDA_BIN" httpd -l "127.0.0.1:$port" $KUBELAMBDA_ARGS "$HOOK_ARG") ;;
        # shellcheck disable=SC2206
        kubelambda-uncached) cmd=("$KUBELAMBDA_BIN" httpd -l "127.0.0.1:$port" --response-cache 0 $KUBELAMBDA_ARGS "$HOOK_ARG") ;;
    esac
    log "starting $name: (cd $EXAMPLE_DIR && ${cmd[*]})"
    (cd "$EXAMPLE_DIR" && exec setsid "${cmd[@]}" >>"$WORK/$name.log" 2>&1 </dev/null) &
    SERVER_PID=$!
    local i code
    for i in $(seq 300); do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            SERVER_PID=""
            tail -n 20 "$WORK/$name.log" >&2 || true
            die "$name exited during startup (log above)"
        fi
        code="$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
            --data-binary "@$REQUEST_JSON" "$URL" 2>/dev/null || true)"
        [ "$code" = 200 ] && return 0
        sleep 0.1
    done
    tail -n 20 "$WORK/$name.log" >&2 || true
    die "$name did not answer 200 on POST $URL within 30s (last status: ${code:-none})"
}

# server_pid: the running server's own pid, found by its unique listen address. ($! can be a
# setsid wrapper: under job control setsid forks, and the server is its child.)
server_pid() {
    local port="${URL#http://127.0.0.1:}"
    port="${port%%/*}"
    pgrep -f -- "httpd -l 127.0.0.1:$port" | head -n 1
}

# rss_tree PID: prints "<kB> <processes>": VmRSS summed over every process in PID's session. The
# server is started with setsid, so its session is exactly the server and its worker processes.
rss_tree() {
    python3 - "$1" <<'PY'
import os, sys

def stat_fields(pid):
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    # Fields after "(comm)": state ppid pgrp session ...
    return stat[stat.rindex(")") + 2:].split()

root = int(sys.argv[1])
session = stat_fields(root)[3]
total, count = 0, 0
for d in os.listdir("/proc"):
    if not d.isdigit():
        continue
    try:
        if stat_fields(d)[3] != session:
            continue
        with open(f"/proc/{d}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                    count += 1
                    break
    except (OSError, IndexError):
        continue
print(total, count)
PY
}

# run_wrk DURATION OUTFILE: loads $URL; leaves wrk's full output in OUTFILE.
run_wrk() {
    # shellcheck disable=SC2086  # WRK_EXTRA is word-split on purpose
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$1" --latency $WRK_EXTRA -s "$WORK/post.lua" "$URL" >"$2" 2>&1 \
        || { cat "$2" >&2; die "wrk failed"; }
    grep -q '^BENCH ' "$2" || { cat "$2" >&2; die "wrk printed no summary"; }
}

# field FILE KEY: a value from the BENCH line of a wrk output.
field() { sed -n "s/^BENCH .*\\b$2=\\([0-9]*\\).*/\\1/p" "$1"; }
# rps FILE: wrk's own Requests/sec line.
rps() { awk '/^Requests\/sec:/ { print $2 }' "$1"; }
ms() { awk -v us="$1" 'BEGIN { printf "%.2f ms", us / 1000 }'; }
errors() {
    local f="$1" k n=0
    for k in connect read write status timeout; do n=$((n + $(field "$f" "$k"))); done
    echo "$n"
}

# ---------------------------------------------------------------------------------------------
# 1. Same answer from both servers, before anything is timed.

for s in $SERVERS; do
    start_server "$s"
    curl -sS -f -X POST -H 'Content-Type: application/json' --data-binary "@$REQUEST_JSON" "$URL" \
        -D "$WORK/$s.headers" -o "$WORK/$s.response.json" || die "$s: POST $URL failed"
    stop_server
done
python3 - "$WORK" $SERVERS <<'PY' || die "the servers disagree (or answered something that is not JSON); nothing was timed"
import json, sys, difflib
work, servers = sys.argv[1], sys.argv[2:]
parsed = {}
for s in servers:
    with open(f"{work}/{s}.response.json", "rb") as f:
        try:
            parsed[s] = json.load(f)
        except ValueError as e:
            sys.exit(f"{s}: response is not JSON: {e}")
first = servers[0]
for s in servers[1:]:
    if parsed[s] != parsed[first]:
        a = json.dumps(parsed[first], indent=2, sort_keys=True).splitlines()
        b = json.dumps(parsed[s], indent=2, sort_keys=True).splitlines()
        print("\n".join(difflib.unified_diff(a, b, first, s, lineterm="")), file=sys.stderr)
        sys.exit(f"{s} and {first} return different JSON for request.json")
print(f"[bench] same JSON from: {', '.join(servers)} (compared parsed, with python3)", file=sys.stderr)
PY
if [ "$(echo "$SERVERS" | wc -w)" -lt 2 ]; then
    log "only one server (SERVERS=$SERVERS): its answer is JSON, but there is nothing to compare it with"
fi

# ---------------------------------------------------------------------------------------------
# 2. Throughput and latency, one server at a time.

WRK_CMD="wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency${WRK_EXTRA:+ $WRK_EXTRA} -s post.lua http://127.0.0.1:PORT$ROUTE"
mkdir -p "$(dirname "$OUT")"
RAW_PREFIX="${OUT%.md}"
declare -A RPS P50 P99 ERR LOAD
for s in $SERVERS; do
    start_server "$s"
    log "$s: warm-up $WARMUP"
    run_wrk "$WARMUP" "$WORK/$s.warmup.txt"
    LOAD[$s]="$(cut -d' ' -f1 /proc/loadavg)"
    log "$s: timed run (1-min load average ${LOAD[$s]}): $WRK_CMD"
    run_wrk "$DURATION" "$WORK/$s.wrk.txt"
    stop_server
    cp "$WORK/$s.wrk.txt" "$RAW_PREFIX.$s.wrk.txt"
    RPS[$s]="$(rps "$WORK/$s.wrk.txt")"
    P50[$s]="$(field "$WORK/$s.wrk.txt" p50_us)"
    P99[$s]="$(field "$WORK/$s.wrk.txt" p99_us)"
    ERR[$s]="$(errors "$WORK/$s.wrk.txt")"
    [ -n "${RPS[$s]}" ] || { cat "$WORK/$s.wrk.txt" >&2; die "$s: no Requests/sec in wrk's output"; }
    log "$s: ${RPS[$s]} requests/s, p50 $(ms "${P50[$s]}"), p99 $(ms "${P99[$s]}"), errors ${ERR[$s]}"
done

CPU_MODEL="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
{
    echo "# kubelambda httpd vs kubecfg --alpha httpd"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "- machine: $(nproc) CPUs, ${CPU_MODEL:-unknown CPU}, $(uname -sr); wrk and the server share these CPUs"
    echo "- hook: examples/useless-controller/sync.jsonnet, POST $ROUTE with request.json ($(wc -c <"$REQUEST_JSON") bytes)"
    echo "- load: \`$WRK_CMD\` after a $WARMUP warm-up, one server at a time (wrk: $WRK_VERSION)"
    wants kubecfg && echo "- kubecfg: \`$KUBECFG_BIN\` (${KUBECFG_VERSION:-version unknown})${KUBECFG_ARGS:+, args: $KUBECFG_ARGS}"
    [ -n "$KUBELAMBDA_BIN" ] && echo "- kubelambda: \`$KUBELAMBDA_BIN\` (${KUBELAMBDA_VERSION:-version unknown})${KUBELAMBDA_ARGS:+, args: $KUBELAMBDA_ARGS}; kubelambda-uncached adds \`--response-cache 0\`"
    echo "- same response JSON checked before timing (parsed, python3): $(echo "$SERVERS" | sed 's/ / = /g')"
    echo
    echo "| server | requests/s | p50 | p99 | errors | load before |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: |"
    for s in $SERVERS; do
        echo "| $s | ${RPS[$s]} | $(ms "${P50[$s]}") | $(ms "${P99[$s]}") | ${ERR[$s]} | ${LOAD[$s]} |"
    done
    echo
    ratios=0
    for s in kubelambda-uncached kubelambda; do
        if wants kubecfg && wants "$s"; then
            echo "- throughput ratio $s/kubecfg: **$(awk -v a="${RPS[$s]}" -v b="${RPS[kubecfg]}" 'BEGIN { printf "%.2f", a / b }')**;" \
                "p99 ratio $s/kubecfg: $(awk -v a="${P99[$s]}" -v b="${P99[kubecfg]}" 'BEGIN { printf "%.2f", a / b }')"
            ratios=1
        fi
    done
    [ "$ratios" = 1 ] || echo "throughput ratio kubelambda/kubecfg: n/a (SERVERS=$SERVERS)"
    echo
    echo "kubelambda-uncached evaluates every request (\`--response-cache 0\`); kubelambda runs with its" \
        "defaults, so the repeated request is answered from its response cache after the first one."
    echo
    echo "errors = wrk's connect + read + write + timeout errors + non-2xx/3xx responses;" \
        "load before = 1-minute load average just before the timed run (other work on the machine skews the numbers)."
} >"$WORK/report.md"

# ---------------------------------------------------------------------------------------------
# 3. RSS flatness over ~RSS_REQUESTS requests (the process tree: httpd plus its workers).

if [ "$RSS" = 1 ]; then
    for s in $RSS_SERVERS; do
        start_server "$s"
        log "$s: RSS phase, warm-up $WARMUP"
        run_wrk "$WARMUP" "$WORK/$s.rss-warmup.txt"
        rate="$(rps "$WORK/$s.rss-warmup.txt")"
        read -r base_kb base_n < <(rss_tree "$(server_pid)")
        peak_kb="$base_kb"
        samples="| after warm-up | 0 | $((base_kb / 1024)) MiB | $base_n |"
        sent=0
        rss_errors=0
        chunk=0
        while [ "$sent" -lt "$RSS_REQUESTS" ]; do
            chunk=$((chunk + 1))
            # wrk cannot count requests: size each run from the rate measured so far.
            secs="$(awk -v left="$((RSS_REQUESTS - sent))" -v r="$rate" -v max="$RSS_CHUNK" \
                'BEGIN { s = int(left / (r > 0 ? r : 1) * 1.02) + 1; if (s > max) s = max; if (s < 2) s = 2; print s }')"
            log "$s: RSS chunk $chunk: ${secs}s (sent $sent of $RSS_REQUESTS, ~$rate requests/s)"
            run_wrk "${secs}s" "$WORK/$s.rss-$chunk.txt"
            n="$(field "$WORK/$s.rss-$chunk.txt" requests)"
            [ "${n:-0}" -gt 0 ] || die "$s: RSS chunk $chunk completed no requests"
            sent=$((sent + n))
            rate="$(rps "$WORK/$s.rss-$chunk.txt")"
            rss_errors=$((rss_errors + $(errors "$WORK/$s.rss-$chunk.txt")))
            read -r kb procs < <(rss_tree "$(server_pid)")
            [ "$kb" -gt "$peak_kb" ] && peak_kb="$kb"
            samples+=$'\n'"| after chunk $chunk | $sent | $((kb / 1024)) MiB | $procs |"
        done
        stop_server
        growth="$(awk -v a="$base_kb" -v b="$kb" 'BEGIN { printf "%+.1f", (b - a) * 100 / a }')"
        verdict="$(awk -v g="$growth" -v t="$RSS_MAX_GROWTH" 'BEGIN { print (g + 0 < t + 0) ? "PASS" : "FAIL" }')"
        log "$s: RSS ${base_kb} kB -> ${kb} kB after $sent requests ($growth%, $verdict)"
        {
            echo
            echo "## RSS flatness: $s"
            echo
            echo "RSS of the $s process tree (the httpd process plus its child processes, VmRSS summed from /proc)," \
                "sampled between wrk runs of \`wrk -t$THREADS -c$CONNECTIONS -dNs\` (N sized from the measured rate, at most ${RSS_CHUNK}s)."
            echo
            echo "| when | requests sent after warm-up | RSS | processes |"
            echo "| --- | ---: | ---: | ---: |"
            echo "$samples"
            echo
            echo "- after warm-up: $base_kb kB; at the end ($sent requests): $kb kB; peak sample: $peak_kb kB"
            echo "- growth: **$growth%** (target < $RSS_MAX_GROWTH%): **$verdict**"
            echo "- errors during the phase: $rss_errors"
        } >>"$WORK/report.md"
    done
fi

cp "$WORK/report.md" "$OUT"
echo
cat "$OUT"
echo
log "written to $OUT (raw wrk output: $RAW_PREFIX.<server>.wrk.txt)"
