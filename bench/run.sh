#!/usr/bin/env bash
# The prefs benchmark (`make bench`; BENCHMARKS.md explains the method and records the results).
#
# Builds the release binary and the bench tools, seeds SQLite and PostgreSQL databases, and for
# each data set size, backend and scenario: starts `prefs serve` pinned to one core, drives it with
# wrk pinned to the other core (64 connections, a bearer token per request, users spread over a
# token sample), and records requests/s, p50/p99 latency, peak RSS (VmHWM) and the time from start
# to first answer. The same load runs against the framework ceiling (bench/ceiling) and the storage
# engine alone does the same work (prefs-bench engine). Prints one table with the ratios and
# rewrites the results section of BENCHMARKS.md.
#
# Settings (environment):
#   BENCH_USERS=1000,1000000   data set sizes (users; 20 preferences each)
#   BENCH_BACKENDS=sqlite,postgres
#   BENCH_SCENARIOS=edx_get,edx_patch,record_get,ns_get,ns_patch
#   BENCH_DURATION=10          seconds of each measured run (after BENCH_WARMUP=2 seconds of warm-up)
#   BENCH_CONNECTIONS=64       wrk connections
#   BENCH_TOKENS=20000         most users a run spreads its requests over (all of them below that)
#   BENCH_SERVER_CPU=0 BENCH_CLIENT_CPU=1
#                              cores of the server (prefs, the ceiling, PostgreSQL, the engine
#                              baseline) and of the load generator
#   BENCH_PORT=38080           port of prefs (the ceiling takes the next one)
#   BENCH_PG_PORT=55452        the bench's own PostgreSQL cluster (durable settings; stopped and
#                              removed at the end)
#   BENCH_DIR=${TMPDIR:-/tmp}/prefs-bench   work directory (databases, tokens, raw output)
#   BENCH_LABEL=               a note printed with the results (e.g. "preliminary: machine busy")
#   BENCH_MARKDOWN=BENCHMARKS.md   the file whose results section is rewritten ("" for none)
#   BENCH_KEEP=0               1 keeps the databases in BENCH_DIR
#   BENCH_PREFS=               a prefs binary to measure instead of building target/release/prefs
# Any PREFS_* variable (e.g. PREFS_DB_POOL_SIZE) reaches `prefs serve` unchanged.
#
# Quick check of the harness (about 2 minutes): BENCH_USERS=1000 BENCH_DURATION=3 BENCH_WARMUP=1 bench/run.sh
# The defaults take about 11 minutes on 2 cores, plus builds.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

USERS_LIST="${BENCH_USERS:-1000,1000000}"
BACKENDS="${BENCH_BACKENDS:-sqlite,postgres}"
SCENARIOS="${BENCH_SCENARIOS:-edx_get,edx_patch,record_get,ns_get,ns_patch}"
DURATION="${BENCH_DURATION:-10}"
WARMUP="${BENCH_WARMUP:-2}"
CONNECTIONS="${BENCH_CONNECTIONS:-64}"
MAX_TOKENS="${BENCH_TOKENS:-20000}"
SERVER_CPU="${BENCH_SERVER_CPU:-0}"
CLIENT_CPU="${BENCH_CLIENT_CPU:-1}"
PG_PORT="${BENCH_PG_PORT:-55452}"
WORK="${BENCH_DIR:-${TMPDIR:-/tmp}/prefs-bench}"
LABEL="${BENCH_LABEL:-}"
MARKDOWN="${BENCH_MARKDOWN-BENCHMARKS.md}"
KEEP="${BENCH_KEEP:-0}"

PREFS_PORT="${BENCH_PORT:-38080}"
CEILING_PORT="$((PREFS_PORT + 1))"
PG_DIR="$WORK/pg-$PG_PORT"
PG_ADMIN_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/prefs_bench"
PREFS="${BENCH_PREFS:-$ROOT/target/release/prefs}"
TOOLS="$ROOT/bench/target/release/prefs-bench"
CEILING="$ROOT/bench/target/release/prefs-ceiling"
LUA="$ROOT/bench/wrk/scenario.lua"
RESULTS="$WORK/results.tsv"
META="$WORK/meta.env"
# A fixed HS256 secret of the benchmark only (tokens are minted by bench/tools for seeded users).
export PREFS_JWT_SECRET="prefs-bench-secret-not-for-production-0123456789"

