#!/usr/bin/env python3
"""An Open edX micro-frontend's calls to prefs in a real browser: Debian's headless Chromium,
driven by Playwright, opens a page served from another origin than prefs'. The page uses Open
edX's own frontend library (`@edx/frontend-platform`'s auth module, bundled by esbuild from
tests/e2e/edx_frontend/), configured as a micro-frontend configures it, to PATCH and then GET the
user's preferences through the JWT cookie pair (set in the browser for prefs' host, as the LMS
sets them), the CSRF token API and CORS. A page on an origin prefs does not list cannot.

Two origins on one machine: prefs on 127.0.0.1:P1, the listed page on 127.0.0.1:P2 and the
unlisted one on 127.0.0.1:P3. Cookies ignore ports, so both pages can read the header-and-payload
cookie (as an MFE on apps.example.com reads the LMS's `.example.com` cookie), and the pages are
same-site with prefs: prefs runs with PREFS_CSRF_COOKIE_SAMESITE=lax and
PREFS_CSRF_COOKIE_SECURE=false (plain HTTP).

usage: edx_frontend.py [PATH_TO_PREFS] [PATH_TO_CHROMIUM]
       (defaults: target/release/prefs, /usr/bin/chromium; the bundle must have been built:
       `cd tests/e2e/edx_frontend && npm ci && npm run build`, as `make test-edx-frontend` does)
Talks to 127.0.0.1 only, every wait is bounded, and a watchdog ends the run after DEADLINE seconds.
Ends with one line `N passed, N failed`; exits 1 if anything failed.
"""

import http.server
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import traceback
from urllib.parse import urlsplit

import requests
from playwright.sync_api import sync_playwright

from common import CHROMIUM_ARGS, Server, check, finish, free_port, results, token, watchdog

USER = "mfeuser"
HERE = os.path.dirname(os.path.abspath(__file__))
PAGE_DIR = os.path.join(HERE, "edx_frontend")
TIMEOUT_MS = 15_000  # any single browser wait
DEADLINE = 110  # the whole run, in seconds


class PageServer:
    """The micro-frontend's own origin: serves tests/e2e/edx_frontend/ and a stand-in for the
    LMS's token refresh endpoint, which counts its calls and answers 401 (the JWT cookie is valid,
    so the library must not need it)."""

    def __init__(self):
        self.refresh_calls = 0
        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=PAGE_DIR, **kwargs)

            def do_POST(self):  # noqa: N802: http.server's naming
                if self.path == "/login_refresh":
                    outer.refresh_calls += 1
                self.send_response(401)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.port = free_port()
        self.origin = f"http://127.0.0.1:{self.port}"
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def log_lines(server, method, path):
    """The access-log lines of `method path` (status included), from prefs' log."""
    with open(server.log_path, errors="replace") as f:
        text = re.sub(r"\x1b\[[0-9;]*m", "", f.read())
    return [line for line in text.splitlines()
            if f"method={method}" in line and f"path={path}" in line]


def run_page(context, page_server, prefs_base, patch, console):
    """Opens the page of `page_server` and runs the micro-frontend's calls; returns what it saw,
    and the page (open: the headers of its requests are read from it)."""
    page = context.new_page()
    page.on("console", lambda msg: msg.type == "error" and console.append(f"console: {msg.text}"))
    page.on("pageerror", lambda err: console.append(f"pageerror: {err}"))
    response = page.goto(f"{page_server.origin}/index.html", wait_until="load", timeout=TIMEOUT_MS)
    check(f"{page_server.origin}/index.html is 200", response is not None and response.status == 200,
          response and response.status)
    page.wait_for_function("window.pageReady === true", timeout=TIMEOUT_MS)
    seen = page.evaluate(
        "args => window.runPrefs(args)",
        {"prefsBase": prefs_base, "username": USER, "refreshEndpoint": f"{page_server.origin}/login_refresh",
         "patch": patch})
    return seen, page


