#!/usr/bin/env bash
# Side-by-side load comparison on one machine (issue 4, item 4):
#
#   tokengate  full validation: RS256 signature, iss/aud/exp/nbf, allowed_applications, role rules,
#              EasyAuth identity headers, verified-token cache (default size)
#   nginx      plain reverse proxy, no authentication at all (the floor for "a proxy hop")
#   HAProxy    jwt_verify RS256 with a static PEM, alg/iss/aud/exp checks in its config
#
# all in front of the same upstream (nginx `return 200`), driven by wrk over HTTP/1.1 keep-alive.
# The proxy under test gets a core of its own; the upstream gets another when there is one; wrk
# gets the rest. Only one proxy runs at a time.
#
# Modes:
#   same      the same valid token on every request (tokengate's cache answers after the first);
#   distinct  a different valid token on every request, cycling through TOKENS minted tokens
#             (200k by default, far more than tokengate's 10k-entry cache: every request is a miss).
# Then peak RSS (VmHWM) under 1,000 concurrent keep-alive connections: tokengate in both modes,
# nginx and HAProxy for reference.
#
# Then whole-process heap allocations per request, both modes: tokengate runs under
# tests/alloc_count/alloc_count.c, an LD_PRELOAD shim (glibc) that counts every malloc, calloc,
# realloc and memalign-family call on every thread and writes the running count to
# $ALLOC_COUNT_FILE on SIGUSR2. It counts at the malloc level, not with a Rust allocator, because
# aws-lc (the signature backend) is C and allocates through malloc directly, and because it then
# counts the release binary itself, unmodified. The script snapshots the count before and after a
# wrk run of ALLOC_DURATION seconds and divides by wrk's request count (the 64 connections' set-up
# and the few requests cut off when wrk stops are noise well under 0.1 per request). The same shim
# drives tests/e2e/allocs.rs, which fails when the debug build's counts regress.
#
# Usage: benches/compare.sh            (env: DURATION=15 CONNS=64 TOKENS=200000 ALLOC_DURATION=5
#                                       WORK=target/compare)
# Needs nginx, haproxy (>= 2.5 for jwt_verify), wrk, curl and cc; installs the missing ones (but
# cc) with apt-get.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
DURATION=${DURATION:-15}
WARMUP=${WARMUP:-2}
CONNS=${CONNS:-64}
RSS_CONNS=${RSS_CONNS:-1000}
TOKENS=${TOKENS:-200000}
ALLOC_DURATION=${ALLOC_DURATION:-5}
WORK=${WORK:-$ROOT/target/compare}
MINT=$WORK/mint
PATH_UNDER_TEST=/api/orders/42

P_UPSTREAM=18080 P_JWKS=18081 P_NGINX=18082 P_HAPROXY=18083 P_TOKENGATE=18090 P_ADMIN=18091

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'compare.sh: %s\n' "$*" >&2; exit 1; }

# ---- tools ------------------------------------------------------------------------------------
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
missing=()
[ -x "$NGINX" ] || missing+=(nginx)
[ -x "$HAPROXY" ] || missing+=(haproxy)
command -v wrk >/dev/null || missing+=(wrk)
command -v curl >/dev/null || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]} with apt-get"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  # Keep the packages' own services from starting (Debian's standard policy-rc.d mechanism).
  made_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    made_policy=1
  fi
  $SUDO apt-get update >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${missing[@]}" >&2
  [ -z "$made_policy" ] || $SUDO rm -f /usr/sbin/policy-rc.d
  NGINX=$(command -v nginx || echo /usr/sbin/nginx)
  HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
