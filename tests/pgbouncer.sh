#!/usr/bin/env bash
# PgBouncer in transaction mode in front of the throwaway PostgreSQL (tests/postgres.sh), for
# running the PostgreSQL tests through a transaction-mode pooler (`make test-pgbouncer`).
#
#   tests/pgbouncer.sh start   install Debian's pgbouncer if missing (as root), write its
#                              configuration and start it (as the `postgres` user when root); the
#                              last line on stdout is the URL through it, e.g.
#                              postgres://postgres@127.0.0.1:56432/postgres
#   tests/pgbouncer.sh stop    stop it and delete its directory
#
# Any database name is pooled (`* =`: the scratch databases the tests create directly on the
# server), `pool_mode=transaction`, `auth_type=trust` (user `postgres`). Clients talk to it in
# plain text on 127.0.0.1; it talks to the server as the server's URL says: TLS with the URL's
# `sslrootcert`, checking the name, when the URL has one (PREFS_PG_TLS=1 clusters).
#
# Settings: PREFS_PGBOUNCER_PORT (default 56432), PREFS_PGBOUNCER_DIR (default
# ${TMPDIR:-/tmp}/prefs-pgbouncer-<port>), PREFS_PGBOUNCER_SERVER_URL (default: what
# `tests/postgres.sh url` prints).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PORT="${PREFS_PGBOUNCER_PORT:-56432}"
DIR="${PREFS_PGBOUNCER_DIR:-${TMPDIR:-/tmp}/prefs-pgbouncer-${PORT}}"
URL="postgres://postgres@127.0.0.1:${PORT}/postgres"

log() { echo "pgbouncer.sh: $*" >&2; }
die() { log "$*"; exit 1; }
is_root() { [[ "$(id -u)" == 0 ]]; }
as_owner() {
    if is_root; then runuser -u postgres -- "$@"; else "$@"; fi
}

find_pgbouncer() {
    command -v pgbouncer 2>/dev/null || { [[ -x /usr/sbin/pgbouncer ]] && echo /usr/sbin/pgbouncer; } || true
}

ensure_installed() {
    BIN="$(find_pgbouncer)"
    if [[ -n "$BIN" ]]; then return; fi
    is_root || die "pgbouncer is not installed; install the pgbouncer package, or run as root"
    log "installing pgbouncer (apt-get)"
    # The package's own service is not wanted: only this script's instance runs.
    DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y --no-install-recommends pgbouncer >&2 \
        || { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y --no-install-recommends pgbouncer >&2; }
    BIN="$(find_pgbouncer)"
    [[ -n "$BIN" ]] || die "pgbouncer still not found after installing it"
}

running() {
    [[ -f "$DIR/pgbouncer.pid" ]] && kill -0 "$(cat "$DIR/pgbouncer.pid")" 2>/dev/null
}

# The value of query parameter $2 in URL $1, percent-decoded.
param() {
    python3 -c 'import sys, urllib.parse as u
q = u.parse_qs(u.urlsplit(sys.argv[1]).query)
print(q.get(sys.argv[2], [""])[0])' "$1" "$2"
}

start() {
    ensure_installed
    local server="${PREFS_PGBOUNCER_SERVER_URL:-$("$HERE/postgres.sh" url)}"
    if running; then
        if [[ "$(cat "$DIR/server" 2>/dev/null)" == "$server" ]]; then
            log "already running in $DIR"
            echo "$URL"
            return
        fi
        log "running in front of another server: restarting"
        stop
    fi
    local host port rootcert
    host="$(python3 -c 'import sys, urllib.parse as u; print(u.urlsplit(sys.argv[1]).hostname)' "$server")"
    port="$(python3 -c 'import sys, urllib.parse as u; print(u.urlsplit(sys.argv[1]).port or 5432)' "$server")"
    rootcert="$(param "$server" sslrootcert)"
    rm -rf "$DIR"
    mkdir -p "$DIR"
    echo '"postgres" ""' >"$DIR/userlist.txt"
    echo "$server" >"$DIR/server"
    {
        echo "[databases]"
        echo "* = host=$host port=$port"
        echo "[pgbouncer]"
        echo "listen_addr = 127.0.0.1"
        echo "listen_port = $PORT"
        echo "unix_socket_dir ="
        echo "auth_type = trust"
        echo "auth_file = $DIR/userlist.txt"
        echo "admin_users = postgres"
        echo "pool_mode = transaction"
        echo "max_client_conn = 2000"
        echo "default_pool_size = 40"
        echo "max_db_connections = 0"
        echo "ignore_startup_parameters = extra_float_digits,options"
        echo "logfile = $DIR/pgbouncer.log"
        echo "pidfile = $DIR/pgbouncer.pid"
        if [[ -n "$rootcert" ]]; then
            echo "server_tls_sslmode = verify-full"
            echo "server_tls_ca_file = $rootcert"
        fi
    } >"$DIR/pgbouncer.ini"
    if is_root; then chown -R postgres:postgres "$DIR"; fi
    log "starting on 127.0.0.1:$PORT in front of $host:$port (pool_mode=transaction)"
    as_owner "$BIN" -d "$DIR/pgbouncer.ini" >&2
    for _ in $(seq 100); do
        if running && (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
            echo "$URL"
            return
        fi
        sleep 0.1
    done
    tail -n 20 "$DIR/pgbouncer.log" >&2 || true
    die "pgbouncer did not start (is port $PORT taken? set PREFS_PGBOUNCER_PORT)"
}

stop() {
    if running; then
        kill "$(cat "$DIR/pgbouncer.pid")"
        for _ in $(seq 50); do running || break; sleep 0.1; done
    fi
    rm -rf "$DIR"
    log "stopped; removed $DIR"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    url) echo "$URL" ;;
    *) die "usage: $0 start|stop|url" ;;
esac
