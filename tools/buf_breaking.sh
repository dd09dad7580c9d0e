#!/usr/bin/env bash
# `buf breaking` for `make lint`: protos/ as they are in the working tree against protos/ at the
# commit where this branch forked from main (on main itself: main before its last commit or
# merge, HEAD^1). The fork point, not
# main's tip: what main changed since is not this branch's doing, and a branch without a newer
# main's RPC would otherwise be told it deleted it. The newest fork point among the local main
# and every remote's main (refs/remotes/*/main) is used, so a clone where only origin/main
# exists, or where main has no upstream, or a worktree of a repository without remotes, all work.
# It never skips: without a main, or without the fork point (a shallow clone), it fails and
# says what to fetch. BREAKING_AGAINST=<git ref> compares with that commit instead.
# Usage: tools/buf_breaking.sh path/to/buf
set -euo pipefail
buf=$1
cd "$(dirname "$0")/.."

if [[ -n "${BREAKING_AGAINST:-}" ]]; then
    against=$BREAKING_AGAINST
    which="BREAKING_AGAINST=$against"
else
    mapfile -t mains < <(git for-each-ref --format='%(refname)' refs/heads/main 'refs/remotes/*/main')
    if [[ ${#mains[@]} -eq 0 ]]; then
        echo "buf breaking: no main branch here (neither refs/heads/main nor a remote's main) to" \
            "compare protos/ with: git fetch origin main:main, or set BREAKING_AGAINST=<git ref>" >&2
        exit 2
    fi
    names=$(printf '%s or ' "${mains[@]#refs/*/}")
    names=${names% or }
    # With several refs, merge-base gives the newest commit HEAD shares with any of them.
    if ! against=$(git merge-base HEAD "${mains[@]}"); then
        echo "buf breaking: HEAD shares no commit with $names (a shallow clone? git fetch" \
            "--unshallow), or set BREAKING_AGAINST=<git ref>" >&2
        exit 2
    fi
    which="where HEAD forked from $names"
    # On main itself the fork point is HEAD, which would compare protos/ with themselves: compare
    # with the first parent instead, main before its last commit or merge (what CI, which runs
    # on main, has not checked yet).
    if [[ "$(git rev-parse "$against")" == "$(git rev-parse HEAD)" ]]; then
        if ! against=$(git rev-parse --verify --quiet "HEAD^1"); then
            echo "buf breaking: HEAD is main's tip and its parent is not here (a shallow clone?" \
                "git fetch --unshallow), or set BREAKING_AGAINST=<git ref>" >&2
            exit 2
        fi
        which="main before its last commit or merge (HEAD^1)"
    fi
fi
if ! commit=$(git rev-parse --verify --quiet "${against}^{commit}"); then
    echo "buf breaking: BREAKING_AGAINST=$against is not a commit here" >&2
    exit 2
fi
echo "buf breaking: protos/ against $(git rev-parse --short "$commit"), $which"
exec "$buf" breaking --against ".git#ref=$commit"
