"""The hostile soak of the reliability suite: every resource attack we know of, all at once, against
one `prefs serve` on SQLite with its default deadlines and rate limits, while a well-behaved
client keeps working.

Attackers (one process of their own, so that their Python threads cannot delay the measured
client's; all on 127.0.0.1, as one hostile address):
- slow bodies: 100 connections that announce a 2 MB body to a namespace PUT, send 1 KB of it and
  stall (a valid token with scopes), reopened when the server drops them; 20 more with a token
  without scopes, which must be refused at once, before the body;
- clients that never read: 10 connections with a tiny receive buffer that ask for a full namespace
  (4 MiB) and read nothing;
- made-up methods (`M0 /healthz`, `M1 ...`) as fast as one thread sends them;
- new subjects: a valid token for a never-seen subject on every request;
- bad tokens: forged signatures and garbage;
- the owner of the full namespace reading it and patching it as fast as one thread can.
The well-behaved client reads and writes its own preferences in all three dialects, 20 times a
second. Every one of its requests must succeed, its p99 stay under 100 ms, and the server's RSS
under 256 MB. The figures are printed.
"""

import json
import multiprocessing
import select
import socket
import sqlite3
import threading
import time

import jwt
import requests

from common import MERGE, RW, Server, check, send, token

DURATION = 45.0  # seconds of attack: more than the default send deadline (30 s)
BODY_DEADLINE = 10.0  # PREFS_BODY_TIMEOUT's default
FULL_CLIENT = "appF"
FULL_VALUE_CHARS = 1_040_000  # four such string values fill the default 4 MiB namespace
EDX = "/api/user/v1/preferences"
RSS_LIMIT_MB = 256
P99_LIMIT_MS = 100
SIGNUPS_PER_MINUTE = 60  # PREFS_RATE_LIMIT_SIGNUPS's default: 60/min, a burst of 120


def info(text):
    print(f"  {text}", flush=True)


def status_of(head):
    """The status code of a raw HTTP answer's first bytes, or None."""
    parts = head.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


def open_slow_body(port, tok):
    """A connection that announces a 2 MB namespace PUT, sends 1 KB of it, and stalls."""
    s = socket.create_connection(("127.0.0.1", port), timeout=3)
    head = (f"PUT /preferences/appA HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {tok}\r\n"
            f"Content-Type: application/json\r\nContent-Length: 2000000\r\n\r\n").encode()
    s.sendall(head + b'{"a": "' + b"x" * 1000)
    s.setblocking(False)
    return s


