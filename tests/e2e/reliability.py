#!/usr/bin/env python3
"""Reliability tests of the `prefs` release binary (issue 6, TESTING.md sections 4-5), black-box:
a client that mints its own HS256 tokens drives `prefs serve` processes over HTTP while the test
kills them, stops their database, locks it, starves their pool and drips bytes at them.

- crash safety: SIGKILL mid-burst, restart, every acknowledged write is there (SQLite, PostgreSQL);
- database outage: PostgreSQL stopped under a running prefs (503 in each dialect, recovery without
  a restart); on SQLite another process holds `BEGIN EXCLUSIVE`;
- lost updates: 50 concurrent clients patching distinct keys, and nested members of one key; a
  counter incremented with If-Match (and without, to show that the test can see losses);
- two instances on one PostgreSQL database: read-your-writes across them, no lost updates;
- pool exhaustion (pool of 2, a table lock, 64 clients) and slow clients (1,000 slowloris sockets);
- graceful shutdown: SIGTERM with requests in flight (held by a table lock, so they are surely in
  flight; one of them on the actix worker that did not open its database connection), and
  SIGTERM mid-burst;
- failover: a primary and a synchronous streaming standby (`pg_basebackup -R`), prefs given both
  hosts with `target_session_attrs=read-write`, clients writing as fast as they can; the primary
  is stopped with `pg_ctl stop -m immediate` and the standby promoted: prefs serves again without a
  restart, and every acknowledged write is on the new primary (clusters of its own, on
  PREFS_RELIABILITY_PG_PORT + 20 and + 21, clear of the bench's 55452; both TLS only, the standby
  replicating over TLS too);
- hostile traffic (tests/e2e/hostile.py): slow bodies, clients that never read, made-up methods,
  floods of new subjects and bad tokens, a full namespace, all at once against the default
  deadlines and rate limits, while a well-behaved client keeps its p99 under 100 ms;
- a damaged SQLite file: a page of `preferences`, or of `users`, overwritten with garbage; every
  read and write that meets it is a clean 500 (501 in the namespace dialect) within 1 s, memory
  stays bounded (the server runs under a 1 GiB address-space cap), SIGTERM still exits 0.

PostgreSQL runs in a private throwaway cluster (`tests/postgres.sh` with PREFS_PG_PORT, default
25442, below the kernel's range of ephemeral ports so that no client socket of the tests can hold it
when a cluster starts mid-run; never the shared 55432/55433 ones; PREFS_PG_FSYNC=on and
PREFS_PG_TLS=1: TLS only, pg_hba
`hostssl`, every URL with `sslmode=verify-full&sslrootcert=...`), halted and restarted by the
outage test and removed at the end.
Talks to 127.0.0.1 only; every loop is bounded in count and time; every request has a timeout.

usage: reliability.py PATH_TO_PREFS [--only NAME[,NAME...]] [--no-postgres] [--keep]
       (NAME: crash, graceful, lost, pool, outage, two, failover, slowloris, damaged, hostile; --keep keeps databases
       and logs)
env:   PREFS_RELIABILITY_PG_PORT (default 25442), PREFS_RELIABILITY_SEED (random seed, printed)
Ends with one line `N passed, N failed`; exits 1 if anything failed.
"""

import argparse
import json
import os
import random
import select
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
import uuid

import requests

from common import MERGE, RW, TIMEOUT, Server, check, results, send, servers_started, token
from hostile import test_hostile

JSONAPI = "application/vnd.api+json"
POOL_WAIT = 2.0  # PREFS_DB_POOL_TIMEOUT of the servers that meet a fault, in seconds
HERE = os.path.dirname(os.path.abspath(__file__))
POSTGRES_SH = os.path.join(HERE, "..", "postgres.sh")

timings = []


def info(text):
    print(f"  {text}", flush=True)


def ns_token(user, client):
    return token(user, scopes=RW, client=client)


def attempt(session, *args, **kwargs):
    """A request whose failure to answer is an outcome, not an error: (response or None, seconds)."""
    started = time.time()
    try:
        return send(session, *args, **kwargs), time.time() - started
    except requests.RequestException:
        return None, time.time() - started


def run_threads(target, count, timeout, name):
    """Runs target(i) on `count` threads; fails the check `name` if any of them hangs."""
    errors = []

    def wrapped(i):
        try:
            target(i)
        except Exception:  # noqa: BLE001 - reported as a failure below
            errors.append(traceback.format_exc())

    threads = [threading.Thread(target=wrapped, args=(i,), daemon=True) for i in range(count)]
    for t in threads:
        t.start()
    deadline = time.time() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.time()))
    hung = sum(t.is_alive() for t in threads)
    check(f"{name}: every client thread finishes within {timeout} s", hung == 0, f"{hung} still running")
    check(f"{name}: no client thread raised", not errors, errors[0] if errors else "")


def edx_shape(r):
    try:
        body = r.json()
    except ValueError:
        return False
    return r.headers.get("Content-Type", "").startswith("application/json") and isinstance(body, dict) and \
        set(body) == {"developer_message", "user_message"}


def records_shape(r, code):
    try:
        errors = r.json()["errors"]
    except (ValueError, KeyError, TypeError):
        return False
    return r.headers.get("Content-Type", "").startswith("application/json") and \
        errors[0].get("code") == code and isinstance(errors[0].get("message"), str)


def jsonapi_shape(r, code):
    try:
        error = r.json()["errors"][0]
    except (ValueError, KeyError, TypeError, IndexError):
        return False
    return r.headers.get("Content-Type") == JSONAPI and error.get("code") == code and \
        error.get("status") == str(r.status_code) and error.get("id") == r.headers.get("Request-Id")


def describe(r):
    if r is None:
        return "no answer"
    return f"{r.status_code} {r.headers.get('Content-Type')} {r.text[:300]}"


# ---------------------------------------------------------------------------------------------
# Backends


class Sqlite:
    label = "sqlite"

    def __init__(self, directory):
        self.directory = directory

    def new_db(self, name):
        return f"sqlite://{self.directory}/{name}-{uuid.uuid4().hex[:6]}.db"

    @staticmethod
    def path(url):
        return url[len("sqlite://"):]


class Postgres:
    """The private throwaway cluster, through tests/postgres.sh: TLS only (PREFS_PG_TLS=1, pg_hba
    `hostssl`), so every URL carries `?sslmode=verify-full&sslrootcert=DIR/tls/ca.pem`."""

    label = "postgres"

    def __init__(self, port):
        # A durable server (fsync on), as a crash or outage test wants, on its own port, TLS only.
        self.env = {**os.environ, "PREFS_PG_PORT": str(port), "PREFS_PG_FSYNC": "on", "PREFS_PG_TLS": "1"}
        self.env.pop("PREFS_PG_DIR", None)
        self.admin = None

    def _script(self, command):
        out = subprocess.run(["bash", POSTGRES_SH, command], env=self.env, capture_output=True, text=True,
                             timeout=600)
        if out.returncode != 0:
            raise RuntimeError(f"postgres.sh {command} failed: {out.stderr[-2000:]}")
        return out.stdout.strip().splitlines()

    def start(self):
        self.admin = self._script("start")[-1]
        return self.admin

    def halt(self):
        self._script("halt")

    def destroy(self):
        self._script("stop")

    def psql(self, url, sql, timeout=60):
        out = subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-Atqc", sql], capture_output=True, text=True,
                             timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError(f"psql failed: {out.stderr}")
        return out.stdout.strip()

    def url(self, db):
        """The URL of the database `db` on this server: the admin URL's, query (TLS) and all."""
        return urllib.parse.urlunsplit(urllib.parse.urlsplit(self.admin)._replace(path=f"/{db}"))

    def query(self):
        """The admin URL's query: `sslmode=verify-full&sslrootcert=...`."""
        return urllib.parse.urlsplit(self.admin).query

    def port(self):
        return urllib.parse.urlsplit(self.admin).port

    def new_db(self, name):
        db = f"rel_{name}_{uuid.uuid4().hex[:8]}"
        self.psql(self.admin, f"CREATE DATABASE {db}")
        return self.url(db)


