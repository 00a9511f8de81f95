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
#
# PREFS_PG_TLS=1 (what `make test` uses): the server speaks TLS only (pg_hba `hostssl`, no `host`
# line), with a certificate for 127.0.0.1 and localhost signed by a CA this script makes with
# openssl (in $DIR/tls: ca.pem, and other-ca.pem, another CA, for the tests of untrusted
# certificates); the URL carries `sslmode=verify-full&sslrootcert=$DIR/tls/ca.pem`. Its default
# port is then 55433, so that it never meets a plain cluster left on 55432. For the tests of
# client certificates the server trusts client certificates signed by ca.pem (ssl_ca_file), and
# the role `prefs_cert`, which owns a database of that name, gets in by one only (pg_hba `cert`):
# $DIR/tls/client.crt and client.key (CN=prefs_cert, signed by ca.pem), and other-client.crt and
# other-client.key (CN=prefs_cert too, signed by other-ca.pem). Every other role is let in as
# before, with or without a client certificate; replication connections (the reliability tests'
# standby) are let in over TLS only too (pg_hba `hostssl replication`). A running cluster made
# before the client certificates is restarted (keeping its data) to get them.
set -euo pipefail

TLS="${PREFS_PG_TLS:-0}"
if [[ "$TLS" == 1 ]]; then DEFAULT_PORT=55433; else DEFAULT_PORT=55432; fi
PORT="${PREFS_PG_PORT:-$DEFAULT_PORT}"
DIR="${PREFS_PG_DIR:-${TMPDIR:-/tmp}/prefs-pg-${PORT}}"
URL="postgres://postgres@127.0.0.1:${PORT}/postgres"
# The role that logs in by client certificate only (PREFS_PG_TLS=1): its certificates' CN.
CERT_ROLE=prefs_cert
if [[ "$TLS" == 1 ]]; then URL+="?sslmode=verify-full&sslrootcert=$DIR/tls/ca.pem"; fi

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

# A CA, and a server certificate it signs for 127.0.0.1 and localhost, in $DIR/tls, and client
# certificates for $CERT_ROLE (by that CA, and by the other one); each made unless it is there, so
# a cluster made before the client certificates gets them. pg_hba.conf then takes TLS connections
# only (and the owner over the Unix socket), $CERT_ROLE's by client certificate only; replication
# connections (pg_basebackup, a standby's walreceiver) over TLS too.
setup_tls() {
    local tls="$DIR/tls"
    command -v openssl >/dev/null || die "openssl is needed for PREFS_PG_TLS=1"
    mkdir -p "$tls"
    (
        cd "$tls"
        if [[ ! -f server.crt ]]; then
            log "making a CA and a server certificate in $tls"
            for ca in ca other-ca; do
                openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=prefs test $ca" \
                    -keyout "$ca.key" -out "$ca.pem" -addext basicConstraints=critical,CA:TRUE \
                    -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
            done
            openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr 2>/dev/null
            printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' >server.ext
            openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
                -extfile server.ext -out server.crt 2>/dev/null
            chmod 600 server.key
            chmod 644 ca.pem other-ca.pem server.crt
        fi
        if [[ ! -f client.crt || ! -f other-client.crt ]]; then
            [[ -f ca.key && -f other-ca.key ]] || die "$tls lacks the CA keys; remove the cluster (stop) and start again"
            log "making client certificates for $CERT_ROLE in $tls"
            printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' >client.ext
            for pair in ca:client other-ca:other-client; do
                ca="${pair%%:*}" name="${pair#*:}"
                openssl req -newkey rsa:2048 -nodes -subj "/CN=$CERT_ROLE" -keyout "$name.key" -out "$name.csr" 2>/dev/null
                openssl x509 -req -in "$name.csr" -CA "$ca.pem" -CAkey "$ca.key" -CAcreateserial -days 3650 \
                    -extfile client.ext -out "$name.crt" 2>/dev/null
                chmod 600 "$name.key"
                chmod 644 "$name.crt"
            done
        fi
    )
    if is_root; then chown -R postgres:postgres "$tls"; fi
    as_owner sh -c "printf '%s\n' 'local all all trust' \
        'hostssl all $CERT_ROLE 127.0.0.1/32 cert' 'hostssl all $CERT_ROLE ::1/128 cert' \
        'hostssl all all 127.0.0.1/32 trust' 'hostssl all all ::1/128 trust' \
        'hostssl replication all 127.0.0.1/32 trust' 'hostssl replication all ::1/128 trust' >'$DIR/pg_hba.conf'"
}

# $CERT_ROLE and its database, unless they exist (over the Unix socket, as the owner).
create_cert_role() {
    as_owner "$BIN/psql" -h "$DIR" -p "$PORT" -U postgres -d postgres -X -q -v ON_ERROR_STOP=1 >&2 <<SQL
SELECT 'CREATE ROLE $CERT_ROLE LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$CERT_ROLE')\gexec
SELECT 'CREATE DATABASE $CERT_ROLE OWNER $CERT_ROLE' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$CERT_ROLE')\gexec
SQL
}

running() {
    [[ -f "$DIR/PG_VERSION" ]] && as_owner "$BIN/pg_ctl" -D "$DIR" status >/dev/null 2>&1
}

start() {
    ensure_installed
    if running; then
        if [[ "$TLS" == 1 && ! -f "$DIR/tls/other-client.crt" ]]; then
            log "restarting $DIR to add the client certificates (the data stays)"
            as_owner "$BIN/pg_ctl" -D "$DIR" -m fast -w -t 60 stop >&2
        else
            log "already running in $DIR"
            echo "$URL"
            return
        fi
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
    if [[ "$TLS" == 1 ]]; then setup_tls; fi
    log "starting on 127.0.0.1:$PORT"
    local options="-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c max_connections=300"
    if [[ "$TLS" == 1 ]]; then
        options+=" -c ssl=on -c ssl_cert_file=$DIR/tls/server.crt -c ssl_key_file=$DIR/tls/server.key"
        options+=" -c ssl_ca_file=$DIR/tls/ca.pem"
    fi
    if [[ "${PREFS_PG_FSYNC:-off}" == on ]]; then
        options+=" -c fsync=on -c synchronous_commit=on -c full_page_writes=on"
    else
        options+=" -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    fi
    if ! as_owner "$BIN/pg_ctl" -D "$DIR" -l "$DIR/server.log" -w -t 60 -o "$options" start >&2; then
        tail -n 20 "$DIR/server.log" >&2 || true
        die "the server did not start (is port $PORT taken? set PREFS_PG_PORT)"
    fi
    if [[ "$TLS" == 1 ]]; then create_cert_role; fi
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