fi
for p in $P_UPSTREAM $P_JWKS $P_NGINX $P_HAPROXY $P_TOKENGATE $P_ADMIN; do
  if (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; then die "port $p is in use"; fi
done

# ---- cores ------------------------------------------------------------------------------------
NCPU=$(nproc)
if [ "$NCPU" -ge 4 ]; then
  CPU_PROXY=0 CPU_UPSTREAM=1 CPU_WRK=2-$((NCPU - 1)) WRK_THREADS=$((NCPU - 2))
elif [ "$NCPU" -eq 3 ]; then
  CPU_PROXY=0 CPU_UPSTREAM=1 CPU_WRK=2 WRK_THREADS=1
elif [ "$NCPU" -eq 2 ]; then
  CPU_PROXY=0 CPU_UPSTREAM=1 CPU_WRK=1 WRK_THREADS=1
  log "only 2 cores: the upstream and wrk share core 1; the proxy has core 0 to itself"
else
  CPU_PROXY=0 CPU_UPSTREAM=0 CPU_WRK=0 WRK_THREADS=1
  log "only 1 core: everything shares it; the numbers compare CPU cost, not throughput"
fi
[ "$WRK_THREADS" -ge 1 ] || WRK_THREADS=1
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# ---- build and mint ---------------------------------------------------------------------------
log "building tokengate (release) and the mint example"
cargo build --release --quiet --bin tokengate --example mint
TOKENGATE=$ROOT/target/release/tokengate
mkdir -p "$WORK/logs" "$WORK/tmp"
SHIM=$WORK/alloc_count.so ALLOC_FILE=$WORK/allocs.txt
cc -O2 -shared -fPIC -o "$SHIM" "$ROOT/tests/alloc_count/alloc_count.c" || die "cc: the malloc counter"
fresh_mint() {
  [ -s "$MINT/tokens.txt" ] && [ -s "$MINT/proxy.toml" ] || return 1
  [ "$(wc -l <"$MINT/tokens.txt")" -ge "$TOKENS" ] || return 1
  # Tokens live 4 h; reuse them for 3 h.
  [ -n "$(find "$MINT/tokens.txt" -mmin -180)" ]
}
if fresh_mint; then
  log "reusing $(wc -l <"$MINT/tokens.txt") tokens in $MINT"
else
  log "minting $TOKENS RS256 tokens (about 1 ms of CPU each)"
  rm -rf "$MINT"
  "$ROOT/target/release/examples/mint" --out "$MINT" --tokens "$TOKENS" \
    --jwks-url "http://127.0.0.1:$P_JWKS/jwks.json" --upstream "http://127.0.0.1:$P_UPSTREAM" \
    --listen "127.0.0.1:$P_TOKENGATE" --admin "127.0.0.1:$P_ADMIN"
fi
# shellcheck disable=SC1091
. "$MINT/claims.env"

# ---- configs ----------------------------------------------------------------------------------
USER_LINE=""; [ "$(id -u)" -ne 0 ] || USER_LINE="user root;"
nginx_conf() { # $1 = name, $2 = http block body
  cat >"$WORK/$1.conf" <<EOF
$USER_LINE
worker_processes 1;
pid $WORK/$1.pid;
error_log $WORK/logs/$1.error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $WORK/tmp/$1-body;
  proxy_temp_path $WORK/tmp/$1-proxy;
  fastcgi_temp_path $WORK/tmp/$1-fastcgi;
  uwsgi_temp_path $WORK/tmp/$1-uwsgi;
  scgi_temp_path $WORK/tmp/$1-scgi;
  keepalive_requests 10000000;
  keepalive_timeout 120s;
$2
}
EOF
}
nginx_conf upstream "
  server { listen 127.0.0.1:$P_UPSTREAM backlog=4096; location / { return 200 \"ok\\n\"; } }
  server { listen 127.0.0.1:$P_JWKS; root $MINT; default_type application/json; }"
nginx_conf proxy "
  upstream app { server 127.0.0.1:$P_UPSTREAM; keepalive 1024; }
  server {
    listen 127.0.0.1:$P_NGINX backlog=4096;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
    }
  }"
cat >"$WORK/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn 4000
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
  http-reuse always
frontend fe
  bind 127.0.0.1:$P_HAPROXY
  http-request deny deny_status 401 unless { req.hdr(authorization) -m found }
  http-request set-var(txn.bearer) http_auth_bearer
  http-request set-var(txn.alg) var(txn.bearer),jwt_header_query('\$.alg')
  http-request deny deny_status 401 unless { var(txn.alg) -m str RS256 }
  http-request deny deny_status 401 unless { var(txn.bearer),jwt_verify(txn.alg,"$MINT/public.pem") -m int 1 }
  http-request set-var(txn.iss) var(txn.bearer),jwt_payload_query('\$.iss')
  http-request set-var(txn.aud) var(txn.bearer),jwt_payload_query('\$.aud')
  http-request set-var(txn.exp) var(txn.bearer),jwt_payload_query('\$.exp','int')
  http-request set-var(txn.now) date()
  http-request deny deny_status 401 unless { var(txn.iss) -m str "$ISSUER" }
  http-request deny deny_status 401 unless { var(txn.aud) -m str "$AUDIENCE" }
  http-request deny deny_status 401 if { var(txn.exp),sub(txn.now) -m int lt 0 }
  default_backend app
backend app
  server up 127.0.0.1:$P_UPSTREAM
EOF
"$NGINX" -t -q -c "$WORK/upstream.conf" -p "$WORK" || die "upstream nginx config"
"$NGINX" -t -q -c "$WORK/proxy.conf" -p "$WORK" || die "proxy nginx config"
"$HAPROXY" -c -q -f "$WORK/haproxy.cfg" || die "haproxy config"
"$TOKENGATE" check --config "$MINT/proxy.toml" >/dev/null || die "tokengate config"

# wrk scripts: done() prints one machine-readable line; distinct mode gives each wrk thread
# its own interleaved share of the token file (every thread's Lua state holds only its share).
cat >"$WORK/report.lua" <<'EOF'
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT requests=%d duration_us=%d non2xx=%d sockerr=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
EOF
cat >"$WORK/same.lua" <<EOF
local f = assert(io.open("$MINT/token.txt")); local token = f:read("*l"); f:close()
wrk.method = "GET"
wrk.path = "$PATH_UNDER_TEST"
wrk.headers["Authorization"] = "Bearer " .. token
$(cat "$WORK/report.lua")
EOF
cat >"$WORK/distinct.lua" <<EOF
local threads, nthreads = {}, 0
function setup(thread) thread:set("tid", nthreads); nthreads = nthreads + 1; table.insert(threads, thread) end
local tokens, i, hdrs = {}, 0, {}
function init(args)
  local n, k = $WRK_THREADS, tid or 0
  local line = 0
  for t in io.lines("$MINT/tokens.txt") do
    if line % n == k then tokens[#tokens + 1] = "Bearer " .. t end
    line = line + 1
  end
  hdrs["Host"] = wrk.host .. ":" .. wrk.port
  if args[1] == "warm" then i = math.floor(#tokens / 2) end
end
function request()
  i = i % #tokens + 1
  hdrs["Authorization"] = tokens[i]
  return wrk.format("GET", "$PATH_UNDER_TEST", hdrs)
end
$(cat "$WORK/report.lua")
EOF

# ---- processes --------------------------------------------------------------------------------
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM

start() { # $1 = cpu list, rest = command; sets STARTED to the pid
  taskset -c "$1" "${@:2}" &
  STARTED=$!
  PIDS+=("$STARTED")
}
stop() {
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  local keep=() p; for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done; PIDS=("${keep[@]}")
}
wait_up() { # $1 = url: any HTTP answer will do
  for _ in $(seq 1 200); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$1" || true)" != 000 ] && return 0
    sleep 0.05
  done
  die "$1 never answered"
}
wait_http() { # $1 = url, $2 = expected status
  for _ in $(seq 1 200); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$1" || true)" = "$2" ] && return 0
    sleep 0.05
  done
  die "$1 never answered $2"
}
# CPU seconds (user+sys) used so far by a process and its children (nginx's worker).
cpu_ticks() {
  local total=0 pid
  for pid in "$1" $(pgrep -P "$1" || true); do
    [ -r "/proc/$pid/stat" ] || continue
    total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
  done
  echo "$total"
}

start "$CPU_UPSTREAM" "$NGINX" -c "$WORK/upstream.conf" -p "$WORK" -g 'daemon off;'
wait_http "http://127.0.0.1:$P_UPSTREAM/" 200
wait_http "http://127.0.0.1:$P_JWKS/jwks.json" 200

AUTH_SAME="Authorization: Bearer $(cat "$MINT/token.txt")"
start_proxy() { # $1 = nginx|haproxy|tokengate; sets PROXY_PID and PORT
  case $1 in
    nginx)
      start "$CPU_PROXY" "$NGINX" -c "$WORK/proxy.conf" -p "$WORK" -g 'daemon off;'
      PORT=$P_NGINX ;;
    haproxy)
      start "$CPU_PROXY" "$HAPROXY" -db -f "$WORK/haproxy.cfg"
      PORT=$P_HAPROXY ;;
    tokengate)
      # PRELOAD (the malloc counter) is set only for the allocation runs.
      LD_PRELOAD=${PRELOAD:-} ALLOC_COUNT_FILE=$ALLOC_FILE TOKIO_WORKER_THREADS=1 TOKENGATE_LOG=warn \
        start "$CPU_PROXY" "$TOKENGATE" --config "$MINT/proxy.toml" 2>>"$WORK/logs/tokengate.log"
      PORT=$P_TOKENGATE
      wait_http "http://127.0.0.1:$P_ADMIN/readyz" 200 ;;
  esac
  PROXY_PID=$STARTED
  wait_up "http://127.0.0.1:$PORT/"
  # Sanity: a valid token passes; for the authenticating proxies, no token is refused.
  local got
  got=$(curl -s -o /dev/null -w '%{http_code}' -H "$AUTH_SAME" "http://127.0.0.1:$PORT$PATH_UNDER_TEST")
  [ "$got" = 200 ] || die "$1: valid token got $got"
  if [ "$1" != nginx ]; then
    got=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT$PATH_UNDER_TEST")
    [ "$got" = 401 ] || die "$1: no token got $got"
  fi
}