log() { echo "bench: $*" >&2; }
die() { log "$*"; exit 1; }
is_root() { [[ "$(id -u)" == 0 ]]; }

# ---------------------------------------------------------------------------------------------
# Tools

ensure_tools() {
    command -v taskset >/dev/null || die "taskset (util-linux) is required"
    command -v curl >/dev/null || die "curl is required"
    command -v python3 >/dev/null || die "python3 is required (the report)"
    if ! command -v wrk >/dev/null; then
        is_root || die "wrk is missing: apt-get install wrk"
        log "installing wrk (apt-get)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y wrk >&2 \
            || { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y wrk >&2; }
    fi
    [[ "$(nproc --all)" -ge 2 ]] || log "warning: fewer than 2 cores: server and load generator share one"
}

build() {
    if [[ -z "${BENCH_PREFS:-}" ]]; then
        log "building the release binary"
        cargo build --release --bin prefs >&2
    fi
    log "building the bench tools"
    (cd bench && cargo build --release >&2)
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL: a cluster of the bench's own, durable (fsync, synchronous_commit and full-page writes
# on, as in production), pinned to the server core, stopped and deleted at the end.

pg_bindir() {
    local dir
    if command -v pg_config >/dev/null 2>&1; then
        dir="$(pg_config --bindir)"
        if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then echo "$dir"; return; fi
    fi
    while read -r dir; do
        if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then echo "$dir"; return; fi
    done < <(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r)
}

as_pg() { if is_root; then runuser -u postgres -- "$@"; else "$@"; fi; }

pg_start() {
    PG_BIN="$(pg_bindir)"
    if [[ -z "$PG_BIN" ]]; then
        is_root || die "PostgreSQL is not installed: apt-get install postgresql"
        log "installing PostgreSQL (apt-get)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql >&2 \
            || { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql >&2; }
        PG_BIN="$(pg_bindir)"
    fi
    rm -rf "$PG_DIR"
    mkdir -p "$PG_DIR"
    if is_root; then chown postgres:postgres "$PG_DIR"; chmod 755 "$WORK"; fi
    chmod 700 "$PG_DIR"
    as_pg "$PG_BIN/initdb" -D "$PG_DIR" -A trust -U postgres -E UTF8 >/dev/null
    local options="-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=100"
    options+=" -c fsync=on -c synchronous_commit=on -c full_page_writes=on"
    options+=" -c shared_buffers=256MB -c wal_level=minimal -c max_wal_senders=0 -c max_wal_size=4GB"
    log "starting PostgreSQL $("$PG_BIN/postgres" --version | awk "{print \$3}") on 127.0.0.1:$PG_PORT (core $SERVER_CPU)"
    # pg_ctl and the postmaster it forks inherit the core.
    if ! as_pg taskset -c "$SERVER_CPU" "$PG_BIN/pg_ctl" -D "$PG_DIR" -l "$PG_DIR/server.log" -w -t 60 \
        -o "$options" start >/dev/null; then
        tail -n 20 "$PG_DIR/server.log" >&2 || true
        die "PostgreSQL did not start (port $PG_PORT taken? set BENCH_PG_PORT)"
    fi
    PG_STARTED=1
}

pg_stop() {
    if [[ "${PG_STARTED:-0}" == 1 ]]; then
        as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR" -m fast -w stop >/dev/null 2>&1 || true
        cp "$PG_DIR/server.log" "$WORK/raw/postgres.log" 2>/dev/null || true
        PG_STARTED=0
        log "PostgreSQL stopped"
    fi
    rm -rf "$PG_DIR"
}

# ---------------------------------------------------------------------------------------------
# Seeding

seed_sqlite() { # users
    local db="$WORK/sqlite-$1.db"
    rm -f "$db" "$db-wal" "$db-shm"
    "$PREFS" migrate --database-url "sqlite://$db" >/dev/null
    log "seeding SQLite with $1 users"
    local started=$SECONDS
    "$TOOLS" seed-sqlite "$db" "$1"
    log "  SQLite seeded in $((SECONDS - started)) s, $(du -h "$db" | cut -f1)"
}

seed_postgres() { # users
    psql -q -X "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS prefs_bench" -c "CREATE DATABASE prefs_bench" >/dev/null
    "$PREFS" migrate --database-url "$PG_URL" >/dev/null
    log "seeding PostgreSQL with $1 users"
    local started=$SECONDS
    psql -q -X -v users="$1" -v now="$(( ${EPOCHREALTIME/./} ))" -f bench/seed-postgres.sql "$PG_URL" >/dev/null
    log "  PostgreSQL seeded in $((SECONDS - started)) s, $(psql -X -At "$PG_URL" -c "SELECT pg_size_pretty(pg_database_size('prefs_bench'))")"
}

db_url() { # backend users
    case "$1" in
        sqlite) echo "sqlite://$WORK/sqlite-$2.db" ;;
        postgres) echo "$PG_URL" ;;
    esac
}

