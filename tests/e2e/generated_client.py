#!/usr/bin/env python3
"""A Python client generated from the OpenAPI document (`openapi-python-client`), driven through
every operation against the release binary: successes and documented errors alike, each answer
parsed into the document's models. Proves the document is complete enough for generated clients:
every operation is generated, every error has its model.

usage: generated_client.py PATH_TO_PREFS [OPENAPI_JSON]
Ends with one line `N passed, N failed`.
"""

import importlib
import json
import os
import pkgutil
import re
import subprocess
import sys
import tempfile

from common import RW, Server, check, finish, token

HERE = os.path.dirname(os.path.abspath(__file__))
DOCUMENT = os.path.join(HERE, "..", "..", "openapi", "openapi.json")
PACKAGE = "prefs_client"


def generate(document, directory):
    """Generates the client into `directory` and makes it importable; returns the package."""
    output = os.path.join(directory, "generated")
    run = subprocess.run(["openapi-python-client", "generate", "--path", document, "--output-path", output,
                          "--meta", "none"], capture_output=True, text=True, timeout=300)
    report = run.stdout + run.stderr
    check("the client generates", run.returncode == 0, report[-3000:])
    check("the generator warns of nothing it left out", "Warning" not in report and "WARNING" not in report,
          report[-3000:])
    package = os.path.join(output)
    # openapi-python-client 0.29 types a body with several content types `... | Unset` without
    # importing `Unset` when the operation has no optional parameter (a Jinja scoping slip in its
    # endpoint template); the document is not at fault, so the import is added here.
    for root, _, files in os.walk(package):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(root, name)
            with open(path) as f:
                text = f.read()
            if re.search(r"\bUnset\b", text) and not re.search(r"import [^\n]*\bUnset\b", text):
                with open(path, "w") as f:
                    f.write(text.replace("from ...types import UNSET,", "from ...types import UNSET, Unset,", 1))
    sys.path.insert(0, directory)
    os.rename(output, os.path.join(directory, PACKAGE))
    return importlib.import_module(PACKAGE)


def operations(client_package):
    """Every generated operation module, by name."""
    api = importlib.import_module(f"{PACKAGE}.api")
    found = {}
    for tag in pkgutil.iter_modules(api.__path__):
        tag_package = importlib.import_module(f"{PACKAGE}.api.{tag.name}")
        for module in pkgutil.iter_modules(tag_package.__path__):
            found[module.name] = importlib.import_module(f"{PACKAGE}.api.{tag.name}.{module.name}")
    return found


def main():
    binary = os.path.abspath(sys.argv[1])
    document = os.path.abspath(sys.argv[2] if len(sys.argv) > 2 else DOCUMENT)
    with open(document) as f:
        operation_ids = {op["operationId"] for item in json.load(f)["paths"].values() for op in item.values()}
    with tempfile.TemporaryDirectory() as directory:
        package = generate(document, directory)
        ops = operations(package)
        check("every operation of the document is generated", set(ops) == operation_ids,
              f"missing {sorted(operation_ids - set(ops))}, extra {sorted(set(ops) - operation_ids)}")
        check(f"22 operations or more ({len(ops)})", len(ops) >= 22)
        server = Server(binary, f"sqlite://{directory}/prefs.db")
        try:
            drive(package, ops, server)
        finally:
            check("SIGTERM exits 0", server.terminate() == 0)
        called = set(CALLED)
        check("every operation was driven", called >= operation_ids, f"not driven: {sorted(operation_ids - called)}")
    sys.exit(finish())


CALLED = []


