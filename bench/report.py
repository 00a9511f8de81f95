#!/usr/bin/env python3
"""The report of bench/run.sh: the results table with ratios and the targets of issue 6.

    python3 bench/report.py RESULTS_TSV META_ENV [--markdown BENCHMARKS.md]

Prints the report (Markdown) and, with --markdown, replaces the part of that file between the
`<!-- bench:results:start -->` and `<!-- bench:results:end -->` markers (creating the file or the
markers when missing), so the hand-written text around it stays.
"""

import argparse
import collections
import sys

START = "<!-- bench:results:start -->"
END = "<!-- bench:results:end -->"

READS = ("edx_get", "record_get", "ns_get")
WRITES = ("edx_patch", "ns_patch")
NAMES = {
    "edx_get": "edX GET map",
    "edx_patch": "edX PATCH 3 keys",
    "record_get": "record GET by id",
    "ns_get": "namespace GET",
    "ns_patch": "namespace PATCH 3 keys",
}
ORDER = ("edx_get", "edx_patch", "record_get", "ns_get", "ns_patch")
READ_SHARE = {"sqlite": 0.50, "postgres": 0.35}


def number(text):
    try:
        return float(text)
    except ValueError:
        return None


def load(path):
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            kind, backend, users, scenario, rps, p50, p99, rss, startup, errors = line.rstrip("\n").split("\t")
            rows.append(
                {
                    "kind": kind,
                    "backend": backend,
                    "users": int(users) if users != "-" else None,
                    "scenario": scenario,
                    "rps": float(rps),
                    "p50": float(p50),
                    "p99": float(p99),
                    "rss": number(rss),
                    "startup": number(startup),
                    "errors": int(float(errors)),
                }
            )
    return rows


def meta(path):
    out = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            key, _, value = line.rstrip("\n").partition("=")
            out[key] = value
    return out


def ms(us):
    return f"{us / 1000:.2f}"


def ratio(value):
    return "–" if value is None else f"{value:.2f}"