engine_db() { # backend users
    case "$1" in
        sqlite) echo "$WORK/sqlite-$2.db" ;;
        postgres) echo "$PG_URL" ;;
    esac
}

# ---------------------------------------------------------------------------------------------
# Measuring

SERVER_PID=""

# Starts a server command pinned to the server core; sets SERVER_PID and STARTUP_MS (from just
# before the exec to its first 2xx answer on PROBE_PATH).
start_server() { # port probe_path token command...
    local port="$1" path="$2" token="$3"
    shift 3
    # Never time (or load) someone else's server.
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        die "port $port is already taken; set BENCH_PORT"
    fi
    local since="${EPOCHREALTIME/./}"
    taskset -c "$SERVER_CPU" "$@" >"${BENCH_SERVER_LOG:-/dev/null}" 2>&1 &
    SERVER_PID=$!
    if ! STARTUP_MS="$("$TOOLS" wait-ready "127.0.0.1:$port" "$path" "$since" $token)"; then
        stop_server
        die "the server ($*) did not answer"
    fi
}

stop_server() {
    if [[ -n "$SERVER_PID" ]]; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
    fi
}

peak_rss_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$SERVER_PID/status"; }

# Runs wrk for `seconds` on `port`; prints "requests_per_s p50_us p99_us errors".
load() { # port scenario tokens seconds raw_file
    local out
    out="$(BENCH_SCENARIO="$2" BENCH_TOKENS="$3" taskset -c "$CLIENT_CPU" \
        wrk -t1 -c"$CONNECTIONS" -d"$4"s --timeout 10s -s "$LUA" "http://127.0.0.1:$1")"
    if [[ -n "${5:-}" ]]; then printf '%s\n' "$out" >"$5"; fi
    grep '^RESULT' <<<"$out" | tr ' ' '\n' | awk -F= '
        NF == 2 { v[$1] = $2 }
        END {
            errors = v["err_connect"] + v["err_read"] + v["err_write"] + v["err_status"] + v["err_timeout"]
            printf "%.1f %d %d %d\n", v["requests"] / (v["duration_us"] / 1e6), v["p50_us"], v["p99_us"], errors
        }'
}

