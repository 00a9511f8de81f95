#!/usr/bin/env python3
"""The docs page in a real browser: Debian's headless Chromium, driven by Playwright (no browser
download: Playwright launches /usr/bin/chromium), opens `prefs serve`'s Swagger UI at /docs/ and
checks that every request the page makes stays on 127.0.0.1 and succeeds, that the console shows
no error, that every operation of /openapi.json is listed, and that "Try it out" works against the
same server once authorized with a bearer token minted here.

usage: docs_ui.py [PATH_TO_PREFS] [PATH_TO_CHROMIUM] [SCREENSHOT_PNG]
       (defaults: target/release/prefs, /usr/bin/chromium, /tmp/docs.png)
Talks to 127.0.0.1 only, every wait is bounded, and a watchdog ends the run after DEADLINE seconds.
Ends with one line `N passed, N failed`; exits 1 if anything failed.
"""

import os
import shutil
import sys
import tempfile
import time
import traceback
from urllib.parse import urlsplit

import requests
from playwright.sync_api import sync_playwright

from common import CHROMIUM_ARGS, Server, check, finish, results, token, watchdog

USER = "docsuser"
TIMEOUT_MS = 15_000  # any single browser wait
DEADLINE = 110  # the whole run, in seconds
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
def normalize(text):
    return " ".join((text or "").split())


def spec_operations(spec):
    ops = []
    for path, item in spec.get("paths", {}).items():
        for method, op in item.items():
            if method in HTTP_METHODS:
                ops.append((method, path, op))
    return ops


def opblock(page, method, path):
    """The operation block of METHOD PATH (Swagger UI marks the path with data-path)."""
    return page.locator(f".opblock.opblock-{method}").filter(
        has=page.locator(f'.opblock-summary-path[data-path="{path}"]'))


def try_it_out(page, method, path, params, token_value):
    """Expands an operation, switches it to "Try it out", fills PARAMS, executes it and returns
    (status text shown in the live response, response body shown, the browser's request)."""
    block = opblock(page, method, path)
    block.locator(".opblock-summary").first.click()
    block.locator(".opblock-body").wait_for(timeout=TIMEOUT_MS)
    button = block.locator("button.try-out__btn")
    if button.count() and button.first.inner_text().strip().lower() == "try it out":
        button.first.click()
    for name, value in params.items():
        field = block.locator(f'tr[data-param-name="{name}"] input')
        field.fill(value)
    execute = block.locator("button.execute")
    execute.wait_for(timeout=TIMEOUT_MS)
    with page.expect_response(lambda r: urlsplit(r.url).path == path.format(**params), timeout=TIMEOUT_MS) as info:
        execute.click()
    browser_response = info.value
    live = block.locator(".live-responses-table tbody tr.response .response-col_status")
    live.first.wait_for(timeout=TIMEOUT_MS)
    status = live.first.inner_text().strip()
    body = block.locator(".live-responses-table tbody tr.response .response-col_description").first.inner_text()
    request_url = block.locator(".request-url").first.inner_text() if block.locator(".request-url").count() else ""
    return status, body, browser_response, request_url