# run_wrk <mode> <conns> <seconds> [warm]: prints the RESULT line, with the proxy's CPU use
# appended. A warm-up run starts half-way through each thread's tokens, so the measured run that
# follows does not begin with tokens the warm-up just put in tokengate's cache.
run_wrk() {
  local before after out
  before=$(cpu_ticks "$PROXY_PID")
  out=$(taskset -c "$CPU_WRK" wrk -t"$WRK_THREADS" -c"$2" -d"${3}s" --timeout 10s \
    -s "$WORK/$1.lua" "http://127.0.0.1:$PORT$PATH_UNDER_TEST" -- "${4:-run}" | grep '^RESULT') \
    || die "wrk failed"
  after=$(cpu_ticks "$PROXY_PID")
  echo "$out cpu_ticks=$((after - before))"
}
field() { sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<<" $2"; }

declare -A RPS P50 P99 NON2XX SOCKERR CPU
for mode in same distinct; do
  for proxy in nginx haproxy tokengate; do
    log "$mode token: $proxy (${WARMUP}s warm-up, ${DURATION}s at $CONNS connections)"
    start_proxy "$proxy"
    run_wrk "$mode" "$CONNS" "$WARMUP" warm >/dev/null
    r=$(run_wrk "$mode" "$CONNS" "$DURATION")
    if [ "$proxy" = tokengate ]; then
      curl -s "http://127.0.0.1:$P_ADMIN/metrics" | grep '^tokengate_token_cache_total' \
        | sed "s/^/   $mode: /" >&2 || true
    fi
    stop "$PROXY_PID"
    k=$mode/$proxy
    req=$(field requests "$r"); us=$(field duration_us "$r")
    RPS[$k]=$(awk -v n="$req" -v us="$us" 'BEGIN { printf "%.0f", n / (us / 1e6) }')
    P50[$k]=$(awk -v v="$(field p50_us "$r")" 'BEGIN { printf "%.2f", v / 1000 }')
    P99[$k]=$(awk -v v="$(field p99_us "$r")" 'BEGIN { printf "%.2f", v / 1000 }')
    NON2XX[$k]=$(field non2xx "$r"); SOCKERR[$k]=$(field sockerr "$r")
    CPU[$k]=$(awk -v t="$(field cpu_ticks "$r")" -v us="$us" -v hz="$(getconf CLK_TCK)" \
      'BEGIN { printf "%.0f", 100 * t / hz / (us / 1e6) }')
  done