def run(binary, chromium):
    tmp = tempfile.mkdtemp(prefix="prefs-edx-frontend-")
    server, listed, unlisted = None, None, None
    try:
        listed, unlisted = PageServer(), PageServer()
        server = Server(binary, f"sqlite://{tmp}/prefs.db", log_dir=tmp, env={
            "PREFS_JWT_COOKIES": "true",
            "PREFS_CORS_ORIGINS": listed.origin,
            "PREFS_CSRF_COOKIE_SAMESITE": "lax",
            "PREFS_CSRF_COOKIE_SECURE": "false",
            "RUST_LOG": "info",  # the access log shows the preflights, which Playwright does not
        })
        base = server.base
        bearer = {"Authorization": f"Bearer {token(USER)}"}
        print(f"prefs on {base}; the listed page on {listed.origin}, the unlisted one on {unlisted.origin}",
              flush=True)
        r = requests.patch(f"{base}/api/user/v1/preferences/{USER}", data='{"seed": "1"}', timeout=10,
                           headers={**bearer, "Content-Type": "application/merge-patch+json"})
        check("seed preference written", r.status_code == 204, r.status_code)

        # The LMS's cookies for prefs' host: the header and payload readable by pages, the
        # signature HTTP-only.
        header_payload, signature = token(USER).rsplit(".", 1)
        cookies = [
            {"name": "edx-jwt-cookie-header-payload", "value": header_payload, "url": base,
             "sameSite": "Lax"},
            {"name": "edx-jwt-cookie-signature", "value": signature, "url": base, "httpOnly": True,
             "sameSite": "Lax"},
        ]
        requests_seen, console = [], []
        with sync_playwright() as p:
            context = p.chromium.launch_persistent_context(
                os.path.join(tmp, "profile"), executable_path=chromium, headless=True,
                args=CHROMIUM_ARGS, chromium_sandbox=False)
            try:
                context.set_default_timeout(TIMEOUT_MS)
                context.add_cookies(cookies)
                context.on("request", lambda req: requests_seen.append(req))

                # The listed origin: write, read, and read a validation error.
                seen, page = run_page(context, listed, base, {"pref-lang": "fr", "time_zone": "Europe/Paris"},
                                      console)
                print(f"listed page saw: {json.dumps(seen)[:1500]}", flush=True)
                check("the library's PATCH is 204", seen.get("patch", {}).get("status") == 204, seen.get("patch"))
                check("the page reads the PATCH's ETag (exposed)", bool(seen.get("patch", {}).get("etag")),
                      seen.get("patch"))
                got = seen.get("get", {})
                check("the library's GET is 200", got.get("status") == 200, got)
                check("the GET shows what the PATCH wrote",
                      got.get("data") == {"seed": "1", "pref-lang": "fr", "time_zone": "Europe/Paris"}, got)
                check("the page reads ETag and Request-Id", bool(got.get("etag")) and bool(got.get("requestId")),
                      got)
                invalid = seen.get("invalid", {}).get("error") or {}
                check("a 400 reaches the page with its field_errors",
                      invalid.get("status") == 400
                      and "time_zone" in ((invalid.get("data") or {}).get("field_errors") or {}), invalid)
                check("the library never needed the refresh endpoint", listed.refresh_calls == 0,
                      listed.refresh_calls)
                check("the library logged no error", not [m for m in seen.get("logged", []) if
                                                          m.startswith("error")], seen.get("logged"))

                # What the browser sent.
                to_prefs = [r for r in requests_seen if r.url.startswith(base)]
                csrf = [r for r in to_prefs if urlsplit(r.url).path == "/csrf/api/v1/token"]
                check("the library fetched a CSRF token from prefs", len(csrf) >= 1,
                      [f"{r.method} {r.url}" for r in to_prefs])
                patches = [r for r in to_prefs if r.method == "PATCH"]
                check("the browser sent two PATCHes", len(patches) == 2, len(patches))
                for r in patches[:1]:
                    headers = r.all_headers()
                    check("the PATCH carried X-CSRFToken (the API's masked token)",
                          len(headers.get("x-csrftoken", "")) == 64, headers)
                    check("the PATCH carried USE-JWT-COOKIE", "use-jwt-cookie" in headers, headers)
                    check("the PATCH carried no Authorization header", "authorization" not in headers, headers)
                    check("the PATCH carried the cookies",
                          "edx-jwt-cookie-signature=" in headers.get("cookie", "")
                          and "csrftoken=" in headers.get("cookie", ""), headers.get("cookie"))
                jar = {c["name"]: c for c in context.cookies(base)}
                check("the browser kept prefs' csrftoken cookie", "csrftoken" in jar, sorted(jar))
                for method, path in (("OPTIONS", "/csrf/api/v1/token"), ("OPTIONS", f"/api/user/v1/preferences/{USER}"),
                                     ("GET", "/csrf/api/v1/token"), ("PATCH", f"/api/user/v1/preferences/{USER}")):
                    lines = log_lines(server, method, path)
                    check(f"prefs served {method} {path}", any("status=204" in l or "status=200" in l for l in lines),
                          lines)
                # The browser reports the deliberate 400 in the console; nothing else may be there.
                unexpected = [c for c in console if "status of 400" not in c]
                check("no other console error on the listed page", not unexpected, console)
                page.close()

                # The unlisted origin: same cookies, same library, but CORS refuses it.
                before = requests.get(f"{base}/api/user/v1/preferences/{USER}", headers=bearer, timeout=10).json()
                patches_before = len(log_lines(server, "PATCH", f"/api/user/v1/preferences/{USER}"))
                seen, page = run_page(context, unlisted, base, {"pref-lang": "de"}, [])
                page.close()
                print(f"unlisted page saw: {json.dumps(seen)[:1500]}", flush=True)
                for step in ("patch", "get"):
                    error = seen.get(step, {}).get("error") or {}
                    check(f"the unlisted page's {step.upper()} fails without an answer it can read",
                          error.get("type") in ("api-request-error", None) and not error.get("status")
                          and "status" not in seen.get(step, {}), seen.get(step))
                after = requests.get(f"{base}/api/user/v1/preferences/{USER}", headers=bearer, timeout=10).json()
                check("the unlisted page changed nothing", after == before, (before, after))
                check("the unlisted page's PATCH never reached prefs",
                      len(log_lines(server, "PATCH", f"/api/user/v1/preferences/{USER}")) == patches_before)
            finally:
                context.close()
    except Exception as err:  # noqa: BLE001: a crash is a failure with its story
        traceback.print_exc()
        check("the run completed", False, f"{type(err).__name__}: {err}")
    finally:
        for page_server in (listed, unlisted):
            if page_server is not None:
                page_server.close()
        if server is not None:
            server.kill()
            if results["failed"]:
                print("--- prefs log (tail) ---\n" + server.log_tail(40), flush=True)
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/prefs"
    chromium = sys.argv[2] if len(sys.argv) > 2 else "/usr/bin/chromium"
    bundle = os.path.join(PAGE_DIR, "dist", "page.js")
    for what, path in (("prefs", binary), ("chromium", chromium)):
        if not os.access(path, os.X_OK):
            check(f"{what} is at {path}", False)
            return finish()
    if not os.path.exists(bundle):
        check(f"the page is bundled at {bundle} (npm ci && npm run build)", False)
        return finish()
    started = time.time()
    watchdog(DEADLINE)
    run(binary, chromium)
    print(f"took {time.time() - started:.1f} s", flush=True)
    return finish()


if __name__ == "__main__":
    sys.exit(main())