class TableLock:
    """Holds the `preferences` table exclusively for `seconds` from another process: SQLite
    `BEGIN EXCLUSIVE` (Python's sqlite3, on a thread) or PostgreSQL `LOCK TABLE ... ACCESS
    EXCLUSIVE` (psql in the background). `start()` returns once the lock is held."""

    def __init__(self, backend, database_url, seconds):
        self.backend, self.url, self.seconds = backend, database_url, seconds
        self.released = threading.Event()
        self.released_at = None

    def start(self):
        if isinstance(self.backend, Sqlite):
            held = threading.Event()

            def hold():
                con = sqlite3.connect(Sqlite.path(self.url), isolation_level=None, timeout=10)
                try:
                    con.execute("BEGIN EXCLUSIVE")
                    held.set()
                    self.released.wait(self.seconds)
                    con.execute("COMMIT")
                finally:
                    con.close()
                    self.released_at = time.time()
                    self.released.set()

            self.thread = threading.Thread(target=hold, daemon=True)
            self.thread.start()
            if not held.wait(15):
                raise RuntimeError("could not take the SQLite lock")
        else:
            sql = (f"BEGIN; LOCK TABLE preferences IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep({self.seconds}); "
                   "COMMIT;")
            self.process = subprocess.Popen(["psql", self.url, "-v", "ON_ERROR_STOP=1", "-qc", sql],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            query = ("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                     "WHERE c.relname = 'preferences' AND l.mode = 'AccessExclusiveLock' AND l.granted")
            deadline = time.time() + 15
            while self.backend.psql(self.url, query) != "1":
                if time.time() > deadline or self.process.poll() is not None:
                    raise RuntimeError("could not take the PostgreSQL lock")
                time.sleep(0.05)

            def waiter():
                try:
                    self.process.wait(timeout=self.seconds + 30)
                finally:
                    self.released_at = time.time()
                    self.released.set()

            self.thread = threading.Thread(target=waiter, daemon=True)
            self.thread.start()
        return self

    def release_now(self):
        """SQLite only: ends the transaction before its time."""
        self.released.set()
        self.thread.join(10)

    def wait(self):
        self.released.wait(self.seconds + 30)
        self.thread.join(10)


# ---------------------------------------------------------------------------------------------
# 1. Crash safety (and 6. graceful shutdown, which shares the burst)


EDX = "/api/user/v1/preferences"


class Burst:
    """Writer threads writing unique keys as fast as they can; each write is recorded as
    acknowledged (2xx), rejected (4xx: must be absent) or unknown (no answer: may be either).
    Half the threads PATCH the Open edX map (every ninth patch carries an invalid member, so the
    whole patch must be rejected), half PUT namespace members (every ninth body is `null`: 400).
    Users rotate every 150 keys, so provisioning happens mid-burst too."""

    THREADS = 6

    def __init__(self, server, tag):
        self.server, self.tag = server, tag
        self.stop = threading.Event()
        self.records = []  # (kind, user, key, expected value, outcome, status, invalid, sent at)
        self.lock = threading.Lock()
        self.threads = []

    def user(self, thread, i):
        return f"{self.tag}-t{thread}-u{i // 150}"

    def writer(self, thread):
        session = requests.Session()
        tokens = {}
        kind = "edx" if thread % 2 == 0 else "ns"
        mine = []
        deadline = time.time() + 20
        for i in range(4000):
            if self.stop.is_set() or time.time() > deadline:
                break
            user = self.user(thread, i)
            key = f"k{thread}_{i}"
            invalid = i % 9 == 4
            if user not in tokens:
                tokens[user] = token(user) if kind == "edx" else ns_token(user, "appR")
            sent_at = time.time()
            if kind == "edx":
                value = f"v{i}"
                body = {key: value, "bad-flag": "  "} if invalid else {key: value}
                r, _ = attempt(session, "PATCH", f"{self.server.base}{EDX}/{user}", tokens[user], body, MERGE)
            else:
                value = i
                r, _ = attempt(session, "PUT", f"{self.server.base}/preferences/appR/{key}", tokens[user],
                               raw="null" if invalid else str(i))
            if r is None:
                outcome = "unknown"
            elif 200 <= r.status_code < 300:
                outcome = "ack"
            elif 400 <= r.status_code < 500:
                outcome = "rejected"
            else:
                outcome = "unknown"
            mine.append((kind, user, key, value, outcome, None if r is None else r.status_code, invalid, sent_at))
            if r is None:
                # The server is gone (or the connection broke): a fresh connection for the next try,
                # and stop once the test has pulled the plug.
                session.close()
                session = requests.Session()
                if self.stop.wait(0.01):
                    break
        with self.lock:
            self.records.extend(mine)

    def start(self):
        self.started = time.time()
        self.threads = [threading.Thread(target=self.writer, args=(t,), daemon=True) for t in range(self.THREADS)]
        for t in self.threads:
            t.start()

    def join(self, name):
        self.stop.set()
        deadline = time.time() + 30
        for t in self.threads:
            t.join(max(0.0, deadline - time.time()))
        check(f"{name}: writers finish", not any(t.is_alive() for t in self.threads))

    def counts(self):
        c = {"ack": 0, "rejected": 0, "unknown": 0}
        for record in self.records:
            c[record[4]] += 1
        return c

    def verify(self, server, name):
        """Reads everything back through `server`; returns (lost, present rejected, unknown applied)."""
        session = requests.Session()
        state = {}
        for kind, user in sorted({(r[0], r[1]) for r in self.records}):
            if kind == "edx":
                r = send(session, "GET", f"{server.base}{EDX}/{user}", token(user))
            else:
                r = send(session, "GET", f"{server.base}/preferences/appR", ns_token(user, "appR"))
            check(f"{name}: read back {kind} {user}", r.status_code == 200, describe(r))
            state[(kind, user)] = r.json() if r.status_code == 200 else {}
        lost, present_rejected, unknown_applied = [], [], 0
        wrong_status = []
        for kind, user, key, value, outcome, status, invalid, _ in self.records:
            stored = state[(kind, user)]
            if outcome == "ack" and stored.get(key) != value:
                lost.append((kind, user, key, value, stored.get(key)))
            elif outcome == "rejected" and key in stored:
                present_rejected.append((kind, user, key, status))
            elif outcome == "unknown" and stored.get(key) == value:
                unknown_applied += 1
            if status is not None and (status >= 500 or (status == 400) != invalid):
                wrong_status.append((kind, key, status))
        check(f"{name}: acknowledged writes lost = 0", not lost, f"{len(lost)} lost, e.g. {lost[:5]}")
        check(f"{name}: rejected writes absent", not present_rejected, str(present_rejected[:5]))
        check(f"{name}: every answer was 2xx, or 400 for the invalid writes", not wrong_status,
              str(wrong_status[:5]))
        return lost, present_rejected, unknown_applied


def sqlite_integrity(url, name):
    con = sqlite3.connect(Sqlite.path(url), isolation_level=None, timeout=10)
    try:
        integrity = con.execute("PRAGMA integrity_check").fetchall()
        journal = con.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        con.close()
    check(f"{name}: PRAGMA integrity_check is ok", integrity == [("ok",)], str(integrity[:5]))
    check(f"{name}: journal_mode is wal", journal == "wal", journal)


def test_crash(binary, backend, log_dir, rng, cycles=5):
    label = backend.label
    url = backend.new_db("crash")
    server = Server(binary, url, log_dir, name=f"crash-{label}")
    totals = {"ack": 0, "rejected": 0, "unknown": 0, "unknown_applied": 0}
    for cycle in range(cycles):
        name = f"crash {label} cycle {cycle + 1}"
        burst = Burst(server, f"c{cycle}")
        burst.start()
        time.sleep(rng.uniform(0.4, 1.4))
        server.kill()
        killed_at = time.time() - burst.started
        burst.join(name)
        if isinstance(backend, Sqlite):
            sqlite_integrity(url, name)
        restart = server.start()
        _, _, unknown_applied = burst.verify(server, name)
        counts = burst.counts()
        check(f"{name}: the burst wrote before the kill", counts["ack"] > 20, str(counts))
        for k in counts:
            totals[k] += counts[k]
        totals["unknown_applied"] += unknown_applied
        info(f"{name}: SIGKILL after {killed_at:.2f} s; acknowledged {counts['ack']}, rejected "
             f"{counts['rejected']}, unknown {counts['unknown']} ({unknown_applied} of them applied); "
             f"restart ready in {restart:.2f} s")
    check(f"crash {label}: SIGTERM after the cycles exits 0", server.terminate() == 0)
    info(f"crash {label}: {cycles} kills; acknowledged {totals['ack']} (0 lost), rejected {totals['rejected']} "
         f"(0 present), unknown {totals['unknown']} ({totals['unknown_applied']} applied)")


def test_graceful(binary, backend, log_dir, rng):
    """SIGTERM with requests in flight: (a) writes held up by a table lock when SIGTERM comes must
    still complete (2xx) once the lock goes, and the process exits 0 afterwards; (b) SIGTERM at a
    random moment of a burst: exit 0, no acknowledged write lost."""
    label = backend.label
    url = backend.new_db("graceful")
    env = {"PREFS_DB_POOL_TIMEOUT": "8s"}
    server = Server(binary, url, log_dir, env=env, name=f"graceful-{label}")
    session = requests.Session()
    users = [f"g{i}" for i in range(8)]
    for user in users:  # provisioned before the lock: only the writes below need it
        send(session, "GET", f"{server.base}{EDX}/{user}", token(user))
    lock = TableLock(backend, url, 2.0).start()
    answers = {}

    def in_flight(i):
        r, took = attempt(requests.Session(), "PATCH", f"{server.base}{EDX}/{users[i]}", token(users[i]),
                          {"inflight": f"x{i}"}, MERGE)
        answers[i] = (r, took, time.time())

    threads = [threading.Thread(target=in_flight, args=(i,), daemon=True) for i in range(len(users))]
    for t in threads:
        t.start()
    time.sleep(0.6)
    check(f"graceful {label}: the writes are held by the lock when SIGTERM comes", not answers, str(answers))
    sigterm_at = time.time()
    server.process.send_signal(signal.SIGTERM)
    if isinstance(backend, Sqlite):
        time.sleep(0.6)
        lock.release_now()
    else:
        lock.wait()
    for t in threads:
        t.join(20)
    try:
        code = server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        code = None
    exited = time.time() - sigterm_at
    statuses = {i: (a[0].status_code if a[0] is not None else None) for i, a in answers.items()}
    check(f"graceful {label}: in-flight writes complete with 204 after SIGTERM",
          len(statuses) == len(users) and set(statuses.values()) == {204}, str(statuses))
    check(f"graceful {label}: exit code 0 after the in-flight requests", code == 0, str(code))
    info(f"graceful {label}: {len(users)} writes in flight at SIGTERM, answered "
         f"{sorted(statuses.values(), key=str)}; exited {exited:.2f} s after SIGTERM")
    # (a') One write in flight, on one of two workers, with a pool of one connection: whichever
    # worker made that connection, the write must finish when the other worker stops first.
    # (`spacer` connections to /healthz move the write to the other worker of actix's round robin.)
    for spacer in (0, 1):
        name = f"graceful {label} cross-worker (spacer {spacer})"
        one = Server(binary, backend.new_db("graceful1"), log_dir, name=f"graceful1-{label}",
                     env={"PREFS_WORKERS": "2", "PREFS_DB_POOL_SIZE": "1", "PREFS_DB_POOL_TIMEOUT": "8s"})
        send(requests.Session(), "GET", f"{one.base}{EDX}/solo", token("solo"))
        for _ in range(spacer):
            requests.get(f"{one.base}/healthz", timeout=TIMEOUT)
        lock = TableLock(backend, one.database_url, 1.5).start()
        answer = {}

        def solo():
            answer["r"] = attempt(requests.Session(), "PATCH", f"{one.base}{EDX}/solo", token("solo"),
                                  {"solo": "yes"}, MERGE)

        t = threading.Thread(target=solo, daemon=True)
        t.start()
        time.sleep(0.5)
        check(f"{name}: the write is held by the lock when SIGTERM comes", not answer, str(answer))
        one.process.send_signal(signal.SIGTERM)
        if isinstance(backend, Sqlite):
            time.sleep(0.5)
            lock.release_now()
        else:
            lock.wait()
        t.join(20)
        try:
            code = one.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            code = None
        r = answer.get("r", (None, 0))[0]
        check(f"{name}: the in-flight write completes with 204", r is not None and r.status_code == 204,
              describe(r) + f" (server log: {one.log_tail(3).strip()})")
        check(f"{name}: exit code 0", code == 0, str(code))
    # (b) a burst
    server.start()
    state = send(session, "GET", f"{server.base}{EDX}/{users[0]}", token(users[0]))
    check(f"graceful {label}: the in-flight write was kept", state.status_code == 200 and
          state.json().get("inflight") == "x0", describe(state))
    burst = Burst(server, "gb")
    burst.start()
    time.sleep(rng.uniform(0.4, 1.2))
    sigterm_at = time.time()
    server.process.send_signal(signal.SIGTERM)
    burst.stop.set()  # no new requests; those already sent must be answered
    try:
        code = server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        code = None
    exited = time.time() - sigterm_at
    burst.join(f"graceful {label} burst")
    check(f"graceful {label} burst: SIGTERM mid-burst exits 0", code == 0, str(code))
    server.start()
    burst.verify(server, f"graceful {label} burst")
    counts = burst.counts()
    # A request sent just as an idle keep-alive connection is closed may go unanswered (RFC 9112
    # 9.6 lets either side close an idle connection), so these are reported, not asserted.
    cut = sum(1 for r in burst.records if r[4] == "unknown" and r[7] < sigterm_at)
    info(f"graceful {label} burst: SIGTERM after {sigterm_at - burst.started:.2f} s, exit 0 after {exited:.2f} s; "
         f"acknowledged {counts['ack']}, unknown {counts['unknown']} ({cut} of them sent before SIGTERM)")
    server.terminate()


# ---------------------------------------------------------------------------------------------
# 2. Database outage


def probes(server, record_id):
    """(name, dialect, method, path, token, body, content type): reads and writes through every dialect."""
    edx, ns = token("alice"), ns_token("alice", "appO")
    rec = "/api/v2/user/me/preference/"
    return [
        ("edx GET", "edx", "GET", f"{EDX}/alice", edx, None, None),
        ("edx PATCH", "edx", "PATCH", f"{EDX}/alice", edx, {"lang": "de"}, MERGE),
        ("edx PUT key", "edx", "PUT", f"{EDX}/alice/theme", edx, "dark", "application/json"),
        ("records GET list", "records", "GET", rec, edx, None, None),
        ("records GET one", "records", "GET", f"{rec}{record_id}/", edx, None, None),
        ("records POST", "records", "POST", rec, edx, {"key": "added", "value": [1]}, "application/json"),
        ("ns GET", "ns", "GET", "/preferences/appO", ns, None, None),
        ("ns PATCH", "ns", "PATCH", "/preferences/appO", ns, {"b": 2}, MERGE),
        ("ns PUT key", "ns", "PUT", "/preferences/appO/c", ns, 3, "application/json"),
    ]


def unavailable_shape(dialect, r):
    if dialect == "edx":
        return edx_shape(r)
    if dialect == "records":
        return records_shape(r, "unavailable")
    return jsonapi_shape(r, "unavailable")


def seed_alice(server):
    session = requests.Session()
    edx, ns = token("alice"), ns_token("alice", "appO")
    r = send(session, "PATCH", f"{server.base}{EDX}/alice", edx, {"lang": "fr"}, MERGE)
    check("seed edx", r.status_code == 204, describe(r))
    r = send(session, "POST", f"{server.base}/api/v2/user/me/preference/", edx, {"key": "layout", "value": 1})
    check("seed record", r.status_code == 201, describe(r))
    record_id = r.json()["id"] if r.status_code == 201 else 0
    r = send(session, "PUT", f"{server.base}/preferences/appO", ns, {"a": 1})
    check("seed ns", r.status_code == 204, describe(r))
    return record_id


def expect_after_outage(server, name):
    """Nothing written while the database was away may have landed."""
    session = requests.Session()
    r = send(session, "GET", f"{server.base}{EDX}/alice", token("alice"))
    check(f"{name}: rejected edX writes changed nothing", r.status_code == 200 and
          r.json() == {"lang": "fr", "layout": "1"}, describe(r))
    r = send(session, "GET", f"{server.base}/preferences/appO", ns_token("alice", "appO"))
    check(f"{name}: rejected namespace writes changed nothing", r.status_code == 200 and r.json() == {"a": 1},
          describe(r))


def run_probes(server, record_id, name, want, writes_only=False, reads_only=False):
    """Sends every probe at once; checks status (503 with the dialect's shape, or 2xx)."""
    chosen = [p for p in probes(server, record_id)
              if not (writes_only and p[2] == "GET") and not (reads_only and p[2] != "GET")]
    answers = {}

    def one(i):
        pname, dialect, method, path, tok, body, ctype = chosen[i]
        answers[i] = attempt(requests.Session(), method, server.base + path, tok, body, ctype or "application/json")

    run_threads(one, len(chosen), 60, f"{name} probes")
    slowest = 0.0
    for i, (pname, dialect, method, _, _, _, _) in enumerate(chosen):
        r, took = answers.get(i, (None, 0.0))
        slowest = max(slowest, took)
        if want == 503:
            check(f"{name}: {pname} is 503 in the {dialect} format", r is not None and r.status_code == 503 and
                  unavailable_shape(dialect, r), describe(r))
            check(f"{name}: {pname} answers within the pool wait + 1.5 s", took <= POOL_WAIT + 1.5, f"{took:.2f} s")
        else:
            check(f"{name}: {pname} is 2xx", r is not None and 200 <= r.status_code < 300, describe(r))
    return slowest


class BlackHole:
    """A listener on the halted PostgreSQL's port that accepts connections and never answers: a
    database that hangs instead of refusing (the pool's create/connect must be bounded too)."""

    def __init__(self, port):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(256)
        self.sock.settimeout(0.1)
        self.accepted = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.is_set():
            try:
                self.accepted.append(self.sock.accept()[0])
            except OSError:
                pass

    def close(self):
        self.stop.set()
        self.thread.join(5)
        for conn in self.accepted:
            conn.close()
        self.sock.close()


class Background:
    """Clients writing and reading through every dialect for the whole outage: every answer must be
    2xx or 503 (never 500/501), within a bound; every acknowledged write must survive."""

    def __init__(self, server, threads=3):
        self.server, self.stop = server, threading.Event()
        self.answers = []  # (dialect, status or None, seconds, shape ok, acknowledged key or None)
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(t,), daemon=True) for t in range(threads)]
        for t in self.threads:
            t.start()

    def run(self, t):
        session = requests.Session()
        user = f"bg{t}"
        edx, ns = token(user), ns_token(user, "appB")
        base = self.server.base
        mine = []
        for i in range(3000):
            if self.stop.is_set():
                break
            dialect = ("edx", "ns", "records")[i % 3]
            key = f"k{i}"
            if dialect == "edx":
                r, took = attempt(session, "PATCH", f"{base}{EDX}/{user}", edx, {key: "v"}, MERGE)
            elif dialect == "ns":
                r, took = attempt(session, "PUT", f"{base}/preferences/appB/{key}", ns, raw="1")
            else:
                r, took = attempt(session, "GET", f"{base}/api/v2/user/me/preference/", edx)
            ok = r is not None and 200 <= r.status_code < 300
            shape = r is not None and (r.status_code != 503 or unavailable_shape(dialect, r))
            mine.append((dialect, r.status_code if r is not None else None, took, shape,
                         key if ok and dialect != "records" else None, user))
            self.stop.wait(0.02)
        with self.lock:
            self.answers.extend(mine)

    def finish(self, server, name, bound):
        self.stop.set()
        for t in self.threads:
            t.join(30)
        statuses = {}
        for _, status, _, _, _, _ in self.answers:
            statuses[status] = statuses.get(status, 0) + 1
        check(f"{name}: every answer is 2xx or 503", all(s is not None and (200 <= s < 300 or s == 503)
                                                         for s in statuses), str(statuses))
        check(f"{name}: every 503 is in its dialect's format", all(a[3] for a in self.answers))
        slowest = max((a[2] for a in self.answers), default=0.0)
        check(f"{name}: every answer within {bound:g} s", slowest <= bound, f"{slowest:.2f} s")
        session = requests.Session()
        lost = []
        for user in {a[5] for a in self.answers}:
            edx = send(session, "GET", f"{server.base}{EDX}/{user}", token(user)).json()
            ns = send(session, "GET", f"{server.base}/preferences/appB", ns_token(user, "appB")).json()
            for dialect, _, _, _, key, who in self.answers:
                if key and who == user and key not in (edx if dialect == "edx" else ns):
                    lost.append((user, dialect, key))
        check(f"{name}: acknowledged writes lost = 0", not lost, str(lost[:5]))
        return statuses, slowest


