#!/usr/bin/env bash
# The repository stands alone: a fresh clone must build, test and read without anything beside it.
# Fails (exit 1, printing the offending lines) when a tracked file refers to a path outside the
# repository or cites a document that is not in it; prints one OK line otherwise. Run by `make lint`.
#
#   tests/self_contained.sh              tracked files
#   tests/self_contained.sh --untracked  also files not yet added (ignored files stay out)
#
# Two checks, over every tracked text file but this script and the Cargo lock files:
#
# 1. Names that only exist outside the repository: the folder of shared material that build
#    machines keep beside the checkout (by relative path, by absolute path, or by its documents'
#    names), the build machines' own checkout paths, and citations of an outside contract document
#    (the word for it in capitals, or a numbered `spec_` name). The patterns below spell these with
#    a character class, so that this script names no outside path itself. The contract is
#    docs/contract.md: cite its sections as `docs/contract.md §3.1`.
#
# 2. Relative paths that climb above the repository root. Every token of a line that holds a `..`
#    path component (`../x`, `a/../../b`, `/../x`) is resolved from the directory it is relative to:
#    - Rust sources: the crate's directory (the nearest directory with a Cargo.toml), as for
#      `env!("CARGO_MANIFEST_DIR")`, `embed_migrations!`, build scripts and the working directory
#      of `cargo test`/`cargo run`; on a line with `include_str!`, `include_bytes!` or `#[path`, the
#      file's own directory;
#    - other files: the file's own directory (Markdown links, Cargo.toml paths, scripts), moved by
#      a `cd DIR` earlier on the same line (Makefile recipes: `cd tests/e2e && ... ../../target`).
#    The token fails when it climbs above the root on the way: from `crates/x`, `../../tests/data`
#    is the repository's own `tests/data`, `../../../anything` is outside. A line holding a string
#    that is a hostile value rather than a path (a `kid` of `../../../../dev/null` in a test) says so
#    with the marker `self-contained: not a path`, which exempts it from this check only.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"

scope=()
case "${1-}" in
    "") ;;
    --untracked) scope=(--untracked) ;;
    *) echo "usage: $0 [--untracked]" >&2; exit 2 ;;
esac
files=(-- . ':(exclude)tests/self_contained.sh' ':(exclude)*Cargo.lock')

# git grep, where "no match" is an empty answer rather than a failure.
search() {
    local status=0
    git grep "${scope[@]}" -n -I "$@" "${files[@]}" || status=$?
    if ((status > 1)); then
        echo "self_contained: git grep failed ($status)" >&2
        exit 2
    fi
}

failed=0

# 1. Names from outside the repository.
word='(^|[^A-Za-z0-9_])'
outside_names=$(search -E \
    -e '\.\./[s]hared' \
    -e '/work/([s]hared|[m]ain)' \
    -e "${word}[s]hared/(data|hooks|SPEC|STACK|STYLE|TESTING)" \
    -e "${word}SPEC(\$|[^A-Za-z0-9_])" \
    -e "${word}[Ss]pec_[0-9]")
if [[ -n $outside_names ]]; then
    echo "self_contained: references to files outside the repository (the contract is docs/contract.md):"
    printf '%s\n' "$outside_names"
    failed=1
fi

# 2. Relative paths that climb out of the repository.
crate_dirs=$({
    git ls-files -- '*Cargo.toml'
    if ((${#scope[@]})); then git ls-files --others --exclude-standard -- '*Cargo.toml'; fi
} | sed -e 's#/*Cargo\.toml$##' | sort -u)
climbing=$(search -E -e '\.\./' -e '/\.\.($|[^./A-Za-z0-9_])' | awk -v crates="$crate_dirs" '
    BEGIN {
        n = split(crates, list, "\n")
        for (i = 1; i <= n; i++) crate[list[i]] = 1
        crate[""] = 1
        token = "[-A-Za-z0-9_.@+%~$/]+"
    }
    function dir_of(path) {
        if (path !~ /\//) return ""
        sub(/\/[^\/]*$/, "", path)
        return path
    }
    function depth(dir,    parts, n, k, d) {
        n = split(dir, parts, "/")
        d = 0
        for (k = 1; k <= n; k++) if (parts[k] != "" && parts[k] != ".") d++
        return d
    }
    function crate_of(dir) {
        while (!(dir in crate)) dir = dir_of(dir)
        return dir
    }
    # Walks `tok` from a directory `base` levels below the root; sets `lowest` and `end`.
    function walk(tok, base,    parts, n, k) {
        n = split(tok, parts, "/")
        end = base
        lowest = base
        for (k = 1; k <= n; k++) {
            if (parts[k] == "..") { end--; if (end < lowest) lowest = end }
            else if (parts[k] != "" && parts[k] != ".") end++
        }
    }
    {
        i = index($0, ":"); path = substr($0, 1, i - 1); rest = substr($0, i + 1)
        i = index(rest, ":"); line = substr(rest, 1, i - 1); text = substr(rest, i + 1)
        if (text ~ /self-contained: not a path/) next
        dir = dir_of(path)
        base = depth(dir)
        from = (dir == "" ? "the repository root" : dir)
        if (path ~ /\.rs$/ && text !~ /include_str!|include_bytes!|#\[path/) {
            dir = crate_of(dir)
            base = depth(dir)
            from = "its crate, " (dir == "" ? "the repository root" : dir)
        }
        previous = ""
        s = text
        while (match(s, token)) {
            tok = substr(s, RSTART, RLENGTH)
            s = substr(s, RSTART + RLENGTH)
            if (tok ~ /\// && tok ~ /(^|\/)\.\.(\/|$)/) {
                walk(tok, base)
                if (lowest < 0) {
                    printf "%s:%s: %s is outside the repository (relative to %s)\n    %s\n", path, line, tok, from, text
                }
            }
            if (previous == "cd" && tok !~ /^[\/~$]/) {
                walk(tok, base)
                if (end >= 0) { base = end; from = from " after cd " tok }
            }
            previous = tok
        }
    }')
if [[ -n $climbing ]]; then
    echo "self_contained: relative paths that leave the repository:"
    printf '%s\n' "$climbing"
    failed=1
fi

if ((failed)); then
    exit 1
fi
echo "self_contained: OK, no tracked file refers to anything outside the repository"
