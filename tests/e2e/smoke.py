#!/usr/bin/env python3
"""Black-box check of the `prefs` binary: a client that mints its own HS256 tokens talks to
`prefs serve` over HTTP, on a SQLite file and on PostgreSQL, through all three dialects and the
CLI. Talks to 127.0.0.1 only; every request has a timeout.

usage: smoke.py PATH_TO_PREFS [POSTGRES_ADMIN_URL]
Ends with one line `N passed, N failed`; exits 1 if anything failed.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import jwt
import requests

from common import SECRET, TIMEOUT, Server, check, finish, free_port, scratch_postgres, token


def edx(s, label):
    alice, bob = token("alice"), token("bob")
    stella, ada = token("stella", ["staff"]), token("ada", ["admin"])
    base = "/api/user/v1/preferences"
    for t in (bob, stella, ada):
        s.call("GET", f"{base}/x", t)
    r = s.call("PATCH", f"{base}/alice", alice, {"pref-lang": "fr", "time_zone": "Europe/Paris", "n": 5},
               "application/merge-patch+json")
    check(f"{label} edx PATCH 204", r.status_code == 204 and r.text == "", r.text)
    r = s.call("GET", f"{base}/alice", alice)
    check(f"{label} edx GET map", r.json() == {"pref-lang": "fr", "time_zone": "Europe/Paris", "n": "5"}, r.text)
    r = s.call("GET", f"{base}/alice/", alice)
    check(f"{label} edx GET trailing slash", r.status_code == 200 and r.json()["n"] == "5", r.text)
    r = s.call("PUT", f"{base}/alice/pref-lang", alice, "en")
    check(f"{label} edx PUT 204", r.status_code == 204)
    r = s.call("GET", f"{base}/alice/pref-lang", alice)
    check(f"{label} edx GET key", r.status_code == 200 and r.json() == "en", r.text)
    r = s.call("DELETE", f"{base}/alice/n", alice)
    check(f"{label} edx DELETE 204", r.status_code == 204)
    check(f"{label} edx DELETE missing 404", s.call("DELETE", f"{base}/alice/n", alice).status_code == 404)
    hidden, unknown = s.call("GET", f"{base}/alice", bob), s.call("GET", f"{base}/ghost", bob)
    check(f"{label} edx hidden user 404", hidden.status_code == 404 and hidden.text == unknown.text,
          hidden.text + unknown.text)
    check(f"{label} edx staff reads", s.call("GET", f"{base}/alice", stella).status_code == 200)
    r = s.call("PUT", f"{base}/alice/pref-lang", stella, "de")
    check(f"{label} edx staff write 403", r.status_code == 403 and "developer_message" in r.json(), r.text)
    check(f"{label} edx admin write", s.call("PUT", f"{base}/alice/pref-lang", ada, "de").status_code == 204)
    r = s.call("PATCH", f"{base}/alice", alice, {"a": "b"}, "application/json")
    check(f"{label} edx 415", r.status_code == 415, r.text)
    r = s.call("PATCH", f"{base}/alice", alice, {"!!": "x", "nul": "\u0000", "time_zone": "Mars/Base"},
               "application/merge-patch+json")
    check(f"{label} edx field_errors", r.status_code == 400 and set(r.json()["field_errors"]) == {"!!", "nul", "time_zone"},
          r.text)
    r = s.call("GET", f"{base}/alice")
    check(f"{label} edx 401", r.status_code == 401 and r.headers.get("WWW-Authenticate") == "Bearer", r.text)
    expired = token("alice", exp=int(time.time()) - 120)
    check(f"{label} edx expired 401", s.call("GET", f"{base}/alice", expired).status_code == 401)
    check(f"{label} edx state", s.call("GET", f"{base}/alice", alice).json() ==
          {"pref-lang": "de", "time_zone": "Europe/Paris"})


def records(s, label):
    alice = token("alice")
    base = "/api/v2/user/me/preference/"
    r = s.call("POST", base, alice, {"key": "layout", "value": {"cols": 2, "dense": None}})
    check(f"{label} records POST 201", r.status_code == 201 and r.headers.get("Location", "").endswith(
        f"/preference/{r.json()['id']}/"), r.text)
    record = r.json()
    check(f"{label} records shape", set(record) == {"id", "user_id", "key", "value", "created_at", "last_updated_at"},
          r.text)
    r = s.call("GET", base + "?limit=1", alice)
    page = r.json()
    check(f"{label} records page", page["count"] == 3 and len(page["results"]) == 1 and page["next"].startswith(
        "http://127.0.0.1:") and page["previous"] is None, r.text)
    r = s.call("PATCH", f"{base}{record['id']}/", alice, {"value": [1, 2]})
    check(f"{label} records PATCH", r.status_code == 200 and r.json()["value"] == [1, 2], r.text)
    r = s.call("POST", base, alice, {"key": "x", "value": None})
    check(f"{label} records null 400", r.status_code == 400 and r.json()["errors"][0]["field"] == "value", r.text)
    r = s.call("GET", f"/api/v2/user/{record['user_id']}/preference/{record['id']}/", token("bob"))
    check(f"{label} records other user 404", r.status_code == 404, r.text)
    edx_view = s.call("GET", "/api/user/v1/preferences/alice/layout", alice)
    check(f"{label} records visible in edx", edx_view.json() == "[1,2]", edx_view.text)
    check(f"{label} records DELETE", s.call("DELETE", f"{base}{record['id']}/", alice).status_code == 204)


def namespaces(s, label):
    rw = token("alice", scopes=["user:preferences:read", "user:preferences:write"], client="appA")
    check(f"{label} ns empty", s.call("GET", "/preferences/appA", rw).json() == {})
    check(f"{label} ns PUT", s.call("PUT", "/preferences/appA", rw, {"a": {"b": 1, "c": 2}}).status_code == 204)
    r = s.call("PATCH", "/preferences/appA", rw, {"a": {"c": None}, "d": True}, "application/merge-patch+json")
    check(f"{label} ns PATCH", r.status_code == 200 and r.json() == {"a": {"b": 1}, "d": True}, r.text)
    r = s.call("GET", "/preferences/appB", rw)
    check(f"{label} ns other client 403", r.status_code == 403 and
          r.headers["Content-Type"] == "application/vnd.api+json" and
          r.json()["errors"][0]["id"] == r.headers["Request-Id"], r.text)
    r = s.call("GET", "/preferences/global", rw)
    check(f"{label} ns global 404", r.status_code == 404, r.text)
    check(f"{label} ns not in edx", "a" not in s.call("GET", "/api/user/v1/preferences/alice", token("alice")).json())


def cli(binary, database_url, label):
    out = subprocess.run([binary, "migrate", "--database-url", database_url], capture_output=True, text=True,
                         timeout=60)
    check(f"{label} cli migrate", out.returncode == 0, out.stderr)
    out = subprocess.run([binary, "token", "--sub", "sub-carol", "--username", "carol", "--role", "staff",
                          "--ttl", "5m"], env={**os.environ, "PREFS_JWT_SECRET": SECRET},
                         capture_output=True, text=True, timeout=60)
    claims = jwt.decode(out.stdout.strip(), SECRET, algorithms=["HS256"])
    check(f"{label} cli token", claims["sub"] == "sub-carol" and claims["roles"] == ["staff"] and
          0 < claims["exp"] - time.time() <= 300, out.stdout)
    db = ["--database-url", database_url]
    out = subprocess.run([binary, "users", "add", "--subject", "sub-dora", "--username", "dora", *db],
                         capture_output=True, text=True, timeout=60)
    added = json.loads(out.stdout) if out.returncode == 0 else {}
    check(f"{label} cli users add", added.get("username") == "dora" and added.get("subject") == "sub-dora", out.stderr)
    return added


def users_export_and_remove(binary, database_url, server, label):
    """Export, remove (the right to be forgotten), export again; the service forgets the user too."""
    dora = token("dora", scopes=["user:preferences:read", "user:preferences:write"], client="appA")
    server.call("PUT", "/api/user/v1/preferences/dora/pref-lang", dora, "fr")
    server.call("PUT", "/preferences/appA", dora, {"theme": {"dark": True}})
    db = ["--database-url", database_url]
    run = lambda *args: subprocess.run([binary, "users", *args, *db], capture_output=True, text=True, timeout=60)
    out = run("export", "dora")
    exported = json.loads(out.stdout) if out.returncode == 0 else {}
    namespaces = exported.get("namespaces", {})
    check(f"{label} users export", exported.get("user", {}).get("username") == "dora" and
          namespaces.get("global", {}).get("pref-lang", {}).get("value") == "fr" and
          namespaces.get("appA", {}).get("theme", {}).get("value") == {"dark": True}, out.stdout + out.stderr)
    out = run("remove", "dora")
    check(f"{label} users remove", out.returncode == 0 and json.loads(out.stdout)["removed"]["username"] == "dora",
          out.stderr)
    out = run("export", "dora")
    check(f"{label} users export after remove fails", out.returncode != 0, out.stdout)
    check(f"{label} users remove twice fails", run("remove", "dora").returncode != 0)
    r = server.call("GET", "/preferences/appA", dora)
    check(f"{label} removed user starts afresh", r.status_code == 200 and r.json() == {}, r.text)


def refuses_without_key(binary, database_url, label):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFS_JWT")}
    out = subprocess.run([binary, "serve", "--bind", "127.0.0.1:0", "--database-url", database_url],
                         env=env, capture_output=True, text=True, timeout=60)
    check(f"{label} cli refuses to start without a key", out.returncode != 0 and "PREFS_JWT_SECRET" in out.stderr,
          out.stderr)


def json_logs(binary, database_url, label):
    """PREFS_LOG_FORMAT=json: every line is JSON, and each request has one access line with its id."""
    server = Server(binary, database_url, env={"PREFS_LOG_FORMAT": "json", "RUST_LOG": "info"})
    request_id = "9m4e2mr0ui3e8a215n4g"
    try:
        r = server.call("GET", "/api/user/v1/preferences/alice", token("alice"), headers={"Request-Id": request_id})
        check(f"{label} json logs: request answered", r.headers.get("Request-Id") == request_id, r.headers)
    finally:
        check(f"{label} json logs: SIGTERM exits 0", server.terminate() == 0)
    lines = [line for line in open(server.log_path).read().splitlines() if line.strip()]
    try:
        records = [json.loads(line) for line in lines]
    except ValueError as error:
        records = []
        check(f"{label} json logs: every line is JSON", False, f"{error}: {lines[:3]}")
    access = [r for r in records if r.get("fields", {}).get("request_id") == request_id]
    check(f"{label} json logs: one access line with the request id", len(access) == 1 and
          access[0]["fields"].get("status") == 200 and access[0]["fields"].get("method") == "GET", access)


def run_backend(binary, database_url, label):
    cli(binary, database_url, label)
    refuses_without_key(binary, database_url, label)
    json_logs(binary, database_url, label)
    server = Server(binary, database_url)
    try:
        edx(server, label)
        records(server, label)
        namespaces(server, label)
        users_export_and_remove(binary, database_url, server, label)
        r = requests.get(server.base + "/healthz", timeout=TIMEOUT)
        check(f"{label} healthz", r.status_code == 200 and len(r.headers.get("Request-Id", "")) == 20)
    finally:
        check(f"{label} SIGTERM exits 0", server.terminate() == 0)


def dev_mode(binary, label):
    with tempfile.TemporaryDirectory() as directory:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFS_JWT")}
        port = free_port()
        process = subprocess.Popen([binary, "--dev", "--bind", f"127.0.0.1:{port}", "--database-url",
                                    f"sqlite://{directory}/dev.db"], env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL, text=True)
        try:
            tokens = {}
            deadline = time.time() + 30
            while len(tokens) < 3 and time.time() < deadline:
                line = process.stdout.readline()
                if "export TOKEN_" in line:
                    name, value = line.split("export ")[1].strip().split("=", 1)
                    tokens[name] = value
            check(f"{label} --dev prints three tokens", len(tokens) == 3, str(tokens))
            base = f"http://127.0.0.1:{port}"
            r = requests.get(f"{base}/api/user/v1/preferences/demo",
                             headers={"Authorization": f"Bearer {tokens.get('TOKEN_DEMO')}"}, timeout=TIMEOUT)
            check(f"{label} --dev demo token works", r.status_code == 200, r.text)
            r = requests.get(f"{base}/preferences/demo-app",
                             headers={"Authorization": f"Bearer {tokens.get('TOKEN_DEMO')}"}, timeout=TIMEOUT)
            check(f"{label} --dev demo token reaches its client namespace", r.status_code == 200, r.text)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)


FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "crates", "prefs", "tests", "fixtures")


def jwks_file_on_sighup(binary, label):
    """A JWK set file is re-read on SIGHUP even when its size and time did not change (a
    provider's key moved to another `kid`): the old `kid` is refused, the new one accepted."""
    from jwt.algorithms import RSAAlgorithm
    with open(os.path.join(FIXTURES, "rs256-private.pem"), "rb") as f:
        private = f.read()
    public = jwt.algorithms.RSAAlgorithm(jwt.algorithms.RSAAlgorithm.SHA256).prepare_key(private).public_key()
    jwk = json.loads(RSAAlgorithm.to_jwk(public))

    def key_set(kid):
        return json.dumps({"keys": [{**jwk, "kid": kid, "alg": "RS512", "use": "sig"}]})

    def signed(kid):
        claims = {"sub": "sub-hup", "preferred_username": "hup", "exp": int(time.time()) + 600}
        return jwt.encode(claims, private, algorithm="RS512", headers={"kid": kid})

    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "jwks.json")
        with open(path, "w") as f:
            f.write(key_set("kid-a"))
        stamp = os.stat(path)
        server = Server(binary, f"sqlite://{directory}/hup.db", env={"PREFS_JWT_JWKS_FILE": path})
        try:
            status = lambda kid: server.call("GET", "/api/user/v1/preferences/hup", signed(kid)).status_code
            check(f"{label} JWK set file: its key signs", status("kid-a") == 200)
            with open(path, "w") as f:
                f.write(key_set("kid-b"))  # the same length
            os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
            time.sleep(2)
            check(f"{label} JWK set file: unchanged size and time, not re-read", status("kid-b") == 401)
            server.process.send_signal(signal.SIGHUP)
            deadline = time.time() + 5
            while time.time() < deadline and status("kid-b") != 200:
                time.sleep(0.1)
            check(f"{label} JWK set file: re-read on SIGHUP", status("kid-b") == 200)
            check(f"{label} JWK set file: the withdrawn kid is refused", status("kid-a") == 401)
            check(f"{label} SIGHUP leaves the server up", server.alive())
        finally:
            check(f"{label} SIGTERM after SIGHUP exits 0", server.terminate() == 0)


def main():
    binary = os.path.abspath(sys.argv[1])
    postgres_admin = sys.argv[2] if len(sys.argv) > 2 else None
    with tempfile.TemporaryDirectory() as directory:
        run_backend(binary, f"sqlite://{directory}/prefs.db", "sqlite")
    dev_mode(binary, "dev")
    jwks_file_on_sighup(binary, "keys")
    if check("postgres admin URL given", postgres_admin, "pass the URL tests/postgres.sh prints"):
        with scratch_postgres(postgres_admin) as url:
            run_backend(binary, url, "postgres")
    sys.exit(finish())


if __name__ == "__main__":
    main()
