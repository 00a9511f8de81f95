"""What the black-box suites share: tokens signed like an identity provider's, a `prefs serve`
process on a loopback port, scratch PostgreSQL databases, and the checks with their closing line
`N passed, N failed`."""

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
import uuid

import jwt
import requests

SECRET = "e2e-secret-that-is-long-enough-for-hs256!"
TIMEOUT = (3, 20)  # connect, read: no request may hang a suite
MERGE = "application/merge-patch+json"
RW = ("user:preferences:read", "user:preferences:write")

# Headless Chromium as root, with nothing that reaches outside this machine.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

results = {"passed": 0, "failed": 0}
servers_started = []  # every prefs process, so a suite can kill them all whatever happens


def check(name, condition, detail=""):
    """Counts one check; prints it when it fails. Returns the condition."""
    if condition:
        results["passed"] += 1
    else:
        results["failed"] += 1
        line = f"FAIL {name} {detail}"
        # A long detail (a traceback, a server log) keeps its start and its end, where the cause is.
        print(line if len(line) <= 4000 else f"{line[:1500]} [...] {line[-2500:]}", flush=True)
    return condition


def finish():
    """Prints the closing line; the exit status (1 if anything failed or nothing ran)."""
    print(f"{results['passed']} passed, {results['failed']} failed", flush=True)
    return 1 if results["failed"] or not results["passed"] else 0


def token(user, roles=(), scopes=(), client=None, **extra):
    """An HS256 token for `user` (subject `sub-<user>`), valid for an hour."""
    claims = {"sub": f"sub-{user}", "preferred_username": user, "roles": list(roles),
              "exp": int(time.time()) + 3600, **extra}
    if scopes:
        claims["scope"] = " ".join(scopes)
    if client:
        claims["client_id"] = client
    return jwt.encode(claims, SECRET, algorithm="HS256")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One `prefs serve` process; its log goes to a file (a pipe could fill up and block it)."""

    def __init__(self, binary, database_url, log_dir=None, env=None, name="prefs", rate_limits=False):
        """`rate_limits`: keep prefs' default rate limits; by default they are off, since the suites
        send many requests and sign up many users from one address on purpose."""
        self.binary, self.database_url, self.name = binary, database_url, name
        self.log_dir = log_dir or tempfile.mkdtemp(prefix="prefs-log-")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PREFS_") and k != "DATABASE_URL"}
        if not rate_limits:
            self.env.update({f"PREFS_RATE_LIMIT_{limit}": "off" for limit in ("USER", "ADDRESS", "SIGNUPS")})
        self.env.update({"PREFS_JWT_SECRET": SECRET, "RUST_LOG": "warn", "NO_COLOR": "1", **(env or {})})
        self.process = None
        self.start()

    def start(self):
        """Starts the process and waits until `/readyz` answers 200; returns how long that took."""
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = os.path.join(self.log_dir, f"{self.name}-{uuid.uuid4().hex[:6]}.log")
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [self.binary, "serve", "--bind", f"127.0.0.1:{self.port}", "--database-url", self.database_url],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        servers_started.append(self.process)
        started = time.time()
        while time.time() < started + 30:
            if self.process.poll() is not None:
                raise RuntimeError(f"prefs exited with {self.process.returncode}: {self.log_tail()}")
            try:
                if requests.get(self.base + "/readyz", timeout=1).status_code == 200:
                    return time.time() - started
            except requests.RequestException:
                pass
            time.sleep(0.02)
        raise RuntimeError(f"prefs did not become ready: {self.log_tail()}")

    def call(self, method, path, tok=None, body=None, content_type="application/json", raw=None, headers=None):
        """One request; `body` is sent as JSON, `raw` as is."""
        return send(requests, method, self.base + path, tok, body, content_type, raw, headers)

    def log_tail(self, lines=15):
        try:
            with open(self.log_path, errors="replace") as f:
                return re.sub(r"\x1b\[[0-9;]*m", "", "".join(f.readlines()[-lines:]))
        except OSError:
            return ""

    def alive(self):
        return self.process.poll() is None

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def terminate(self, wait=30):
        """SIGTERM; the exit code, or None if it did not exit in time (then it is killed)."""
        if not self.alive():
            return self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)
            return None

    def rss_mb(self):
        with open(f"/proc/{self.process.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0


def send(session, method, url, tok=None, body=None, content_type="application/json", raw=None, headers=None,
         timeout=TIMEOUT):
    """One request through `session` (a `requests.Session`, or the `requests` module itself):
    the bearer token, `body` as JSON or `raw` as is, with its content type."""
    all_headers = dict(headers or {})
    if tok:
        all_headers["Authorization"] = f"Bearer {tok}"
    data = raw if body is None else json.dumps(body)
    if data is not None:
        all_headers["Content-Type"] = content_type
    return session.request(method, url, headers=all_headers, data=data, timeout=timeout)


@contextlib.contextmanager
def scratch_postgres(admin_url, prefix="prefs_e2e"):
    """A fresh PostgreSQL database on the server of `admin_url`, dropped afterwards; yields its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    subprocess.run(["psql", admin_url, "-qc", f"CREATE DATABASE {name}"], check=True, timeout=60)
    try:
        # The same server and query (`sslmode=verify-full&sslrootcert=…` on a TLS-only server).
        parts = urllib.parse.urlsplit(admin_url)
        yield urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        subprocess.run(["psql", admin_url, "-qc", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"], timeout=60)


def watchdog(seconds):
    """Ends the run (a failure) after `seconds`, whatever hangs: the servers are killed and the
    closing line printed."""
    def fire():
        print(f"FAIL the run took longer than {seconds} s", flush=True)
        results["failed"] += 1
        for child in servers_started:
            child.kill()
        finish()
        os._exit(1)  # the Playwright driver sees its pipe close and kills the browser
    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