def report(rows, info):
    ceiling = {r["scenario"]: r for r in rows if r["kind"] == "ceiling"}
    engine = collections.defaultdict(dict)  # (backend, users) -> op -> best row
    for r in rows:
        if r["kind"] == "engine":
            op = r["scenario"].split("-")[0]
            best = engine[(r["backend"], r["users"])].get(op)
            if best is None or r["rps"] > best["rps"]:
                engine[(r["backend"], r["users"])][op] = r
    prefs = [r for r in rows if r["kind"] == "prefs"]
    backends = {"sqlite": 0, "postgres": 1}
    prefs.sort(key=lambda r: (r["users"], backends.get(r["backend"], 9),
                              ORDER.index(r["scenario"]) if r["scenario"] in ORDER else 9))

    out = []
    label = info.get("label")
    out.append(f"Run of {info.get('date', '?')} on {info.get('nproc', '?')} cores ({info.get('cpu', '?')}), "
               f"{info.get('memory', '?')}, Linux {info.get('kernel', '?')}; prefs at {info.get('commit', '?')}.")
    out.append("")
    out.append(f"Command: `{info.get('command', 'bench/run.sh')}` (`make bench` runs `bench/run.sh`).")
    out.append("")
    out.append(f"Load average (1, 5, 15 min) at start {info.get('load_start', '?')}, at end {info.get('load_end', '?')}."
               + (f" **{label}**" if label else ""))
    out.append("")
    out.append(f"Each figure: {info.get('duration', '?')} s of wrk {info.get('wrk', '')} ({info.get('connections', '?')} "
               f"connections, 1 thread, core {info.get('client_cpu', '?')}) after {info.get('warmup', '?')} s of warm-up; "
               f"servers, PostgreSQL and the engine baseline on core {info.get('server_cpu', '?')}; requests spread over "
               f"min(users, {info.get('tokens', '?')}) users.")
    out.append("")
    out.append("| backend | users | scenario | req/s | × ceiling | × engine | p50 ms | p99 ms | p99 × ceiling | RSS MB | start ms | errors |")
    out.append("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    checks = []  # (target, ok, detail)
    for r in prefs:
        c = ceiling.get(r["scenario"])
        op = "write" if r["scenario"] in WRITES else "read"
        e = engine.get((r["backend"], r["users"]), {}).get(op)
        r["x_ceiling"] = r["rps"] / c["rps"] if c else None
        r["x_engine"] = r["rps"] / e["rps"] if e else None
        r["p99_x"] = r["p99"] / c["p99"] if c and c["p99"] else None
        out.append(
            f"| {r['backend']} | {r['users']:,} | {NAMES.get(r['scenario'], r['scenario'])} | {r['rps']:,.0f} | "
            f"{ratio(r['x_ceiling'])} | {ratio(r['x_engine'])} | {ms(r['p50'])} | {ms(r['p99'])} | {ratio(r['p99_x'])} | "
            f"{(r['rss'] or 0) / 1024:.1f} | {r['startup'] if r['startup'] is not None else '–'} | {r['errors']} |"
        )
    out.append("")
    out.append("× ceiling: prefs' req/s over the framework ceiling's for the same scenario; × engine: over the storage "
               "engine's own rate for the same work (reads: the point select of one user's preferences; PATCHes: the "
               "3-key upsert transaction), best of 1 and 8 connections.")
    out.append("")

    out.append("Framework ceiling (bench/ceiling: token verified, body read, fixed answer of the size prefs gives):")
    out.append("")
    out.append("| scenario | req/s | p50 ms | p99 ms | RSS MB | start ms | errors |")
    out.append("|---|---:|---:|---:|---:|---:|---:|")
    for scenario in ORDER:
        c = ceiling.get(scenario)
        if c:
            out.append(f"| {NAMES[scenario]} | {c['rps']:,.0f} | {ms(c['p50'])} | {ms(c['p99'])} | "
                       f"{(c['rss'] or 0) / 1024:.1f} | {c['startup']} | {c['errors']} |")
    out.append("")
    out.append("Storage engine alone (bench/tools engine, pinned to the server core; ops/s with 1 and 8 connections):")
    out.append("")
    out.append("| backend | users | point select x1 | x8 | p99 ms (best) | 3-key upsert txn x1 | x8 | p99 ms (best) |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for (backend, users) in sorted(engine, key=lambda k: (k[1], backends.get(k[0], 9))):
        by = {r["scenario"]: r for r in rows if r["kind"] == "engine" and r["backend"] == backend and r["users"] == users}

        def rate(name):
            return f"{by[name]['rps']:,.0f}" if name in by else "–"

        best = engine[(backend, users)]
        out.append(
            f"| {backend} | {users:,} | {rate('read-1')} | {rate('read-8')} | "
            f"{ms(best['read']['p99']) if 'read' in best else '–'} | {rate('write-1')} | {rate('write-8')} | "
            f"{ms(best['write']['p99']) if 'write' in best else '–'} |"
        )
    out.append("")

    # Targets.
    def check(name, items):
        """items: (ok, detail) for every measured case; the target is met when all are."""
        items = list(items)
        if not items:
            checks.append((name, None, "not measured"))
            return
        misses = [d for ok, d in items if not ok]
        checks.append((name, not misses, "; ".join(misses) if misses else f"all {len(items)} cases"))

    check("reads ≥ 50% of the ceiling's req/s on SQLite, ≥ 35% on PostgreSQL",
          ((r["x_ceiling"] >= READ_SHARE[r["backend"]],
            f"{r['backend']} {r['users']:,} {r['scenario']} {r['x_ceiling']:.2f}")
           for r in prefs if r["scenario"] in READS and r["x_ceiling"] is not None and r["backend"] in READ_SHARE))
    check("writes ≥ 50% of the storage engine's rate for the same transaction",
          ((r["x_engine"] >= 0.5, f"{r['backend']} {r['users']:,} {r['scenario']} {r['x_engine']:.2f}")
           for r in prefs if r["scenario"] in WRITES and r["x_engine"] is not None))
    check("p99 ≤ 3 × the ceiling's p99",
          ((r["p99_x"] <= 3, f"{r['backend']} {r['users']:,} {r['scenario']} {r['p99_x']:.1f}×")
           for r in prefs if r["p99_x"] is not None))
    check("server RSS < 64 MB",
          ((r["rss"] is not None and r["rss"] < 64 * 1024,
            f"{r['backend']} {r['users']:,} {r['scenario']} {(r['rss'] or 0) / 1024:.1f} MB") for r in prefs))
    check("start to first answer < 200 ms",
          ((r["startup"] is not None and r["startup"] < 200,
            f"{r['backend']} {r['users']:,} {r['scenario']} {r['startup']} ms") for r in prefs))
    sizes = sorted({r["users"] for r in prefs})
    if len(sizes) >= 2:
        small, large = sizes[0], sizes[-1]
        pairs = []
        index = {(r["backend"], r["users"], r["scenario"]): r for r in prefs}
        for r in prefs:
            if r["users"] != small or (r["backend"], large, r["scenario"]) not in index:
                continue
            big = index[(r["backend"], large, r["scenario"])]
            rps = big["rps"] / r["rps"]
            p99 = big["p99"] / r["p99"] if r["p99"] else 1
            pairs.append((rps >= 0.8 and p99 <= 1.2,
                          f"{r['backend']} {r['scenario']} req/s {rps:.2f}×, p99 {p99:.2f}×"))
        check(f"{large:,}-user figures within 20% of the {small:,}-user ones (req/s ≥ 0.8×, p99 ≤ 1.2×)", pairs)
    else:
        checks.append(("1,000,000-user figures within 20% of the 1,000-user ones", None, "one size measured"))
    errors = sum(r["errors"] for r in rows if r["kind"] in ("prefs", "ceiling"))

    out.append("Targets (issue 6):")
    out.append("")
    out.append("| target | result | cases missed (or checked) |")
    out.append("|---|---|---|")
    for name, ok, detail in checks:
        result = "n/a" if ok is None else ("met" if ok else "**missed**")
        out.append(f"| {name} | {result} | {detail} |")
    out.append("")
    if errors:
        out.append(f"**{errors} requests failed** (non-2xx answers, timeouts or socket errors): see the errors column.")
        out.append("")
    return "\n".join(out)


def update_markdown(path, body):
    section = f"{START}\n{body}\n{END}"
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        text = "# Benchmarks\n\n" + section + "\n"
    else:
        if START in text and END in text:
            head, _, rest = text.partition(START)
            _, _, tail = rest.partition(END)
            text = head + section + tail
        else:
            text = text.rstrip("\n") + "\n\n## Results\n\n" + section + "\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results")
    parser.add_argument("meta")
    parser.add_argument("--markdown")
    args = parser.parse_args()
    body = report(load(args.results), meta(args.meta))
    print(body)
    if args.markdown:
        update_markdown(args.markdown, body)
        print(f"(written to {args.markdown})", file=sys.stderr)


if __name__ == "__main__":
    main()