done

# Peak RSS (VmHWM, summed over the proxy's processes) of a fresh proxy under RSS_CONNS keep-alive
# connections: tokengate in both modes (distinct tokens fill its cache), nginx and HAProxy for
# reference (neither keeps per-token state, so one mode is enough).
hwm() {
  local total=0 pid
  for pid in "$1" $(pgrep -P "$1" || true); do
    total=$((total + $(awk '/^VmHWM/ { print $2 }' "/proc/$pid/status")))
  done
  echo "$total"
}
declare -A RSS RSS_NON2XX RSS_SOCKERR RSS_RPS
for k in same/tokengate distinct/tokengate same/nginx same/haproxy; do
  mode=${k%/*} proxy=${k#*/}
  log "peak RSS: $proxy, $mode token, $RSS_CONNS connections, ${DURATION}s"
  start_proxy "$proxy"
  r=$(run_wrk "$mode" "$RSS_CONNS" "$DURATION")
  RSS[$k]=$(hwm "$PROXY_PID")
  RSS_NON2XX[$k]=$(field non2xx "$r")
  RSS_SOCKERR[$k]=$(field sockerr "$r")
  RSS_RPS[$k]=$(awk -v n="$(field requests "$r")" -v us="$(field duration_us "$r")" \
    'BEGIN { printf "%.0f", n / (us / 1e6) }')
  stop "$PROXY_PID"