def test_outage_postgres(binary, pg, log_dir):
    url = pg.new_db("outage")
    server = Server(binary, url, log_dir, env={"PREFS_DB_POOL_TIMEOUT": f"{POOL_WAIT:g}s"}, name="outage-pg")
    record_id = seed_alice(server)
    run_probes(server, record_id, "outage postgres before", 200, reads_only=True)
    background = Background(server)
    time.sleep(0.3)
    port = pg.port()
    hole = None
    pg.halt()
    halted_at = time.time()
    try:
        # Refused connections.
        slowest = run_probes(server, record_id, "outage postgres down", 503)
        r, took = attempt(requests.Session(), "GET", server.base + "/readyz")
        check("outage postgres down: /readyz 503", r is not None and r.status_code == 503 and
              jsonapi_shape(r, "unavailable") and took <= POOL_WAIT + 1.5, describe(r) + f" {took:.2f} s")
        r = requests.get(server.base + "/healthz", timeout=TIMEOUT)
        check("outage postgres down: /healthz 200", r.status_code == 200, describe(r))
        check("outage postgres down: the process is alive", server.alive())
        # A database that accepts connections and never answers.
        hole = BlackHole(port)
        hung = run_probes(server, record_id, "outage postgres hanging", 503)
        r, took = attempt(requests.Session(), "GET", server.base + "/readyz")
        check("outage postgres hanging: /readyz 503 within the pool wait + 1.5 s", r is not None and
              r.status_code == 503 and took <= POOL_WAIT + 1.5, describe(r) + f" {took:.2f} s")
        check("outage postgres hanging: /healthz 200",
              requests.get(server.base + "/healthz", timeout=TIMEOUT).status_code == 200)
        check("outage postgres hanging: the process is alive", server.alive())
        info(f"outage postgres: 503 after at most {slowest:.2f} s with connections refused, {hung:.2f} s with a "
             f"server that never answers (pool wait {POOL_WAIT:g} s; {len(hole.accepted)} connection attempts)")
    finally:
        if hole:
            hole.close()
        pg.start()
    restarted = time.time()
    ready_after = None
    while time.time() < restarted + 30:
        r, _ = attempt(requests.Session(), "GET", server.base + "/readyz", timeout=(3, 10))
        if r is not None and r.status_code == 200:
            ready_after = time.time() - restarted
            break
        time.sleep(0.1)
    check("outage postgres: /readyz 200 again without a restart", ready_after is not None)
    check("outage postgres: same process", server.alive())
    time.sleep(0.5)
    statuses, slowest = background.finish(server, "outage postgres background load", 3 * POOL_WAIT + 1.5)
    expect_after_outage(server, "outage postgres after")
    run_probes(server, record_id, "outage postgres after", 200)
    r = send(requests.Session(), "PATCH", f"{server.base}{EDX}/newcomer", token("newcomer"), {"a": "b"}, MERGE)
    check("outage postgres after: a new user is provisioned and writes", r.status_code == 204, describe(r))
    info(f"outage postgres: down {restarted - halted_at:.1f} s; ready {ready_after and round(ready_after, 2)} s "
         f"after PostgreSQL came back; background load {statuses}, slowest {slowest:.2f} s")
    check("outage postgres: SIGTERM exits 0", server.terminate() == 0)


