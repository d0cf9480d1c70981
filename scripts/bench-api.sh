#!/usr/bin/env bash
# Load test of the REST API: `GET /api/v1/tasks?limit=50` and a task detail, with
# 10,000 tasks and 100,000 jobs (`pymap dev seed`), 64 connections for 30 s with wrk, on
# SQLite and on PostgreSQL. Prints a Markdown table for BENCHMARKS.md.
#
#   scripts/bench-api.sh [sqlite|postgres|both]      (default: both)
#
# Environment: TASKS (10000), JOBS_PER_TASK (10), CONNECTIONS (64), DURATION (30s),
# THREADS (2), PYMAP_BIN (target/release/pymap, built when missing), and for PostgreSQL
# PYMAP_TEST_DATABASE_URL (a server URL whose user may create databases, as printed by
# `scripts/test.sh --services-only`). wrk comes from Debian (`apt-get install wrk`).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
which_backends="${1:-both}"
TASKS="${TASKS:-10000}"
JOBS_PER_TASK="${JOBS_PER_TASK:-10}"
CONNECTIONS="${CONNECTIONS:-64}"
DURATION="${DURATION:-30s}"
THREADS="${THREADS:-2}"
BIN="${PYMAP_BIN:-$root/target/release/pymap}"
PORT="${PORT:-18777}"

if ! command -v wrk >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        apt-get install -y wrk >/dev/null
    else
        echo "wrk is missing: apt-get install wrk" >&2
        exit 1
    fi
fi
if [ ! -x "$BIN" ]; then
    (cd "$root" && cargo build --release)
fi

work="$(mktemp -d /tmp/pymap-bench.XXXXXX)"
server=""
cleanup() {
    if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

rows=()

# wrk output → "req/s | p50 | p99 | errors"
summarise() {
    local out="$1"
    local rps p50 p99 non2xx sock
    rps="$(awk '/^Requests\/sec:/ {print $2}' "$out")"
    p50="$(awk '$1 == "50%" {print $2}' "$out")"
    p99="$(awk '$1 == "99%" {print $2}' "$out")"
    non2xx="$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")"
    sock="$(awk '/Socket errors:/ {gsub(",", ""); print $4 + $6 + $8 + $10}' "$out")"
    echo "${rps} | ${p50} | ${p99} | $(( ${non2xx:-0} + ${sock:-0} ))"
}

run_backend() {
    local name="$1" url="$2"
    local data="$work/$name"
    mkdir -p "$data"
    export PYMAP_DATA_DIR="$data" PYMAP_DATABASE_URL="$url"
    export PYMAP_ADMIN_PASSWORD="bench-admin-password" PYMAP_LISTEN="127.0.0.1:$PORT"
    echo "== $name: seeding $TASKS tasks × $JOBS_PER_TASK jobs" >&2
    local token
    token="$("$BIN" dev seed --tasks "$TASKS" --jobs-per-task "$JOBS_PER_TASK" --token-for admin 2>"$data/seed.log")"
    tail -n1 "$data/seed.log" >&2
    "$BIN" serve >"$data/server.log" 2>&1 &
    server=$!
    for _ in $(seq 1 100); do
        curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
        sleep 0.2
    done
    local auth="Authorization: Bearer $token"
    local task
    task="$(curl -fs -H "$auth" "http://127.0.0.1:$PORT/api/v1/tasks?limit=1" | grep -o '"id":[0-9]*' | head -n1 | cut -d: -f2)"
    for target in "/api/v1/tasks?limit=50" "/api/v1/tasks/$task"; do
        local label="GET ${target}"
        [ "$target" = "/api/v1/tasks/$task" ] && label="GET /api/v1/tasks/{id}"
        echo "== $name: $label" >&2
        # Warm-up, then the measured run.
        wrk -t"$THREADS" -c"$CONNECTIONS" -d3s -H "$auth" "http://127.0.0.1:$PORT$target" >/dev/null
        wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -H "$auth" \
            "http://127.0.0.1:$PORT$target" | tee "$data/wrk.txt" >&2
        rows+=("| $name | \`$label\` | $(summarise "$data/wrk.txt") |")
    done
    kill "$server"
    wait "$server" 2>/dev/null || true
    server=""
}

case "$which_backends" in
    sqlite | both) run_backend sqlite "sqlite://$work/sqlite/pymap.db" ;;
esac
case "$which_backends" in
    postgres | both)
        if [ -z "${PYMAP_TEST_DATABASE_URL:-}" ]; then
            echo "PYMAP_TEST_DATABASE_URL is not set: skipping PostgreSQL (see scripts/test.sh --services-only)" >&2
        else
            db="pymap_bench_$(date +%s)"
            psql "$PYMAP_TEST_DATABASE_URL" -qc "CREATE DATABASE $db" >/dev/null
            run_backend postgres "${PYMAP_TEST_DATABASE_URL%/*}/$db"
            psql "$PYMAP_TEST_DATABASE_URL" -qc "DROP DATABASE $db" >/dev/null || true
        fi
        ;;
esac

echo
echo "$TASKS tasks, $((TASKS * JOBS_PER_TASK)) jobs; wrk -t$THREADS -c$CONNECTIONS -d$DURATION, bearer token of an admin (sees every task)."
echo
echo "| database | request | req/s | p50 | p99 | errors |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