def open_non_reader(port, tok):
    """A connection with a tiny receive buffer that asks for the full namespace and reads nothing."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(3)
    s.connect(("127.0.0.1", port))
    s.sendall(f"GET /preferences/{FULL_CLIENT} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {tok}\r\n\r\n"
              .encode())
    s.setblocking(False)
    return s


def dropped_mid_answer(s):
    """Drains what the socket holds: whether the server closed it (EOF or reset) before the whole
    answer, a 200 of the full namespace, was sent."""
    received, closed = b"", False
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                closed = True
                break
            received += chunk
    except BlockingIOError:
        pass
    except OSError:
        closed = True
    return closed and status_of(received) == 200 and len(received) < 4 * FULL_VALUE_CHARS


def sockets_attack(port, tokens, readers, stop, out):
    """Slow bodies and scope-less slow bodies in one select loop; at the end, whether the server
    dropped the `readers`."""
    slow = {}  # socket -> opened at
    held = []  # seconds the server held a slow body before answering
    statuses = {}
    scopeless_ms = []
    for _ in range(100):
        slow[open_slow_body(port, tokens["slow"])] = time.time()
    for _ in range(20):
        started = time.time()
        s = open_slow_body(port, tokens["scopeless"])
        s.setblocking(True)
        s.settimeout(5)
        try:
            head = s.recv(200)
            scopeless_ms.append((time.time() - started) * 1000)
            statuses[f"scopeless {status_of(head)}"] = statuses.get(f"scopeless {status_of(head)}", 0) + 1
        except OSError:
            statuses["scopeless no answer"] = statuses.get("scopeless no answer", 0) + 1
        s.close()
    reopened = 0
    while not stop.is_set():
        readable, _, _ = select.select(list(slow), [], [], 0.2)
        for s in readable:
            try:
                head = s.recv(200)
            except OSError:
                head = b""
            key = f"slow {status_of(head)}" if head else "slow closed without an answer"
            statuses[key] = statuses.get(key, 0) + 1
            held.append(time.time() - slow.pop(s))
            s.close()
            if not stop.is_set():
                slow[open_slow_body(port, tokens["slow"])] = time.time()
                reopened += 1
    dropped = sum(dropped_mid_answer(s) for s in readers)
    for s in list(slow) + readers:
        s.close()
    out.update(slow_statuses=statuses, slow_held=held, slow_reopened=reopened, scopeless_ms=scopeless_ms,
               readers=len(readers), readers_dropped=dropped)


def flood(base, make_request, stop, out, name):
    """Sends `make_request(session, i)` back to back until `stop`; counts the statuses."""
    session = requests.Session()
    statuses, retry_after = {}, set()
    i = 0
    while not stop.is_set():
        try:
            r = make_request(session, i)
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            if r.status_code == 429:
                retry_after.add(r.headers.get("Retry-After"))
        except requests.RequestException as e:
            statuses[type(e).__name__] = statuses.get(type(e).__name__, 0) + 1
        i += 1
    out[name] = {"statuses": statuses, "retry_after": sorted(map(str, retry_after))[:5]}


def attackers(port, tokens, stop, queue):
    """The attacking process: every attack on its own thread until `stop`; puts its figures."""
    base = f"http://127.0.0.1:{port}"
    forged = jwt.encode({"sub": "sub-good", "exp": int(time.time()) + 3600}, "not-the-secret-but-long-enough!!",
                        algorithm="HS256")
    out = {}

    def new_subject(session, i):
        return send(session, "GET", f"{base}{EDX}/new{i}", token(f"new{i}"), timeout=(3, 10))

    def bad_token(session, i):
        return send(session, "GET", f"{base}{EDX}/good", forged if i % 2 else f"garbage.{i}.x", timeout=(3, 10))

    def made_up(session, i):
        return session.request(f"M{i}", f"{base}/healthz", timeout=(3, 10))

    def full_owner(session, i):
        if i % 2:
            return send(session, "PATCH", f"{base}/preferences/{FULL_CLIENT}", tokens["full"], {"small": None}, MERGE,
                        timeout=(3, 30))
        return send(session, "GET", f"{base}/preferences/{FULL_CLIENT}", tokens["full"], timeout=(3, 30))

    # The non-readers first, before the owner's own flood meets the rate limit.
    readers = [open_non_reader(port, tokens["full"]) for _ in range(10)]
    threads = [threading.Thread(target=sockets_attack, args=(port, tokens, readers, stop, out))]
    for name, make in [("new subjects", new_subject), ("bad tokens", bad_token), ("made-up methods", made_up),
                       ("full namespace owner", full_owner)]:
        threads.append(threading.Thread(target=flood, args=(base, make, stop, out, name)))
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    queue.put(out)


def good_client(server, stop):
    """Reads and writes its own preferences in the three dialects 20 times a second; returns
    (latencies in seconds, failures)."""
    session = requests.Session()
    user, ns = token("good"), token("good", scopes=RW, client="appG")
    latencies, failures = [], []
    i = 0
    while not stop.is_set():
        kind = i % 4
        started = time.time()
        try:
            if kind == 0:
                r = send(session, "GET", f"{server.base}{EDX}/good", user, timeout=(3, 10))
            elif kind == 1:
                r = send(session, "PATCH", f"{server.base}{EDX}/good", user, {"n": str(i)}, MERGE, timeout=(3, 10))
            elif kind == 2:
                r = send(session, "PATCH", f"{server.base}/preferences/appG", ns, {"n": i}, MERGE, timeout=(3, 10))
            else:
                r = send(session, "GET", f"{server.base}/api/v2/user/me/preference/", user, timeout=(3, 10))
            latencies.append(time.time() - started)
            if r.status_code not in (200, 204):
                failures.append(f"{r.status_code} {r.text[:200]}")
        except requests.RequestException as e:
            latencies.append(time.time() - started)
            failures.append(repr(e))
        i += 1
        stop.wait(max(0.0, 0.05 - (time.time() - started)))
    return latencies, failures


def count_users(url):
    with sqlite3.connect(url[len("sqlite://"):]) as db:
        return db.execute("SELECT count(*) FROM users").fetchone()[0]


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] if ordered else 0.0


def test_hostile(binary, sqlite, log_dir):
    name = "hostile"
    url = sqlite.new_db("hostile")
    server = Server(binary, url, log_dir, name="hostile", rate_limits=True)
    session = requests.Session()
    tokens = {"slow": token("slow", scopes=RW, client="appA"), "scopeless": token("scopeless"),
              "full": token("full", scopes=RW, client=FULL_CLIENT)}
    for user in ("good", "slow", "scopeless", "full"):
        send(session, "GET", f"{server.base}{EDX}/{user}", token(user))
    for k in range(4):
        r = send(session, "PUT", f"{server.base}/preferences/{FULL_CLIENT}/k{k}", tokens["full"],
                 "x" * FULL_VALUE_CHARS)
        check(f"{name}: value {k} of the full namespace is stored", r.status_code == 204, f"{r.status_code} {r.text}")
    r = send(session, "PUT", f"{server.base}/preferences/{FULL_CLIENT}/more", tokens["full"], "y" * 100_000)
    check(f"{name}: the full namespace takes no more (413)", r.status_code == 413, f"{r.status_code} {r.text[:300]}")
    users_before = count_users(url)

    rss = [server.rss_mb()]
    stop = multiprocessing.Event()
    queue = multiprocessing.Queue()
    attack = multiprocessing.Process(target=attackers, args=(server.port, tokens, stop, queue), daemon=True)
    started = time.time()
    attack.start()

    sampling = threading.Event()

    def sample():
        while not sampling.wait(0.2):
            rss.append(server.rss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    good_stop = threading.Event()
    timer = threading.Timer(DURATION, good_stop.set)
    timer.start()
    latencies, failures = good_client(server, good_stop)
    stop.set()
    try:
        figures = queue.get(timeout=60)
    except Exception:  # noqa: BLE001 - reported below
        figures = {}
    attack.join(10)
    sampling.set()
    sampler.join(5)
    took = time.time() - started

    p50, p99 = percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000
    check(f"{name}: the attackers reported", bool(figures), "no figures from the attacking process")
    check(f"{name}: every well-behaved request succeeds", latencies and not failures,
          f"{len(failures)} of {len(latencies)} failed: {failures[:3]}")
    check(f"{name}: the well-behaved p99 is under {P99_LIMIT_MS} ms", p99 < P99_LIMIT_MS, f"p99 {p99:.1f} ms")
    check(f"{name}: RSS stays under {RSS_LIMIT_MB} MB", max(rss) < RSS_LIMIT_MB, f"max {max(rss):.1f} MB")
    check(f"{name}: the process is alive", server.alive(), server.log_tail())

    slow = figures.get("slow_statuses", {})
    held = figures.get("slow_held", [])
    check(f"{name}: stalled bodies are answered 408", slow.get("slow 408", 0) >= 100, json.dumps(slow))
    check(f"{name}: no stalled body is held much past the deadline",
          held and max(held) < BODY_DEADLINE + 5, f"max {max(held, default=0):.1f} s")
    scopeless = figures.get("scopeless_ms", [])
    check(f"{name}: bodies without the scope are refused before they arrive (403)",
          slow.get("scopeless 403", 0) == 20 and max(scopeless, default=99999) < 1000, json.dumps(slow))
    check(f"{name}: clients that never read are dropped",
          figures.get("readers_dropped") == figures.get("readers"),
          f"{figures.get('readers_dropped')} of {figures.get('readers')}")

    created = count_users(url) - users_before
    allowed = 2 * SIGNUPS_PER_MINUTE + int(SIGNUPS_PER_MINUTE * took / 60) + 1
    subjects = figures.get("new subjects", {}).get("statuses", {})
    check(f"{name}: new users from one address are limited", created <= allowed and subjects.get(429, 0) > 0,
          f"{created} created (at most {allowed}), statuses {subjects}")
    bad = figures.get("bad tokens", {}).get("statuses", {})
    check(f"{name}: bad tokens from one address are limited (429 with Retry-After)",
          bad.get(429, 0) > 0 and "None" not in figures["bad tokens"]["retry_after"], json.dumps(figures.get("bad tokens")))
    made_up = figures.get("made-up methods", {}).get("statuses", {})
    check(f"{name}: made-up methods are 501", made_up and set(made_up) == {501}, json.dumps(made_up))
    owner = figures.get("full namespace owner", {}).get("statuses", {})
    check(f"{name}: the full namespace's owner is served or limited, nothing else",
          owner and set(owner) <= {200, 429} and owner.get(200, 0) > 0, json.dumps(owner))
    metrics = send(session, "GET", f"{server.base}/metrics").text
    check(f"{name}: refusals are counted in /metrics", "rate_limited" in metrics)

    info(f"{name}: {took:.0f} s of attack. Well-behaved client: {len(latencies)} requests, {len(failures)} failed, "
         f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max(latencies, default=0) * 1000:.1f} ms. "
         f"RSS {rss[0]:.1f} MB at the start, {max(rss):.1f} MB at most, {rss[-1]:.1f} MB at the end")
    info(f"{name}: slow bodies {json.dumps(slow)}, held {min(held, default=0):.1f}-{max(held, default=0):.1f} s, "
         f"{figures.get('slow_reopened', 0)} reopened; scope-less refused in at most "
         f"{max(scopeless, default=0):.1f} ms; non-readers dropped {figures.get('readers_dropped')} of "
         f"{figures.get('readers')}")
    info(f"{name}: new subjects {json.dumps(subjects)} ({created} users created); bad tokens {json.dumps(bad)}; "
         f"made-up methods {json.dumps(made_up)}; full namespace owner {json.dumps(owner)}")
    check(f"{name}: SIGTERM exits 0", server.terminate(wait=40) == 0)