class Failover:
    """A primary (tests/postgres.sh, durable, TLS only) and a synchronous streaming standby of it,
    made with `pg_basebackup -R` on the next port: it replicates over TLS (sslmode=verify-full,
    which `-R` writes into its primary_conninfo) and serves TLS only too, with the primary's
    certificate (for 127.0.0.1 and localhost) from the primary's directory, which stays in place
    after the primary is stopped."""

    def __init__(self, port):
        self.primary = Postgres(port)
        self.port, self.standby_port = port, port + 1
        self.standby_dir = os.path.join(tempfile.gettempdir(), f"prefs-pg-{self.standby_port}")
        self.bin = self._bindir()

    @staticmethod
    def _bindir():
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        candidates = [out.stdout.strip()] if out.returncode == 0 else []
        candidates += sorted((os.path.join("/usr/lib/postgresql", v, "bin")
                              for v in os.listdir("/usr/lib/postgresql")), reverse=True) \
            if os.path.isdir("/usr/lib/postgresql") else []
        for d in candidates:
            if os.path.exists(os.path.join(d, "pg_ctl")) and os.path.exists(os.path.join(d, "pg_basebackup")):
                return d
        raise RuntimeError("no pg_ctl and pg_basebackup found")

    @staticmethod
    def as_owner(command):
        return (["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []) + command

    def run(self, command, timeout=120):
        out = subprocess.run(self.as_owner(command), capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError(f"{command[0]} failed: {out.stderr[-2000:]}")
        return out.stdout

    def pg_ctl(self, *args, timeout=120):
        return self.run([os.path.join(self.bin, "pg_ctl"), *args], timeout=timeout)

    def primary_dir(self):
        return os.path.join(tempfile.gettempdir(), f"prefs-pg-{self.port}")

    def tls(self, name):
        """A file of the primary's TLS directory (tests/postgres.sh's $DIR/tls)."""
        return os.path.join(self.primary_dir(), "tls", name)

    def standby_url(self, db="postgres"):
        return f"postgres://postgres@127.0.0.1:{self.standby_port}/{db}?{self.primary.query()}"

    def both_url(self, db):
        """Both hosts, for prefs: the first that takes writes, over TLS (verify-full)."""
        return (f"postgres://postgres@127.0.0.1:{self.port},127.0.0.1:{self.standby_port}/{db}"
                f"?target_session_attrs=read-write&{self.primary.query()}")

    def start(self):
        self.destroy()
        admin = self.primary.start()
        subprocess.run(self.as_owner(["mkdir", "-p", self.standby_dir]), check=True)
        os.chmod(self.standby_dir, 0o700)
        # Over TLS (the primary has `hostssl replication` only); -R writes these settings, sslmode
        # and sslrootcert included, into the standby's primary_conninfo. A fast checkpoint: a
        # spread one paces the writes of the fresh cluster's databases over a minute or two.
        conninfo = (f"host=127.0.0.1 port={self.port} user=postgres sslmode=verify-full "
                    f"sslrootcert={self.tls('ca.pem')}")
        self.run([os.path.join(self.bin, "pg_basebackup"), "-d", conninfo, "-D", self.standby_dir, "-R",
                  "-X", "stream", "--checkpoint=fast", "--no-sync"], timeout=300)
        options = (f"-p {self.standby_port} -k {self.standby_dir} -c listen_addresses=127.0.0.1 "
                   "-c max_connections=300 -c cluster_name=standby1 -c fsync=on -c synchronous_commit=on "
                   f"-c ssl=on -c ssl_cert_file={self.tls('server.crt')} -c ssl_key_file={self.tls('server.key')} "
                   f"-c ssl_ca_file={self.tls('ca.pem')}")
        self.pg_ctl("-D", self.standby_dir, "-l", os.path.join(self.standby_dir, "server.log"), "-w", "-t", "60",
                    "-o", options, "start")
        # Synchronous: a commit is acknowledged once the standby has it.
        self.primary.psql(admin, "ALTER SYSTEM SET synchronous_standby_names = 'standby1'")
        self.primary.psql(admin, "SELECT pg_reload_conf()")
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.primary.psql(admin, "SELECT sync_state FROM pg_stat_replication") == "sync":
                return admin
            time.sleep(0.2)
        raise RuntimeError("the standby never became synchronous")

    def crash_primary(self):
        self.pg_ctl("-D", self.primary_dir(), "-m", "immediate", "-w", "stop")

    def promote(self):
        self.pg_ctl("-D", self.standby_dir, "-w", "-t", "60", "promote")

    def destroy(self):
        for d in (self.standby_dir, self.primary_dir()):
            if os.path.exists(os.path.join(d, "PG_VERSION")):
                subprocess.run(self.as_owner([os.path.join(self.bin, "pg_ctl"), "-D", d, "-m", "immediate", "-w",
                                              "stop"]), capture_output=True, timeout=120)
        shutil.rmtree(self.standby_dir, ignore_errors=True)
        self.primary.destroy()


def test_failover_postgres(binary, log_dir, port, writers=8, before=3.0, after=4.0):
    """Clients write as fast as they can through one prefs given both hosts; the primary dies
    (`-m immediate`) and the synchronous standby is promoted. prefs serves again within seconds,
    without a restart, and every acknowledged write is on the new primary."""
    cluster = Failover(port)
    try:
        admin = cluster.start()
        replication_ssl = cluster.primary.psql(admin, "SELECT s.ssl FROM pg_stat_replication r "
                                                      "JOIN pg_stat_ssl s ON s.pid = r.pid")
        check("failover: the standby replicates over TLS", replication_ssl == "t", replication_ssl)
        db = f"rel_failover_{uuid.uuid4().hex[:8]}"
        cluster.primary.psql(admin, f"CREATE DATABASE {db}")
        url = cluster.both_url(db)
        server = Server(binary, url, log_dir, env={"PREFS_DB_POOL_TIMEOUT": f"{POOL_WAIT:g}s"}, name="failover-pg")
        acked = {}  # writer -> the last value acknowledged
        outcomes = {}  # status (or "no answer") -> count
        first_failure, recovered = [], []  # times
        stop = threading.Event()
        crashed_at = [None]
        lock = threading.Lock()

        def writer(i):
            session, user = requests.Session(), f"writer{i}"
            tok = token(user)
            n = 0
            while not stop.is_set():
                n += 1
                sent = time.time()
                r, _ = attempt(session, "PATCH", f"{server.base}{EDX}/{user}", tok, {"n": str(n)}, MERGE,
                               timeout=(3, 10))
                status = r.status_code if r is not None else "no answer"
                with lock:
                    outcomes[status] = outcomes.get(status, 0) + 1
                    if status == 204:
                        acked[user] = n
                        # The first write sent after the first failure and acknowledged.
                        if first_failure and sent > first_failure[0] and not recovered:
                            recovered.append(time.time())
                    elif crashed_at[0] and not first_failure:
                        first_failure.append(time.time())
                if status != 204:
                    time.sleep(0.05)

        threads = [threading.Thread(target=writer, args=(i,), daemon=True) for i in range(writers)]
        for t in threads:
            t.start()
        time.sleep(before)
        with lock:
            before_crash = dict(outcomes)
        crashed_at[0] = time.time()
        cluster.crash_primary()
        cluster.promote()
        promoted_at = time.time()
        # Writers go on until prefs writes again, and a little longer.
        deadline = promoted_at + 30
        while time.time() < deadline and not recovered:
            time.sleep(0.05)
        time.sleep(after)
        stop.set()
        for t in threads:
            t.join(30)
        check("failover: every writer thread finishes", not any(t.is_alive() for t in threads))
        check("failover: writes before the crash", before_crash.get(204, 0) > 0, str(before_crash))
        check("failover: writes again after the promotion, without a restart", bool(recovered) and server.alive(),
              f"{outcomes} {server.log_tail()}")
        r = requests.get(server.base + "/readyz", timeout=TIMEOUT)
        check("failover: /readyz 200 on the new primary", r.status_code == 200, describe(r) + server.log_tail())
        # Every acknowledged write is on the new primary: each writer's value is the last one
        # acknowledged, or the one after it (sent, committed, its answer lost in the crash).
        rows = cluster.primary.psql(cluster.standby_url(db),
                                    "SELECT u.username, p.value FROM preferences p JOIN users u ON u.id = p.user_id "
                                    "WHERE p.key = 'n'")
        found = {user: int(json.loads(value)) for user, value in (line.split("|", 1) for line in rows.splitlines())}
        lost = {user: (n, found.get(user)) for user, n in acked.items()
                if found.get(user) is None or found[user] < n}
        check("failover: every acknowledged write is on the new primary", not lost and len(acked) == writers,
              f"lost (acknowledged, found): {lost}")
        gap = (recovered[0] - first_failure[0]) if recovered and first_failure else None
        info(f"failover: primary stopped -m immediate and standby promoted in {promoted_at - crashed_at[0]:.2f} s; "
             f"prefs wrote again {recovered[0] - crashed_at[0]:.2f} s after the crash "
             f"({recovered[0] - promoted_at:.2f} s after the promotion; first failure to first success "
             f"{gap:.2f} s); answers {outcomes}: {outcomes.get(204, 0)} writes acknowledged, all on the new primary: "
             f"{not lost}" if recovered and gap is not None else f"failover: no recovery; answers {outcomes}")
        check("failover: SIGTERM exits 0", server.terminate() == 0)
    finally:
        cluster.destroy()


def test_lock_sqlite(binary, sqlite, log_dir):
    """The SQLite analogue of an outage: another process holds `BEGIN EXCLUSIVE`."""
    url = sqlite.new_db("locked")
    server = Server(binary, url, log_dir, env={"PREFS_DB_POOL_TIMEOUT": f"{POOL_WAIT:g}s"}, name="lock-sqlite")
    record_id = seed_alice(server)
    run_probes(server, record_id, "lock sqlite before", 200, reads_only=True)
    lock = TableLock(sqlite, url, 30).start()
    try:
        started = time.time()
        slowest = run_probes(server, record_id, "lock sqlite held: writes", 503, writes_only=True)
        check("lock sqlite held: writes waited for the busy timeout first", slowest >= POOL_WAIT * 0.8,
              f"{slowest:.2f} s")
        run_probes(server, record_id, "lock sqlite held: reads (WAL)", 200, reads_only=True)
        r = requests.get(server.base + "/readyz", timeout=TIMEOUT)
        info(f"lock sqlite held: /readyz answers {r.status_code} (reads work); writes 503 after {slowest:.2f} s")
        check("lock sqlite held: /healthz 200", requests.get(server.base + "/healthz", timeout=TIMEOUT).status_code
              == 200)
        # A write that starts under the lock and sees it released within the busy timeout queues.
        queued = {}

        def queued_write():
            queued["r"] = attempt(requests.Session(), "PUT", f"{server.base}{EDX}/alice/queued",
                                  token("alice"), "yes")

        t = threading.Thread(target=queued_write, daemon=True)
        t.start()
        time.sleep(POOL_WAIT / 3)
    finally:
        lock.release_now()
    t.join(15)
    r, took = queued.get("r", (None, 0))
    check("lock sqlite: a write queued behind the lock succeeds once it goes", r is not None and
          r.status_code == 204, describe(r))
    check("lock sqlite: the process is alive", server.alive())
    r = send(requests.Session(), "DELETE", f"{server.base}{EDX}/alice/queued", token("alice"))
    check("lock sqlite after: the queued write landed", r.status_code == 204, describe(r))
    expect_after_outage(server, "lock sqlite after")
    run_probes(server, record_id, "lock sqlite after", 200)
    info(f"lock sqlite: held {time.time() - started:.1f} s")
    check("lock sqlite: SIGTERM exits 0", server.terminate() == 0)


# ---------------------------------------------------------------------------------------------
# 3. Lost updates, 4. two instances


def concurrent_patches(servers, name, mode, workers=50, per=10):
    """`workers` clients PATCH distinct keys of one user at once (spread over `servers`): through
    the edX map, the namespace object (top-level keys), or members nested under one key."""
    user = f"lu-{mode}-{uuid.uuid4().hex[:6]}"
    client = "appL"
    edx_tok, ns_tok = token(user), ns_token(user, client)
    # Provision the user first, so the burst measures patches only.
    send(requests.Session(), "GET", f"{servers[0].base}{EDX}/{user}", edx_tok)
    barrier = threading.Barrier(workers)
    outcomes = [[] for _ in range(workers)]

    def worker(w):
        session = requests.Session()
        base = servers[w % len(servers)].base
        barrier.wait(30)
        for i in range(per):
            key = f"w{w}_{i}"
            if mode == "edx":
                r, _ = attempt(session, "PATCH", f"{base}{EDX}/{user}", edx_tok, {key: str(i)}, MERGE)
                ok = r is not None and r.status_code == 204
            else:
                body = {key: i} if mode == "ns" else {"s": {f"m_{w}_{i}": i}}
                r, _ = attempt(session, "PATCH", f"{base}/preferences/{client}", ns_tok, body, MERGE)
                ok = r is not None and r.status_code == 200
            outcomes[w].append((key, f"m_{w}_{i}", i, ok, describe(r) if not ok else ""))

    started = time.time()
    run_threads(worker, workers, 120, name)
    took = time.time() - started
    if mode == "edx":
        state = send(requests.Session(), "GET", f"{servers[-1].base}{EDX}/{user}", edx_tok).json()
    else:
        state = send(requests.Session(), "GET", f"{servers[-1].base}/preferences/{client}", ns_tok).json()
    nested = state.get("s", {}) if mode == "nested" else {}
    acked = lost = 0
    failed = []
    for w_outcomes in outcomes:
        for key, member, i, ok, why in w_outcomes:
            if not ok:
                failed.append(why)
                continue
            acked += 1
            if mode == "edx":
                lost += state.get(key) != str(i)
            elif mode == "ns":
                lost += state.get(key) != i
            else:
                lost += nested.get(member) != i
    check(f"{name}: every patch acknowledged", not failed, f"{len(failed)} failed, e.g. {failed[:3]}")
    check(f"{name}: lost = 0", lost == 0, f"{lost} of {acked} acknowledged patches lost")
    info(f"{name}: {acked}/{workers * per} acknowledged, lost {lost}, {took:.2f} s "
         f"({workers * per / took:.0f} patches/s)")


class Counter:
    """One counter, read and written through one dialect: `edx` and `ns` GET and PUT the key's
    own resource (`/api/user/v1/preferences/{u}/counter`, `/preferences/{client}/counter`);
    `edx-map` and `ns-map` GET the whole map or namespace and PATCH `{"counter": n+1}` with the
    map's ETag."""

    def __init__(self, dialect, user):
        self.dialect = dialect
        self.ns = dialect.startswith("ns")
        self.tok = ns_token(user, "appK") if self.ns else token(user)
        whole = "/preferences/appK" if self.ns else f"{EDX}/{user}"
        self.map = dialect.endswith("-map")
        self.path = whole if self.map else f"{whole}/counter"
        self.ok = 200 if self.ns and self.map else 204

    def value(self, n):
        return n if self.ns else str(n)

    def decode(self, r):
        body = r.json()
        return int(body["counter"] if self.map else body)

    def write(self, session, base, n, headers=None):
        if self.map:
            return attempt(session, "PATCH", base + self.path, self.tok, {"counter": self.value(n)}, MERGE,
                           headers=headers)
        return attempt(session, "PUT", base + self.path, self.tok, raw=json.dumps(self.value(n)), headers=headers)

    def read(self, session, base):
        return attempt(session, "GET", base + self.path, self.tok)

    def conflict_shape(self, r):
        return jsonapi_shape(r, "precondition-failed") if self.ns else edx_shape(r)


def counter(servers, name, dialect, if_match, workers=50, increments=2, max_tries=400, budget=45.0):
    """`workers` clients read-modify-write one counter: GET (value and ETag), write n+1 (with
    `If-Match: <ETag>` when if_match), retrying on 412. Returns (stats, final value)."""
    c = Counter(dialect, f"ctr-{uuid.uuid4().hex[:6]}")
    session = requests.Session()
    r, _ = c.write(session, servers[0].base, 0)
    check(f"{name}: counter set to 0", r is not None and r.status_code == c.ok, describe(r))
    stats = {"acked": 0, "conflicts": 0, "unknown": 0, "other": [], "bad_412": []}
    lock = threading.Lock()
    deadline = time.time() + budget
    barrier = threading.Barrier(workers)

    def worker(w):
        session = requests.Session()
        base = servers[w % len(servers)].base
        local = {"acked": 0, "conflicts": 0, "unknown": 0, "other": [], "bad_412": []}
        barrier.wait(30)
        for _ in range(increments):
            for _ in range(max_tries):
                if time.time() > deadline:
                    break
                g, _ = c.read(session, base)
                if g is None or g.status_code != 200:
                    local["other"].append(f"GET {describe(g)}")
                    break
                headers = {"If-Match": g.headers.get("ETag", "")} if if_match else {}
                p, _ = c.write(session, base, c.decode(g) + 1, headers)
                if p is None:
                    local["unknown"] += 1
                    break
                if p.status_code == c.ok:
                    local["acked"] += 1
                    break
                if p.status_code == 412:
                    local["conflicts"] += 1
                    if not c.conflict_shape(p):
                        local["bad_412"].append(describe(p))
                    time.sleep(random.uniform(0, 0.01))
                    continue
                local["other"].append(f"write {describe(p)}")
                break
        with lock:
            for k in ("acked", "conflicts", "unknown"):
                stats[k] += local[k]
            stats["other"] += local["other"]
            stats["bad_412"] += local["bad_412"]

    run_threads(worker, workers, budget + 60, name)
    r, _ = c.read(session, servers[-1].base)
    final = c.decode(r) if r is not None and r.status_code == 200 else None
    return stats, final


def test_if_match_counter(servers, label, dialect, workers=50, increments=2):
    name = f"if-match counter {label} {dialect}"
    c = Counter(dialect, f"etag-{uuid.uuid4().hex[:6]}")
    session = requests.Session()
    c.write(session, servers[0].base, 1)
    r, _ = c.read(session, servers[0].base)
    etag = r.headers.get("ETag") if r is not None else None
    if not check(f"{name}: GET gives a strong ETag", etag is not None and etag.startswith('"'),
                 f"ETag: {etag!r} (docs/contract.md §3.5: GET answers a strong ETag; pending ETag support?)"):
        return
    stale, _ = c.write(session, servers[0].base, 2, {"If-Match": '"stale-etag"'})
    check(f"{name}: a stale If-Match is 412 in the dialect's format", stale is not None and
          stale.status_code == 412 and c.conflict_shape(stale), describe(stale))
    r, _ = c.read(session, servers[-1].base)
    check(f"{name}: a 412 changes nothing", r is not None and r.status_code == 200 and c.decode(r) == 1
          and r.headers.get("ETag") == etag, describe(r))
    fresh, _ = c.write(session, servers[-1].base, 2, {"If-Match": etag})
    check(f"{name}: the current ETag is accepted", fresh is not None and fresh.status_code == c.ok,
          describe(fresh))
    started = time.time()
    stats, final = counter(servers, name, dialect, if_match=True, workers=workers, increments=increments)
    took = time.time() - started
    check(f"{name}: every answer was {c.ok} or 412", not stats["other"], str(stats["other"][:3]))
    check(f"{name}: every 412 is in the dialect's error format", not stats["bad_412"], str(stats["bad_412"][:2]))
    check(f"{name}: no request went unanswered", stats["unknown"] == 0, str(stats["unknown"]))
    check(f"{name}: final value = acknowledged increments", final == stats["acked"],
          f"final {final}, acknowledged {stats['acked']}")
    check(f"{name}: every client got its increments", stats["acked"] == workers * increments, str(stats["acked"]))
    info(f"{name}: {stats['acked']} increments acknowledged, {stats['conflicts']} conflicts (412), final {final}, "
         f"{took:.2f} s")


def test_blind_counter(servers, label, dialect):
    """Without If-Match the same clients must lose increments: proof that the test sees losses."""
    name = f"blind counter {label} {dialect}"
    for attempt_no in range(3):
        stats, final = counter(servers, name, dialect, if_match=False, increments=1, budget=30)
        check(f"{name}: every write acknowledged", not stats["other"] and stats["unknown"] == 0,
              str(stats["other"][:3]))
        lost = stats["acked"] - (final or 0)
        if lost > 0:
            break
    check(f"{name}: read-modify-write without If-Match loses increments", lost > 0,
          f"acknowledged {stats['acked']}, final {final}")
    info(f"{name}: {stats['acked']} acknowledged, final {final}: {lost} lost, as expected "
         f"(attempt {attempt_no + 1})")


def test_lost_updates(binary, backend, log_dir):
    label = backend.label
    server = Server(binary, backend.new_db("lost"), log_dir, name=f"lost-{label}")
    for mode in ("edx", "ns", "nested"):
        concurrent_patches([server], f"lost updates {label} {mode}", mode)
    for dialect in ("edx", "ns", "edx-map", "ns-map"):
        test_if_match_counter([server], label, dialect)
    test_blind_counter([server], label, "ns")
    check(f"lost updates {label}: SIGTERM exits 0", server.terminate() == 0)


def test_two_instances(binary, pg, log_dir):
    url = pg.new_db("two")
    a = Server(binary, url, log_dir, name="two-a")
    b = Server(binary, url, log_dir, name="two-b")
    session = requests.Session()
    edx, ns = token("tia"), ns_token("tia", "appT")
    rec = "/api/v2/user/me/preference/"
    r = send(session, "POST", a.base + rec, edx, {"key": "shared", "value": 0})
    check("two instances: record created", r.status_code == 201, describe(r))
    rid = r.json().get("id") if r.status_code == 201 else 0
    stale = []
    rounds = 20
    for i in range(rounds):
        w, rd = (a, b) if i % 2 == 0 else (b, a)
        send(session, "PUT", f"{w.base}{EDX}/tia/k", edx, f"v{i}")
        r = send(session, "GET", f"{rd.base}{EDX}/tia/k", edx)
        if r.status_code != 200 or r.json() != f"v{i}":
            stale.append(("edx PUT", i, describe(r)))
        send(session, "PATCH", f"{w.base}{EDX}/tia", edx, {f"p{i}": "x"}, MERGE)
        r = send(session, "GET", f"{rd.base}{EDX}/tia", edx)
        if r.status_code != 200 or r.json().get(f"p{i}") != "x":
            stale.append(("edx PATCH", i, describe(r)))
        send(session, "DELETE", f"{w.base}{EDX}/tia/p{i}", edx)
        r = send(session, "GET", f"{rd.base}{EDX}/tia/p{i}", edx)
        if r.status_code != 404:
            stale.append(("edx DELETE", i, describe(r)))
        send(session, "PATCH", f"{w.base}{rec}{rid}/", edx, {"value": {"i": i}})
        r = send(session, "GET", f"{rd.base}{rec}{rid}/", edx)
        if r.status_code != 200 or r.json().get("value") != {"i": i}:
            stale.append(("records PATCH", i, describe(r)))
        send(session, "PUT", f"{w.base}/preferences/appT/k", ns, raw=str(i))
        r = send(session, "GET", f"{rd.base}/preferences/appT", ns)
        if r.status_code != 200 or r.json().get("k") != i:
            stale.append(("ns PUT", i, describe(r)))
        send(session, "PATCH", f"{w.base}/preferences/appT", ns, {"k": None, f"m{i}": True}, MERGE)
        r = send(session, "GET", f"{rd.base}/preferences/appT/k", ns)
        if r.status_code != 404:
            stale.append(("ns PATCH delete", i, describe(r)))
    check("two instances: every write is read back at once through the other instance", not stale,
          f"{len(stale)} stale reads, e.g. {stale[:3]}")
    info(f"two instances: {rounds} rounds x 7 writes across the instances, {len(stale)} stale reads")
    for mode in ("edx", "nested"):
        concurrent_patches([a, b], f"two instances {mode}", mode)
    test_if_match_counter([a, b], "two instances", "ns-map")
    check("two instances: SIGTERM exits 0 (a)", a.terminate() == 0)
    check("two instances: SIGTERM exits 0 (b)", b.terminate() == 0)


# ---------------------------------------------------------------------------------------------
# 5. Pool exhaustion and slow clients


def test_pool_exhaustion(binary, backend, log_dir, clients=64, hold=6.0):
    """Pool of 2, a table lock held for `hold` s, `clients` clients writing in a loop: every answer
    is 2xx or 503 and comes within a bound; afterwards everything is 2xx again."""
    label = backend.label
    name = f"pool exhaustion {label}"
    url = backend.new_db("pool")
    server = Server(binary, url, log_dir, env={"PREFS_DB_POOL_SIZE": "2", "PREFS_DB_POOL_TIMEOUT": f"{POOL_WAIT:g}s"},
                    name=f"pool-{label}")
    users = [f"p{i}" for i in range(clients)]
    session = requests.Session()
    for user in users:
        send(session, "GET", f"{server.base}{EDX}/{user}", token(user))
    lock = TableLock(backend, url, hold).start()
    locked_at = time.time()
    answers = [[] for _ in range(clients)]
    after = {}
    barrier = threading.Barrier(clients)

    def client(i):
        session = requests.Session()
        user = users[i]
        edx = i % 2 == 0
        tok = token(user) if edx else ns_token(user, "appP")
        barrier.wait(30)
        n = 0
        while not lock.released.is_set() and n < 50:
            if edx:
                r, took = attempt(session, "PATCH", f"{server.base}{EDX}/{user}", tok, {f"k{n}": "v"}, MERGE)
            else:
                r, took = attempt(session, "PATCH", f"{server.base}/preferences/appP", tok, {f"k{n}": n}, MERGE)
            answers[i].append((r.status_code if r is not None else None, took, "edx" if edx else "ns",
                               r is not None and r.status_code == 503 and
                               (edx_shape(r) if edx else jsonapi_shape(r, "unavailable"))))
            n += 1
        lock.released.wait(hold + 30)
        r, took = attempt(session, "PATCH", f"{server.base}{EDX}/{user}", token(user), {"after": "yes"}, MERGE)
        after[i] = (r.status_code if r is not None else None, took)

    run_threads(client, clients, hold + 90, name)
    flat = [a for per_client in answers for a in per_client]
    statuses = {}
    for status, _, _, _ in flat:
        statuses[status] = statuses.get(status, 0) + 1
    slowest = max((took for _, took, _, _ in flat), default=0.0)
    # One request may wait for the pool twice (the user lookup of authentication, then the
    # write) and then for the lock (busy_timeout / lock_timeout = the pool wait): up to 3 waits.
    # The suite asserts that bound (no hang) and reports how many answers took longer than one wait.
    bound = 3 * POOL_WAIT + 1.5
    check(f"{name}: every answer under the lock is 2xx or 503", set(statuses) <= {200, 204, 503}, str(statuses))
    check(f"{name}: the lock made requests fail fast with 503", statuses.get(503, 0) > 0, str(statuses))
    check(f"{name}: 503s are in the dialect's format", all(ok for s, _, _, ok in flat if s == 503))
    over = [round(took, 2) for _, took, _, _ in flat if took > bound]
    check(f"{name}: every answer within {bound:g} s (no hang)", not over, f"{len(over)} slower: {over[:10]}")
    over_wait = sum(took > POOL_WAIT + 1.0 for _, took, _, _ in flat)
    check(f"{name}: all {clients} clients write again after the lock", len(after) == clients and
          {s for s, _ in after.values()} == {204}, str({s for s, _ in after.values()}))
    r = requests.get(server.base + "/readyz", timeout=TIMEOUT)
    check(f"{name}: /readyz 200 after", r.status_code == 200, describe(r))
    check(f"{name}: the process is alive", server.alive())
    latencies = sorted(took for _, took, _, _ in flat)
    p50 = latencies[len(latencies) // 2] if latencies else 0
    info(f"{name}: lock held {lock.released_at - locked_at:.1f} s; {len(flat)} answers under the lock {statuses}; "
         f"latency p50 {p50:.2f} s, max {slowest:.2f} s; {over_wait} over pool wait + 1 s "
         f"({POOL_WAIT + 1:g} s); after: max {max(t for _, t in after.values()):.2f} s")
    check(f"{name}: SIGTERM exits 0", server.terminate() == 0)


def test_slowloris(binary, sqlite, log_dir, sockets=1000, duration=8.0):
    """`sockets` connections drip bytes at 1 byte/s (half still in their headers, half in the body
    of an authenticated PATCH); meanwhile a normal client's requests each answer within 2 s and the
    server's RSS stays under 200 MB."""
    name = "slowloris"
    server = Server(binary, sqlite.new_db("slow"), log_dir, name="slowloris")
    session = requests.Session()
    tok = token("slow")
    send(session, "GET", f"{server.base}{EDX}/slow", tok)
    body = json.dumps({"dripped": "x" * 300}).encode()
    header_drip = (f"PATCH {EDX}/slow HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {tok}\r\n"
                   f"Content-Type: {MERGE}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    conns = []  # [socket, bytes still to send]
    opened_failed = 0
    for i in range(sockets):
        try:
            s = socket.create_connection(("127.0.0.1", server.port), timeout=2)
            s.setblocking(False)
        except OSError:
            opened_failed += 1
            continue
        if i % 2 == 0:
            conns.append([s, header_drip])
        else:
            s.setblocking(True)
            s.sendall(header_drip)
            s.setblocking(False)
            conns.append([s, body])
    check(f"{name}: {sockets} connections opened", opened_failed == 0, f"{opened_failed} refused")
    rss = [server.rss_mb()]
    stop = threading.Event()
    closed_by_server = {"n": 0}

    def drip():
        while not stop.is_set():
            for conn in conns:
                s, rest = conn
                if s is None or not rest:
                    continue
                try:
                    readable, _, _ = select.select([s], [], [], 0)
                    if readable and s.recv(4096) == b"":
                        raise ConnectionResetError
                    s.send(rest[:1])
                    conn[1] = rest[1:]
                except OSError:
                    closed_by_server["n"] += 1
                    s.close()
                    conn[0] = None
            rss.append(server.rss_mb())
            stop.wait(1.0)

    dripper = threading.Thread(target=drip, daemon=True)
    dripper.start()
    latencies, failures = [], []
    started = time.time()
    n = 0
    while time.time() < started + duration and n < 400:
        if n % 2:
            r, took = attempt(session, "PATCH", f"{server.base}{EDX}/normal", token("normal"), {f"n{n}": "v"}, MERGE,
                              timeout=(3, 10))
            ok = r is not None and r.status_code == 204
        else:
            r, took = attempt(session, "GET", f"{server.base}/preferences/appS", ns_token("normal", "appS"),
                              timeout=(3, 10))
            ok = r is not None and r.status_code == 200
        latencies.append(took)
        if not ok:
            failures.append(describe(r))
        n += 1
        time.sleep(0.05)
    stop.set()
    dripper.join(10)
    still_open = sum(1 for s, _ in conns if s is not None)
    for s, _ in conns:
        if s is not None:
            s.close()
    check(f"{name}: normal requests succeed meanwhile", not failures, f"{len(failures)} failed: {failures[:3]}")
    check(f"{name}: each normal request within 2 s", max(latencies, default=0) <= 2.0,
          f"max {max(latencies, default=0):.2f} s")
    check(f"{name}: RSS stays under 200 MB", max(rss) < 200, f"{max(rss):.1f} MB")
    check(f"{name}: the process is alive", server.alive())
    r = send(session, "GET", f"{server.base}{EDX}/slow", tok)
    check(f"{name}: no dripped body was applied", r.status_code == 200 and "dripped" not in r.json(), describe(r))
    latencies.sort()
    info(f"{name}: {len(conns)} dripping connections for {duration:g} s ({closed_by_server['n']} closed by the "
         f"server, {still_open} still open at the end); {len(latencies)} normal requests, p50 "
         f"{latencies[len(latencies) // 2] * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms; RSS "
         f"{rss[0]:.1f} -> max {max(rss):.1f} MB")
    check(f"{name}: SIGTERM exits 0", server.terminate(wait=40) == 0)


# ---------------------------------------------------------------------------------------------
# 7. A damaged SQLite file

DAMAGE_CAP_MB = 1024  # the address space of the servers that meet a damaged file
DAMAGE_USERS = 120  # each with 3 global and 3 namespace preferences of ~300 bytes: ~70 leaf pages
DAMAGE_NS = "appD"


def capped(binary, log_dir, megabytes=DAMAGE_CAP_MB):
    """A script that runs `binary` as itself (exec: same process, same pid) with its address space
    capped at `megabytes` (`ulimit -v`, RLIMIT_AS): a server that takes memory without end dies at
    the cap instead of taking the machine's."""
    path = os.path.join(log_dir, f"prefs-capped-{megabytes}m.sh")
    with open(path, "w") as f:
        f.write(f"#!/bin/sh\nulimit -v {megabytes * 1024}\nexec {shlex.quote(binary)} \"$@\"\n")
    os.chmod(path, 0o755)
    return path


def leaf_pages(path, table):
    """The page size of the SQLite file `path` and the leaf pages of `table`, walked down its
    b-tree from the root page (SQLite's file format, §1.6: an interior table page, type 0x05,
    holds a child page number at the start of each cell and one more at offset 8; a leaf, type
    0x0D, the rows)."""
    con = sqlite3.connect(path)
    try:
        page_size = con.execute("PRAGMA page_size").fetchone()[0]
        root = con.execute("SELECT rootpage FROM sqlite_master WHERE type = 'table' AND name = ?",
                           (table,)).fetchone()[0]
    finally:
        con.close()
    with open(path, "rb") as f:
        data = f.read()

    def number(at, size):
        return int.from_bytes(data[at:at + size], "big")

    def walk(page):
        start = (page - 1) * page_size
        header = start + (100 if page == 1 else 0)  # page 1 starts with the file header
        if data[header] == 0x0D:
            return [page]
        cells = number(header + 3, 2)
        children = [number(start + number(header + 12 + 2 * i, 2), 4) for i in range(cells)]
        return [leaf for child in children + [number(header + 8, 4)] for leaf in walk(child)]

    return page_size, walk(root)


def damage(source, target, page, page_size):
    """Copies `source` to `target` and overwrites 2,000 bytes in the middle of `page` of the copy
    with garbage (the same for a given page)."""
    shutil.copyfile(source, target)
    with open(target, "r+b") as f:
        f.seek((page - 1) * page_size + page_size // 2 - 1000)
        f.write(random.Random(page).randbytes(2000))


def fails_after(path, sql, args):
    """How many rows `sql` reads from the file `path` before an error, or None if it reads them all."""
    con = sqlite3.connect(path)
    read = 0
    try:
        for _ in con.execute(sql, args):
            read += 1
        return None
    except sqlite3.DatabaseError:
        return read
    finally:
        con.close()


def seed_damage(binary, sqlite, log_dir):
    """A database of DAMAGE_USERS users, each with 3 global and 3 DAMAGE_NS preferences of ~300
    bytes, written one user at a time (so one user's rows lie together), checkpointed and closed:
    (path, {user id: (username, subject, id of a global preference)})."""
    url = sqlite.new_db("damage")
    server = Server(binary, url, log_dir, name="damage-seed")
    session = requests.Session()
    failures = []
    for i in range(DAMAGE_USERS):
        user = f"d{i:03d}"
        r = send(session, "PATCH", f"{server.base}{EDX}/{user}", token(user),
                 {f"k{j}": f"{user}-{j}-" + "x" * 300 for j in range(3)}, MERGE)
        if r.status_code != 204:
            failures.append(describe(r))
        r = send(session, "PUT", f"{server.base}/preferences/{DAMAGE_NS}", ns_token(user, DAMAGE_NS),
                 {f"n{j}": f"{user}-n{j}-" + "y" * 300 for j in range(3)})
        if r.status_code != 204:
            failures.append(describe(r))
    check("damaged sqlite: seeding succeeds", not failures, f"{len(failures)} failed: {failures[:3]}")
    check("damaged sqlite: the seeding server exits 0 on SIGTERM", server.terminate() == 0)
    path = Sqlite.path(url)
    con = sqlite3.connect(path, isolation_level=None)
    try:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # everything in the main file, the one damaged
        users = {uid: (username, subject) for uid, username, subject in
                 con.execute("SELECT id, username, subject FROM users").fetchall()}
        records = dict(con.execute("SELECT user_id, min(id) FROM preferences WHERE namespace = 'global' "
                                   "GROUP BY user_id").fetchall())
    finally:
        con.close()
    return path, {uid: (username, subject, records.get(uid, 0)) for uid, (username, subject) in users.items()}


def damaged_copy(source, table, users, queries, mid_scan, log_dir):
    """A copy of `source` with one leaf page of `table` damaged, tried from the middle of the table
    outwards until one hurts a user: each of the user's `queries(user id)` ((sql, args), as prefs
    runs them for its requests) fails, and if `mid_scan` one of them only after some rows (the
    case that a store stepping on after an error never leaves: SQLite starts the statement over
    and reads those rows again). (path, that user, a user whose queries all succeed) or None."""
    page_size, leaves = leaf_pages(source, table)
    for i in sorted(range(len(leaves)), key=lambda i: abs(i - len(leaves) // 2)):
        path = os.path.join(log_dir, f"damaged-{table}-{leaves[i]}.db")
        damage(source, path, leaves[i], page_size)
        read = {uid: [fails_after(path, sql, args) for sql, args in queries(uid)] for uid in users}
        hurt = [uid for uid, rows in read.items() if None not in rows and (any(rows) or not mid_scan)]
        whole = [uid for uid, rows in read.items() if rows.count(None) == len(rows)]
        if hurt and whole:
            info(f"damaged sqlite: {table} leaf page {leaves[i]} ({i + 1} of {len(leaves)}) damaged: it hurts "
                 f"{len(hurt)} user(s), e.g. user {hurt[0]} (rows read before each error: {read[hurt[0]]})")
            return path, hurt[0], whole[0]
        os.remove(path)
    return None


def damage_probes(user, record_id):
    """(name, dialect, method, path, token, body, content type): every read and write of `user`."""
    edx, ns = token(user), ns_token(user, DAMAGE_NS)
    rec, space = "/api/v2/user/me/preference/", f"/preferences/{DAMAGE_NS}"
    return [
        ("edx GET", "edx", "GET", f"{EDX}/{user}", edx, None, None),
        ("edx PATCH", "edx", "PATCH", f"{EDX}/{user}", edx, {"k0": "changed"}, MERGE),
        ("edx PUT key", "edx", "PUT", f"{EDX}/{user}/k1", edx, "changed", "application/json"),
        ("edx DELETE key", "edx", "DELETE", f"{EDX}/{user}/k2", edx, None, None),
        ("records GET list", "records", "GET", rec, edx, None, None),
        ("records POST", "records", "POST", rec, edx, {"key": "added", "value": [1]}, "application/json"),
        ("records PATCH one", "records", "PATCH", f"{rec}{record_id}/", edx, {"value": 2}, "application/json"),
        ("records DELETE one", "records", "DELETE", f"{rec}{record_id}/", edx, None, None),
        ("ns GET", "ns", "GET", space, ns, None, None),
        ("ns PATCH", "ns", "PATCH", space, ns, {"n0": 1}, MERGE),
        ("ns PUT", "ns", "PUT", space, ns, {"n0": 1}, "application/json"),
        ("ns PUT key", "ns", "PUT", f"{space}/n1", ns, 1, "application/json"),
        ("ns DELETE key", "ns", "DELETE", f"{space}/n2", ns, None, None),
        ("ns DELETE", "ns", "DELETE", space, ns, None, None),
    ]


def internal_shape(dialect, r):
    """The dialect's error body for an internal error: 500, or 501 in the namespace dialect."""
    if dialect == "edx":
        return r.status_code == 500 and edx_shape(r)
    if dialect == "records":
        return r.status_code == 500 and records_shape(r, "internal")
    return r.status_code == 501 and jsonapi_shape(r, "internal")


def serve_damaged(binary, path, users, hurt, whole, name, log_dir):
    """prefs (capped) on the damaged file at `path`: every read and write of the user `hurt`
    answers 500 (501) in its dialect's format within 1 s, the user `whole` still reads, memory
    stays bounded, the cause is logged, and SIGTERM stops the process (exit 0)."""
    env = {"PREFS_WORKERS": "2", "MALLOC_ARENA_MAX": "2"}  # a small address space to start with
    server = Server(capped(binary, log_dir), f"sqlite://{path}", log_dir, env=env, name=name.replace(" ", "-"))
    peak, stop = [server.rss_mb()], threading.Event()

    def sample():
        while not stop.wait(0.02) and server.alive():
            try:
                peak[0] = max(peak[0], server.rss_mb())
            except OSError:  # it ended (and was reaped) meanwhile
                return

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    session = requests.Session()
    user, _, record_id = users[hurt]
    failed, slowest = 0, 0.0
    for pname, dialect, method, p, tok, body, ctype in damage_probes(user, record_id):
        r, took = attempt(session, method, server.base + p, tok, body, ctype or "application/json", timeout=(1, 2))
        failed += r is not None and r.status_code >= 500
        slowest = max(slowest, took)
        check(f"{name}: {pname} is {501 if dialect == 'ns' else 500} in the {dialect} format",
              r is not None and internal_shape(dialect, r), describe(r))
        check(f"{name}: {pname} answers within 1 s", took <= 1.0, f"{took:.2f} s")
    healthy = users[whole][0]
    r, _ = attempt(session, "GET", f"{server.base}{EDX}/{healthy}", token(healthy), timeout=(1, 2))
    check(f"{name}: a user off the damaged page still reads", r is not None and r.status_code == 200, describe(r))
    stop.set()
    sampler.join(5)
    check(f"{name}: RSS stays under 200 MB", peak[0] < 200, f"{peak[0]:.1f} MB")
    check(f"{name}: the process is alive", server.alive(), f"exit {server.process.returncode}: {server.log_tail()}")
    started = time.time()
    code = server.terminate(wait=10)
    stopped = time.time() - started
    check(f"{name}: SIGTERM exits 0 within 5 s", code == 0 and stopped <= 5, f"exit {code} after {stopped:.1f} s")
    with open(server.log_path, errors="replace") as f:
        malformed = sum("database disk image is malformed" in line for line in f)
    check(f"{name}: the cause is logged once per failed request", 0 < malformed == failed,
          f"{malformed} lines for {failed} failed requests: {server.log_tail()}")
    info(f"{name}: {failed} requests failed cleanly, the slowest in {slowest * 1000:.0f} ms; RSS max "
         f"{peak[0]:.1f} MB; SIGTERM took {stopped:.2f} s")


def test_damaged_sqlite(binary, sqlite, log_dir):
    """A page of `preferences`, and one of `users`, overwritten in its middle (`PRAGMA
    integrity_check`: "On tree page N cell M: ..."): every request that meets it is a clean 500."""
    source, users = seed_damage(binary, sqlite, log_dir)

    def namespaces(uid):
        sql = "SELECT * FROM preferences WHERE user_id = ? AND namespace = ?"
        return [(sql, (uid, namespace)) for namespace in ("global", DAMAGE_NS)]

    def subject(uid):
        return [("SELECT * FROM users WHERE subject = ?", (users[uid][1],))]

    for table, queries, mid_scan in (("preferences", namespaces, True), ("users", subject, False)):
        found = damaged_copy(source, table, users, queries, mid_scan, log_dir)
        if check(f"damaged sqlite: a damaged {table} page hurts a user", found is not None):
            path, hurt, whole = found
            serve_damaged(binary, path, users, hurt, whole, f"damaged sqlite {table}", log_dir)


# ---------------------------------------------------------------------------------------------


def timed(name, function, *args):
    started = time.time()
    try:
        function(*args)
    except Exception:  # noqa: BLE001 - a crash of one test is a failure, not the end of the suite
        check(f"{name}: ran to its end", False, traceback.format_exc())
    took = time.time() - started
    timings.append((name, took))
    print(f"## {name}: {took:.1f} s", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("binary")
    parser.add_argument("--only", default="", help="comma-separated test names (crash, graceful, outage, lost, "
                                                   "two, failover, pool, slowloris, damaged, hostile)")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the databases and server logs (path printed)")
    args = parser.parse_args()
    binary = os.path.abspath(args.binary)
    only = set(filter(None, args.only.split(",")))
    wanted = lambda name: not only or name in only  # noqa: E731
    seed = int(os.environ.get("PREFS_RELIABILITY_SEED", str(int(time.time()))))
    rng = random.Random(seed)
    random.seed(seed)
    print(f"reliability: {binary}, seed {seed} (PREFS_RELIABILITY_SEED)", flush=True)
    suite_started = time.time()
    pg = None
    with tempfile.TemporaryDirectory(prefix="prefs-reliability-") as directory:
        if args.keep:
            directory = tempfile.mkdtemp(prefix="prefs-reliability-kept-")
            print(f"reliability: keeping databases and logs in {directory}", flush=True)
        sqlite = Sqlite(directory)
        try:
            backends = [sqlite]
            if not args.no_postgres:
                pg = Postgres(int(os.environ.get("PREFS_RELIABILITY_PG_PORT", "25442")))
                timed("postgres cluster start", pg.start)
                if pg.admin:
                    backends.append(pg)
                    fsync = pg.psql(pg.admin, "SHOW fsync")
                    check("the private PostgreSQL is durable (fsync on)", fsync == "on",
                          f"fsync={fsync}: a cluster left running on port {pg.env['PREFS_PG_PORT']} without "
                          "PREFS_PG_FSYNC=on? `tests/postgres.sh stop` it")
            for backend in backends:
                if wanted("crash"):
                    timed(f"crash safety {backend.label}", test_crash, binary, backend, directory, rng)
                if wanted("graceful"):
                    timed(f"graceful shutdown {backend.label}", test_graceful, binary, backend, directory, rng)
                if wanted("lost"):
                    timed(f"lost updates {backend.label}", test_lost_updates, binary, backend, directory)
                if wanted("pool"):
                    timed(f"pool exhaustion {backend.label}", test_pool_exhaustion, binary, backend, directory)
            if wanted("outage"):
                timed("sqlite exclusive lock", test_lock_sqlite, binary, sqlite, directory)
                if pg and pg.admin:
                    timed("postgres outage", test_outage_postgres, binary, pg, directory)
            if wanted("two") and pg and pg.admin:
                timed("two instances postgres", test_two_instances, binary, pg, directory)
            if wanted("failover") and not args.no_postgres:
                failover_port = int(os.environ.get("PREFS_RELIABILITY_PG_PORT", "25442")) + 20
                timed("failover postgres", test_failover_postgres, binary, directory, failover_port)
            if wanted("slowloris"):
                timed("slowloris", test_slowloris, binary, sqlite, directory)
            if wanted("damaged"):
                timed("damaged sqlite", test_damaged_sqlite, binary, sqlite, directory)
            if wanted("hostile"):
                timed("hostile soak", test_hostile, binary, sqlite, directory)
        finally:
            for process in servers_started:
                if process.poll() is None:
                    process.kill()
                    process.wait(timeout=30)
            if pg is not None:
                try:
                    pg.destroy()
                except Exception:  # noqa: BLE001
                    check("postgres cluster removed", False, traceback.format_exc())
    total = time.time() - suite_started
    print(f"reliability: took {total:.1f} s: " + ", ".join(f"{n} {t:.1f}" for n, t in timings), flush=True)
    print(f"{results['passed']} passed, {results['failed']} failed")
    sys.exit(1 if results["failed"] else 0)


if __name__ == "__main__":
    main()