def drive(package, ops, server):
    models = importlib.import_module(f"{PACKAGE}.models")
    client_module = importlib.import_module(f"{PACKAGE}.client")
    UNSET = importlib.import_module(f"{PACKAGE}.types").UNSET
    alice = token("alice", (), RW, "appA")
    bob = token("bob")
    stella = token("stella", ["staff"], RW, "appA")

    def client_for(tok):
        return client_module.AuthenticatedClient(base_url=server.base, token=tok, raise_on_unexpected_status=True)

    as_alice, as_bob, as_stella = client_for(alice), client_for(bob), client_for(stella)
    anonymous = client_module.Client(base_url=server.base, raise_on_unexpected_status=True)
    bad_token = client_for("not-a-jwt")

    def call(name, status, model, *args, client=as_alice, **kwargs):
        """Calls operation `name`; checks the status and that the answer parsed as `model`."""
        CALLED.append(name)
        label = f"{name} {args} -> {status}"
        try:
            response = ops[name].sync_detailed(*args, client=client, **kwargs)
        except Exception as error:  # an unexpected status, or an answer that does not parse
            check(label, False, repr(error)[:1500])
            return None
        ok = check(label, int(response.status_code) == status, f"got {int(response.status_code)}: {response.content[:500]!r}")
        if ok and model is not None:
            check(f"{label} parses as {getattr(model, '__name__', model)}", isinstance(response.parsed, model),
                  f"{type(response.parsed)}: {response.parsed!r}"[:500])
        return response.parsed

    # bob exists, so that alice's view of him is the hidden-user 404.
    call("edx_get_all", 200, models.EdxGetAllResponse200, "bob", client=as_bob)

    # Open edX.
    patch = models.EdxPatch.from_dict({"pref-lang": "fr", "dark_mode": True, "old": None})
    call("edx_patch", 204, None, "alice", body=patch)
    prefs = call("edx_get_all", 200, models.EdxGetAllResponse200, "alice")
    check("Open edX stores True as Python does", prefs is not None and prefs.to_dict() == {"pref-lang": "fr", "dark_mode": "True"},
          repr(prefs))
    call("edx_put", 204, None, "alice", "time_zone", body="Europe/Paris")
    call("edx_put", 204, None, "alice", "layout", body=models.EdxValueType0.from_dict({"a": None}))
    value = call("edx_get_one", 200, str, "alice", "layout")
    check("a dict reads as its Python str", value == "{'a': None}", repr(value))
    errors = call("edx_patch", 400, models.EdxFieldErrors, "alice",
                  body=models.EdxPatch.from_dict({"time_zone": "Mars/Olympus"}))
    check("field_errors name the key", errors is not None and "time_zone" in errors.field_errors.to_dict(), repr(errors))
    call("edx_put", 400, models.EdxMessage, "alice", "k", body="a\u0000b")
    call("edx_put", 403, models.EdxMessage, "alice", "k", body="x", client=as_stella)
    call("edx_get_all", 404, models.EdxMessage, "bob")
    call("edx_get_all", 401, models.EdxMessage, "alice", client=bad_token)
    call("edx_get_one", 404, models.EdxMessage, "alice", "nope")
    call("edx_delete", 204, None, "alice", "time_zone")
    call("edx_delete", 404, models.EdxMessage, "alice", "time_zone")
    call("csrf_token", 200, models.CsrfToken, client=anonymous)

    # Records: JSON, url-encoded and multipart bodies.
    created = call("record_create", 201, models.Record, "me",
                   body=models.RecordBody(key="layout2", value=models.PreferenceJsonType0.from_dict({"columns": 2})))
    record_id = created.id if created is not None else 0
    call("record_create", 201, models.Record, "me", body=models.RecordForm(key="form", value='"dark"'))
    multipart = call("record_create", 201, models.Record, "me", body=models.RecordMultipart(key="multi", value="[1]"))
    check("a multipart value is read as JSON", multipart is not None and multipart.value == [1], repr(multipart))
    call("record_create", 400, models.RecordErrors, "me", body=models.RecordForm(key="bad", value="not json"))
    call("record_create", 400, models.RecordErrors, "me", body=models.RecordBody(key="layout2", value=1))
    call("record_create", 404, models.RecordErrors, "12345", body=models.RecordBody(key="x", value=1))
    page = call("record_list", 200, models.RecordPage, "me", limit="2")
    check("the page holds 2 of the records", page is not None and len(page.results) == 2, repr(page))
    page = call("record_list", 200, models.RecordPage, "me", key="form", search="nomatch")
    check("key and search both apply", page is not None and page.count == 0, repr(page))
    call("record_list", 401, models.RecordErrors, "me", client=bad_token)
    call("record_get", 200, models.Record, "me", record_id)
    call("record_get", 404, models.RecordErrors, "me", 999999)
    call("record_put", 200, models.Record, "me", record_id, body=models.RecordBody(key="layout3", value="x"))
    call("record_put", 200, models.Record, "me", record_id, body=models.RecordForm(key="layout4", value="true"))
    call("record_put", 400, models.RecordErrors, "me", record_id, body=models.RecordMultipart(key="layout4", value="nope"))
    call("record_patch", 200, models.Record, "me", record_id, body=models.RecordPatch(value=5))
    call("record_patch", 200, models.Record, "me", record_id, body=models.RecordFormPatch(value="6"))
    call("record_patch", 200, models.Record, "me", record_id, body=models.RecordMultipartPatch(key="layout5"))
    call("record_patch", 400, models.RecordErrors, "me", record_id, body=models.RecordFormPatch(key="form"))
    call("record_delete", 204, None, "me", record_id)
    call("record_delete", 404, models.RecordErrors, "me", record_id)

    # Client namespaces, unversioned and under PACE's base path.
    for suffix, version in (("", ()), ("_versioned", ("2025-1",))):
        body = models.NamespaceBody.from_dict({"app/theme": {"dark": True}, "größe": 1})
        call(f"namespace_put_all{suffix}", 204, None, *version, "appA", body=body)
        namespace = call(f"namespace_get_all{suffix}", 200, None, *version, "appA")
        check(f"namespace{suffix} reads back", namespace is not None and namespace.to_dict() == {"app/theme": {"dark": True}, "größe": 1},
              repr(namespace))
        merged = call(f"namespace_patch{suffix}", 200, None, *version, "appA",
                      body=models.NamespaceBody.from_dict({"größe": None, "n": 18446744073709551616}))
        check(f"namespace{suffix} merges", merged is not None and merged.to_dict() == {"app/theme": {"dark": True}, "n": 18446744073709551616},
              repr(merged))
        call(f"namespace_put_one{suffix}", 204, None, *version, "appA", "a b", body="dark")
        call(f"namespace_get_one{suffix}", 200, None, *version, "appA", "a b")
        call(f"namespace_get_one{suffix}", 404, models.JsonApiErrors, *version, "appA", "missing")
        call(f"namespace_put_one{suffix}", 413, models.JsonApiErrors, *version, "appA", "k" * 256, body=1)
        call(f"namespace_get_all{suffix}", 403, models.JsonApiErrors, *version, "appB")
        call(f"namespace_get_all{suffix}", 401, models.JsonApiErrors, *version, "appA", client=bad_token)
        call(f"namespace_put_all{suffix}", 403, models.JsonApiErrors, *version, "appA", user_id=1,
             body=models.NamespaceBody.from_dict({}), client=as_stella)
        call(f"namespace_patch{suffix}", 404, models.JsonApiErrors, *version, "global", body=models.NamespaceBody.from_dict({}))
        call(f"namespace_delete_one{suffix}", 204, None, *version, "appA", "a b")
        call(f"namespace_delete_one{suffix}", 403, models.JsonApiErrors, *version, "appA", "a b", user_id=1, client=as_stella)
        call(f"namespace_delete_all{suffix}", 204, None, *version, "appA")
        call(f"namespace_delete_all{suffix}", 404, models.JsonApiErrors, *version, "appA", user_id=424242)
    check("UNSET is the generator's", UNSET is not None)

    # Operations.
    call("ops_healthz", 200, models.Status, client=anonymous)
    call("ops_readyz", 200, models.Status, client=anonymous)
    call("ops_metrics", 200, None, client=anonymous)
    call("ops_openapi", 200, models.OpsOpenapiResponse200, client=anonymous)


if __name__ == "__main__":
    main()