def run(binary, chromium, screenshot):
    tmp = tempfile.mkdtemp(prefix="prefs-docs-")
    server = None
    try:
        server = Server(binary, f"sqlite://{tmp}/prefs.db", log_dir=tmp)
        base = server.base
        origin = urlsplit(base).netloc
        spec = requests.get(base + "/openapi.json", timeout=10).json()
        operations = spec_operations(spec)
        print(f"prefs on {base}; /openapi.json has {len(operations)} operations", flush=True)
        check("the spec has operations", len(operations) > 0)

        # Something to read back through the page, written here over plain HTTP.
        tok = token(USER)
        r = requests.patch(f"{base}/api/user/v1/preferences/{USER}", data='{"pref-lang": "fr"}', timeout=10,
                           headers={"Authorization": f"Bearer {tok}",
                                    "Content-Type": "application/merge-patch+json"})
        check("seed preference written", r.status_code == 204, r.status_code)

        requests_seen, failures, bad_status, console_errors = [], [], [], []
        with sync_playwright() as p:
            context = p.chromium.launch_persistent_context(
                os.path.join(tmp, "profile"), executable_path=chromium, headless=True,
                args=CHROMIUM_ARGS, viewport={"width": 1280, "height": 900}, chromium_sandbox=False)
            try:
                context.set_default_timeout(TIMEOUT_MS)
                context.on("request", lambda req: requests_seen.append(req.url))
                context.on("requestfailed", lambda req: failures.append(f"{req.url} {req.failure}"))
                context.on("response", lambda resp: resp.status >= 400 and bad_status.append(
                    f"{resp.status} {resp.url}"))
                page = context.pages[0] if context.pages else context.new_page()
                page.on("console", lambda msg: msg.type == "error" and console_errors.append(
                    f"console: {msg.text} @ {msg.location}"))
                page.on("pageerror", lambda err: console_errors.append(f"pageerror: {err}"))

                # The page and what it loads.
                started = time.time()
                response = page.goto(base + "/docs/", wait_until="networkidle", timeout=TIMEOUT_MS)
                check("GET /docs/ is 200", response is not None and response.status == 200,
                      response and response.status)
                page.locator(".opblock").first.wait_for(timeout=TIMEOUT_MS)
                page.wait_for_function(
                    "n => document.querySelectorAll('.opblock').length >= n", arg=len(operations),
                    timeout=TIMEOUT_MS)
                print(f"operations rendered in {time.time() - started:.1f} s", flush=True)
                loaded = {urlsplit(u).path for u in requests_seen}
                for asset in ("/docs/swagger-ui.css", "/docs/swagger-ui-bundle.js",
                              "/docs/swagger-ui-standalone-preset.js", "/docs/swagger-initializer.js",
                              "/openapi.json"):
                    check(f"the page loaded {asset}", asset in loaded, sorted(loaded))
                check("Swagger UI shows the API title",
                      normalize(spec["info"]["title"]) in normalize(page.locator(".info .title").first.inner_text()),
                      page.locator(".info .title").first.inner_text())
                check("no spec error box", page.locator(".errors-wrapper").count() == 0,
                      page.locator(".errors-wrapper").all_inner_texts())
                check("no validator badge", page.locator(".validator-badge, img[src*='validator']").count() == 0)

                # Every operation is listed, once.
                blocks = page.locator(".opblock")
                check("one operation block per operation", blocks.count() == len(operations),
                      f"{blocks.count()} blocks, {len(operations)} operations")
                shown = set()
                for i in range(blocks.count()):
                    block = blocks.nth(i)
                    method = normalize(block.locator(".opblock-summary-method").first.inner_text()).lower()
                    path = block.locator(".opblock-summary-path").first.get_attribute("data-path")
                    shown.add((method, path))
                expected = {(m, p_) for m, p_, _ in operations}
                check("the listed operations are exactly the spec's", shown == expected,
                      f"missing {sorted(expected - shown)}, extra {sorted(shown - expected)}")
                for method, path, op in operations:
                    if not op.get("summary"):
                        continue
                    block = opblock(page, method, path)
                    text = normalize(block.locator(".opblock-summary-description").first.inner_text()) \
                        if block.count() else ""
                    check(f"{method.upper()} {path} shows its summary",
                          normalize(op["summary"]).rstrip(".")[:60] in text, f"shown: {text!r}")
                tags = {t for _, _, op in operations for t in op.get("tags", [])}
                for tag in sorted(tags):
                    check(f"tag section {tag!r}",
                          page.locator(f'.opblock-tag[data-tag="{tag}"]').count() == 1)

                # Authorize with a bearer token through the dialog.
                page.locator(".auth-wrapper button.authorize").first.click()
                dialog = page.locator(".dialog-ux .modal-ux")
                dialog.wait_for(timeout=TIMEOUT_MS)
                dialog.locator(".auth-container input").first.fill(tok)
                dialog.locator(".auth-btn-wrapper button.authorize").first.click()
                logout = dialog.locator(".auth-btn-wrapper button", has_text="Logout")
                logout.wait_for(timeout=TIMEOUT_MS)
                check("the Authorize dialog accepted the token",
                      logout.count() == 1 and dialog.locator("h6", has_text="Authorized").count() == 1)
                dialog.locator("button.btn-done, button.close-modal").first.click()
                dialog.wait_for(state="detached", timeout=TIMEOUT_MS)
                check("the Authorize button shows locked",
                      page.locator(".auth-wrapper button.authorize.locked").count() == 1)

                # Try it out: an authenticated read, then an operational endpoint.
                path = "/api/user/v1/preferences/{username}"
                status, body, resp, request_url = try_it_out(page, "get", path, {"username": USER}, tok)
                check(f"Try it out GET {path} shows 200", status == "200", f"shown {status!r}, body {body[:300]!r}")
                check("the browser sent the bearer token",
                      resp.request.headers.get("authorization") == f"Bearer {tok}",
                      resp.request.headers.get("authorization"))
                check("the request went to the same server", urlsplit(resp.url).netloc == origin, resp.url)
                check("the live response is the real one", resp.status == 200 and "pref-lang" in body
                      and '"fr"' in body, f"{resp.status} {body[:300]!r}")
                check("the request URL shown is the server's", f"{base}/api/user/v1/preferences/{USER}"
                      in request_url, request_url)
                status, body, resp, _ = try_it_out(page, "get", "/healthz", {}, tok)
                check("Try it out GET /healthz shows 200", status == "200" and '"ok"' in body,
                      f"shown {status!r}, body {body[:300]!r}")

                page.wait_for_load_state("networkidle", timeout=TIMEOUT_MS)
                page.screenshot(path=screenshot, full_page=True, timeout=TIMEOUT_MS)
                print(f"screenshot: {screenshot}", flush=True)
            finally:
                context.close()

        outside = [u for u in requests_seen
                   if urlsplit(u).scheme not in ("data", "blob") and urlsplit(u).netloc != origin]
        print(f"the page made {len(requests_seen)} requests", flush=True)
        check("every request went to 127.0.0.1 (no CDN, no validator)", not outside, outside)
        check("no failed request", not failures, failures)
        check("no response with status >= 400", not bad_status, bad_status)
        check("no console error", not console_errors, console_errors)
    except Exception as err:  # noqa: BLE001: a crash is a failure with its story
        traceback.print_exc()
        check("the run completed", False, f"{type(err).__name__}: {err}")
    finally:
        if server is not None:
            server.kill()
            if results["failed"]:
                print("--- prefs log (tail) ---\n" + server.log_tail(40), flush=True)
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/prefs"
    chromium = sys.argv[2] if len(sys.argv) > 2 else "/usr/bin/chromium"
    screenshot = sys.argv[3] if len(sys.argv) > 3 else "/tmp/docs.png"
    for what, path in (("prefs", binary), ("chromium", chromium)):
        if not os.access(path, os.X_OK):
            check(f"{what} is at {path}", False)
            return finish()
    started = time.time()
    watchdog(DEADLINE)
    run(binary, chromium, screenshot)
    print(f"took {time.time() - started:.1f} s", flush=True)
    return finish()


if __name__ == "__main__":
    sys.exit(main())