# One request of the scenario with curl, as wrk sends it (first token of the file); prints
# "status bytes" of the answer: the ceiling answers the same.
probe() { # port scenario tokens
    local id user token base="http://127.0.0.1:$1" mp='Content-Type: application/merge-patch+json'
    read -r id user token <"$3"
    local args=(-s -o /dev/null -w '%{http_code} %{size_download}' -H "Authorization: Bearer $token")
    case "$2" in
        edx_get) curl "${args[@]}" "$base/api/user/v1/preferences/$user" ;;
        edx_patch) curl "${args[@]}" -X PATCH -H "$mp" \
            -d '{"key-1":"value-1-0000001","key-4":"value-4-0000001","key-7":"value-7-0000001"}' \
            "$base/api/user/v1/preferences/$user" ;;
        record_get) curl "${args[@]}" "$base/api/v2/user/me/preference/$(( (id - 1) * 20 + 1 ))/" ;;
        ns_get) curl "${args[@]}" "$base/preferences/bench-app" ;;
        ns_patch) curl "${args[@]}" -X PATCH -H "$mp" -d '{"opt-1":{"enabled":false,"label":"item-1-0000001"},"opt-4":{"enabled":false,"label":"item-4-0000001"},"opt-7":{"enabled":false,"label":"item-7-0000001"}}' \
            "$base/preferences/bench-app" ;;
        *) die "unknown scenario $2" ;;
    esac
}

record() { # kind backend users scenario rps p50_us p99_us rss_kb startup_ms errors
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RESULTS"
}

declare -A CEILING_DONE=()

measure_prefs() { # backend users scenario tokens
    local backend="$1" users="$2" scenario="$3" tokens="$4"
    start_server "$PREFS_PORT" /readyz "" env DATABASE_URL="$(db_url "$backend" "$users")" \
        PREFS_BIND="127.0.0.1:$PREFS_PORT" "$PREFS" serve
    local startup="$STARTUP_MS" answer
    answer="$(probe "$PREFS_PORT" "$scenario" "$tokens")"
    [[ "$answer" == 2* ]] || { stop_server; die "prefs answered $answer to $scenario on $backend"; }
    load "$PREFS_PORT" "$scenario" "$tokens" "$WARMUP" >/dev/null
    local figures
    figures="$(load "$PREFS_PORT" "$scenario" "$tokens" "$DURATION" "$WORK/raw/prefs-$backend-$users-$scenario.txt")"
    local rss
    rss="$(peak_rss_kb)"
    stop_server
    read -r rps p50 p99 errors <<<"$figures"
    record prefs "$backend" "$users" "$scenario" "$rps" "$p50" "$p99" "$rss" "$startup" "$errors"
    log "  prefs $backend $users $scenario: $rps req/s, p50 ${p50} µs, p99 ${p99} µs, RSS ${rss} kB, start ${startup} ms, errors $errors"
    if [[ -z "${CEILING_DONE[$scenario]:-}" ]]; then
        measure_ceiling "$scenario" "$tokens" "$answer"
        CEILING_DONE[$scenario]=1
    fi
}

measure_ceiling() { # scenario tokens "status bytes"
    local scenario="$1" tokens="$2" status bytes token
    read -r status bytes <<<"$3"
    read -r _ _ token <"$tokens"
    start_server "$CEILING_PORT" /ready "$token" "$CEILING" --bind "127.0.0.1:$CEILING_PORT" \
        --status "$status" --body-bytes "$bytes"
    local startup="$STARTUP_MS" answer
    answer="$(probe "$CEILING_PORT" "$scenario" "$tokens")"
    [[ "$answer" == "$status $bytes" ]] || log "warning: the ceiling answers $answer, prefs $status $bytes"
    load "$CEILING_PORT" "$scenario" "$tokens" "$WARMUP" >/dev/null
    local figures rss
    figures="$(load "$CEILING_PORT" "$scenario" "$tokens" "$DURATION" "$WORK/raw/ceiling-$scenario.txt")"
    rss="$(peak_rss_kb)"
    stop_server
    read -r rps p50 p99 errors <<<"$figures"
    record ceiling - - "$scenario" "$rps" "$p50" "$p99" "$rss" "$startup" "$errors"
    log "  ceiling $scenario ($status, $bytes bytes): $rps req/s, p50 ${p50} µs, p99 ${p99} µs, RSS ${rss} kB"
}

