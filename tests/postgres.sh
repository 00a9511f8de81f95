#!/usr/bin/env bash
# A throwaway PostgreSQL for the tests (fsync off unless PREFS_PG_FSYNC=on: never for real data).
#
#   tests/postgres.sh start   install PostgreSQL if missing (Debian, as root), create the cluster if
#                             needed and start it; the last line on stdout is the admin URL, e.g.
#                             postgres://postgres@127.0.0.1:55432/postgres
#   tests/postgres.sh url     print that URL
#   tests/postgres.sh halt    stop the server (pg_ctl stop -m fast) but keep the cluster: a later
#                             `start` restarts it with its data (the reliability tests' outage)
#   tests/postgres.sh stop    stop the server and delete the cluster
#
# Then: PREFS_TEST_POSTGRES_URL=$(tests/postgres.sh start | tail -n1) cargo test --all-features
#
# Settings: PREFS_PG_PORT (default 55432), PREFS_PG_DIR (default ${TMPDIR:-/tmp}/prefs-pg-<port>; the
# server runs as the `postgres` user when started by root, so every parent directory must be
# traversable by that user), PREFS_PG_FSYNC (default off; `on` for a durable server: fsync,
# synchronous_commit and full_page_writes on, as the crash and outage tests want). Authentication
# is `trust`, and the server listens on 127.0.0.1 only.
set -euo pipefail

PORT="${PREFS_PG_PORT:-55432}"
DIR="${PREFS_PG_DIR:-${TMPDIR:-/tmp}/prefs-pg-${PORT}}"
URL="postgres://postgres@127.0.0.1:${PORT}/postgres"

log() { echo "postgres.sh: $*" >&2; }
die() { log "$*"; exit 1; }

is_root() { [[ "$(id -u)" == 0 ]]; }

# Runs a command as the user owning the cluster: `postgres` when we are root (PostgreSQL refuses to
# run as root), else ourselves.
as_owner() {
    if is_root; then runuser -u postgres -- "$@"; else "$@"; fi
}

# The directory holding initdb and pg_ctl, or nothing.
find_bindir() {
    local dir
    if command -v pg_config >/dev/null 2>&1; then
        dir="$(pg_config --bindir)"
        if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then echo "$dir"; return; fi
    fi
    # Debian keeps the server binaries out of PATH; take the newest version.
    while read -r dir; do
        if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then echo "$dir"; return; fi
    done < <(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r)
}

ensure_installed() {
    BIN="$(find_bindir)"
    if [[ -n "$BIN" ]]; then return; fi
    is_root || die "PostgreSQL is not installed (no initdb); install the postgresql package, or run as root"
    log "installing PostgreSQL (apt-get)"
    apt-get update >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql >&2
    BIN="$(find_bindir)"
    [[ -n "$BIN" ]] || die "initdb still not found after installing postgresql"
}

running() {
    [[ -f "$DIR/PG_VERSION" ]] && as_owner "$BIN/pg_ctl" -D "$DIR" status >/dev/null 2>&1
}

start() {
    ensure_installed
    if running; then
        log "already running in $DIR"
        echo "$URL"
        return
    fi
    if [[ ! -f "$DIR/PG_VERSION" ]]; then
        rm -rf "$DIR"
        mkdir -p "$DIR"
        if is_root; then
            id postgres >/dev/null 2>&1 || die "no postgres user to run the server as"
            chown postgres:postgres "$DIR"
        fi
        chmod 700 "$DIR"
        as_owner test -x "$DIR" || die "the postgres user cannot reach $DIR; set PREFS_PG_DIR elsewhere"
        log "creating a cluster in $DIR"
        as_owner "$BIN/initdb" -D "$DIR" -A trust -U postgres -E UTF8 --no-sync >&2
    fi
    log "starting on 127.0.0.1:$PORT"
    local options="-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c max_connections=300"
    if [[ "${PREFS_PG_FSYNC:-off}" == on ]]; then
        options+=" -c fsync=on -c synchronous_commit=on -c full_page_writes=on"
    else
        options+=" -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    fi
    if ! as_owner "$BIN/pg_ctl" -D "$DIR" -l "$DIR/server.log" -w -t 60 -o "$options" start >&2; then
        tail -n 20 "$DIR/server.log" >&2 || true
        die "the server did not start (is port $PORT taken? set PREFS_PG_PORT)"
    fi
    echo "$URL"
}

halt() {
    BIN="$(find_bindir)"
    if [[ -n "$BIN" ]] && running; then
        as_owner "$BIN/pg_ctl" -D "$DIR" -m fast -w -t 60 stop >&2
        log "halted; the cluster stays in $DIR"
    else
        log "not running in $DIR"
    fi
}

stop() {
    BIN="$(find_bindir)"
    if [[ -n "$BIN" && -f "$DIR/PG_VERSION" ]]; then
        as_owner "$BIN/pg_ctl" -D "$DIR" -m fast -w stop >&2 || true
    fi
    rm -rf "$DIR"
    log "stopped; removed $DIR"
}

case "${1:-}" in
    start) start ;;
    halt) halt ;;
    stop) stop ;;
    url) echo "$URL" ;;
    *) die "usage: $0 start|halt|stop|url" ;;
esac