done

# Whole-process heap allocations per request (see the top of this file): the release tokengate
# under the malloc counter, warmed up, then a counted wrk run in each mode.
alloc_snapshot() { # $1 = pid; prints "allocations bytes"
  rm -f "$ALLOC_FILE"
  kill -USR2 "$1"
  for _ in $(seq 1 200); do
    [ -s "$ALLOC_FILE" ] && { cut -d' ' -f1,2 "$ALLOC_FILE"; return 0; }
    sleep 0.05
  done
  die "the malloc counter wrote no counts"
}
declare -A ALLOCS ALLOC_BYTES
PRELOAD=$SHIM
for mode in same distinct; do
  log "allocations per request: tokengate under the malloc counter, $mode token, ${ALLOC_DURATION}s"
  start_proxy tokengate
  run_wrk "$mode" "$CONNS" "$WARMUP" warm >/dev/null
  s0=$(alloc_snapshot "$PROXY_PID")
  r=$(run_wrk "$mode" "$CONNS" "$ALLOC_DURATION")
  s1=$(alloc_snapshot "$PROXY_PID")
  read -r a0 b0 <<<"$s0"
  read -r a1 b1 <<<"$s1"
  curl -s "http://127.0.0.1:$P_ADMIN/metrics" | grep '^tokengate_token_cache_total' \
    | sed "s/^/   $mode: /" >&2 || true
  stop "$PROXY_PID"
  n=$(field requests "$r")
  ALLOCS[$mode]=$(awk -v d="$((a1 - a0))" -v n="$n" 'BEGIN { printf "%.1f", (n > 0 ? d / n : -1) }')
  ALLOC_BYTES[$mode]=$(awk -v d="$((b1 - b0))" -v n="$n" 'BEGIN { printf "%.0f", (n > 0 ? d / n : -1) }')
done
PRELOAD=

# ---- report -----------------------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }'; }
echo
echo "tokengate vs nginx (no auth) vs HAProxy (jwt_verify RS256), $(nproc) cores," \
  "proxy on core $CPU_PROXY, upstream on $CPU_UPSTREAM, wrk -t$WRK_THREADS on $CPU_WRK"
echo "wrk: ${DURATION}s, $CONNS keep-alive connections, GET $PATH_UNDER_TEST," \
  "$(head -c 2000 "$MINT/token.txt" | tr -d '\n' | wc -c)-byte RS256 tokens"