measure_engine() { # backend users tokens
    local backend="$1" users="$2" tokens="$3" op conns out
    for op in read write; do
        for conns in 1 8; do
            out="$(taskset -c "$SERVER_CPU" "$TOOLS" engine "$backend" "$(engine_db "$backend" "$users")" \
                "$op" "$conns" "$DURATION" "$tokens")"
            printf '%s\n' "$out" >"$WORK/raw/engine-$backend-$users-$op-$conns.txt"
            local rate p50 p99 errors
            read -r rate p50 p99 errors < <(tr ' ' '\n' <<<"$out" | awk -F= '
                NF == 2 { v[$1] = $2 } END { print v["rate"], v["p50_us"], v["p99_us"], v["errors"] }')
            record "engine" "$backend" "$users" "$op-$conns" "$rate" "$p50" "$p99" - - "$errors"
            log "  engine $backend $users $op x$conns: $rate ops/s, p50 ${p50} µs, p99 ${p99} µs, errors $errors"
        done
    done
}

# ---------------------------------------------------------------------------------------------

cleanup() {
    stop_server
    pg_stop
    if [[ "$KEEP" != 1 ]]; then rm -f "$WORK"/sqlite-*.db "$WORK"/sqlite-*.db-wal "$WORK"/sqlite-*.db-shm; fi
}

main() {
    ensure_tools
    build
    mkdir -p "$WORK/raw"
    rm -f "$RESULTS" "$WORK"/raw/*
    trap cleanup EXIT
    trap 'exit 130' INT TERM

    local load_start
    load_start="$(cut -d' ' -f1-3 /proc/loadavg)"
    log "load average at start: $load_start (figures are noise unless it is near 0)"
    {
        echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
        echo "nproc=$(nproc --all)"
        echo "cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
        echo "memory=$(awk '/^MemTotal:/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
        echo "kernel=$(uname -r)"
        if [[ -n "${BENCH_PREFS:-}" ]]; then
            echo "commit=the binary $PREFS (built $(date -u -r "$PREFS" '+%Y-%m-%d %H:%M UTC'))"
        else
            echo "commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- crates 2>/dev/null || echo ' with uncommitted changes in crates/')"
        fi
        echo "wrk=$(wrk -v 2>&1 | head -n1 | awk '{print $2}')"
        echo "load_start=$load_start"
        echo "users=$USERS_LIST"
        echo "backends=$BACKENDS"
        echo "duration=$DURATION"
        echo "warmup=$WARMUP"
        echo "connections=$CONNECTIONS"
        echo "tokens=$MAX_TOKENS"
        echo "server_cpu=$SERVER_CPU"
        echo "client_cpu=$CLIENT_CPU"
        echo "label=$LABEL"
        local settings
        settings="$(env | { grep -E '^(BENCH|PREFS)_' || true; } \
            | { grep -vE '^(BENCH_LABEL|PREFS_JWT_SECRET)=' || true; } | sort | tr '\n' ' ')"
        echo "command=${settings}bench/run.sh"
    } >"$META"

    local users backend scenario tokens count
    [[ ",$BACKENDS," == *,postgres,* ]] && pg_start
    for users in ${USERS_LIST//,/ }; do
        tokens="$WORK/tokens-$users.txt"
        count=$(( users < MAX_TOKENS ? users : MAX_TOKENS ))
        "$TOOLS" tokens "$users" "$count" "$tokens"
        for backend in ${BACKENDS//,/ }; do
            case "$backend" in
                sqlite) seed_sqlite "$users" ;;
                postgres) seed_postgres "$users" ;;
                *) die "unknown backend $backend" ;;
            esac
            measure_engine "$backend" "$users" "$tokens"
            for scenario in ${SCENARIOS//,/ }; do
                measure_prefs "$backend" "$users" "$scenario" "$tokens"
            done
            if [[ "$backend" == sqlite && "$KEEP" != 1 ]]; then rm -f "$WORK/sqlite-$users.db"*; fi
        done
    done
    echo "load_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$META"

    python3 bench/report.py "$RESULTS" "$META" ${MARKDOWN:+--markdown "$MARKDOWN"}
}

# On one line, read whole before it runs: editing this file during a run cannot derail it.
main "$@"; exit