echo
# req/s per core: req/s divided by the share of a core the proxy used. When the proxy is not
# what saturates (proxy_cpu well under 100%: the load generator or a shared core is), this is
# the fairer measure of what each proxy costs per request.
per_core() { awk -v r="$1" -v c="$2" 'BEGIN { if (c > 0) printf "%.0f", r * 100 / c; else print "-" }'; }
declare -A PERCORE
printf '%-9s %-10s %9s %8s %8s %8s %7s %9s %9s %9s %10s\n' \
  mode proxy req/s p50_ms p99_ms non-2xx sockerr proxy_cpu req/s/core vs_nginx vs_haproxy
for mode in same distinct; do
  for proxy in nginx haproxy tokengate; do
    k=$mode/$proxy
    PERCORE[$k]=$(per_core "${RPS[$k]}" "${CPU[$k]}")
    printf '%-9s %-10s %9s %8s %8s %8s %7s %8s%% %10s %9s %10s\n' "$mode" "$proxy" "${RPS[$k]}" \
      "${P50[$k]}" "${P99[$k]}" "${NON2XX[$k]}" "${SOCKERR[$k]}" "${CPU[$k]}" "${PERCORE[$k]}" \
      "$(ratio "${RPS[$k]}" "${RPS[$mode/nginx]}")" "$(ratio "${RPS[$k]}" "${RPS[$mode/haproxy]}")"
  done
done
echo "(vs_* compare req/s; per core: same token tokengate/nginx" \
  "$(ratio "${PERCORE[same/tokengate]}" "${PERCORE[same/nginx]}"), distinct tokens tokengate/HAProxy" \
  "$(ratio "${PERCORE[distinct/tokengate]}" "${PERCORE[distinct/haproxy]}"))"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews all rows)"
echo
for k in same/tokengate distinct/tokengate same/nginx same/haproxy; do
  printf 'peak RSS %-10s %-8s token, %d connections: %7d KiB (%5.1f MiB), %6s req/s, non-2xx %s, socket errors %s\n' \
    "${k#*/}" "${k%/*}" "$RSS_CONNS" "${RSS[$k]}" "$(awk -v k="${RSS[$k]}" 'BEGIN { print k / 1024 }')" \
    "${RSS_RPS[$k]}" "${RSS_NON2XX[$k]}" "${RSS_SOCKERR[$k]}"
done
echo "allocations per request (whole process, malloc level, ${ALLOC_DURATION}s at $CONNS connections):" \
  "same token ${ALLOCS[same]} (${ALLOC_BYTES[same]} bytes), distinct tokens ${ALLOCS[distinct]}" \
  "(${ALLOC_BYTES[distinct]} bytes)"
echo
check() { # $1 = description, $2 = awk condition on a, b; $3 = a, $4 = b
  if awk -v a="$3" -v b="$4" "BEGIN { exit !($2) }"; then echo "MET   $1"; else echo "MISS  $1"; fi
}
check "same token: tokengate req/s >= 1.0x nginx ($(ratio "${RPS[same/tokengate]}" "${RPS[same/nginx]}"))" \
  'a >= b' "${RPS[same/tokengate]}" "${RPS[same/nginx]}"
check "distinct tokens: tokengate req/s >= 1.35x HAProxy ($(ratio "${RPS[distinct/tokengate]}" "${RPS[distinct/haproxy]}"))" \
  'a >= 1.35 * b' "${RPS[distinct/tokengate]}" "${RPS[distinct/haproxy]}"
check "p99 at $CONNS connections no worse than nginx (same token: ${P99[same/tokengate]} vs ${P99[same/nginx]} ms)" \
  'a <= b' "${P99[same/tokengate]}" "${P99[same/nginx]}"
check "tokengate peak RSS < 64 MiB at $RSS_CONNS connections (same: ${RSS[same/tokengate]} KiB, distinct: ${RSS[distinct/tokengate]} KiB)" \
  'a < 65536 && b < 65536' "${RSS[same/tokengate]}" "${RSS[distinct/tokengate]}"
check "cache-hit allocations per request <= 10 (same token: ${ALLOCS[same]})" \
  'a >= 0 && a <= 10' "${ALLOCS[same]}" 0
check "fresh-token allocations per request <= 25 (distinct tokens: ${ALLOCS[distinct]})" \
  'a >= 0 && a <= 25' "${ALLOCS[distinct]}" 0
