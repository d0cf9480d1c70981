#!/usr/bin/env bash
# Load test of the REST API: `GET /api/v1/tasks?limit=50` and a task detail, with
# 10,000 tasks and 100,000 jobs (`pymap dev seed`), 64 connections for 30 s with wrk, on
# SQLite and on PostgreSQL. Prints Markdown tables for BENCHMARKS.md.
#
#   scripts/bench-api.sh [sqlite|postgres|both]      (default: both)
#
# Environment: TASKS (10000), JOBS_PER_TASK (10), CONNECTIONS (64), DURATION (30s),
# THREADS (2), ROUNDS (1: runs of every request, the summary gives medians), PYMAP_BIN
# (target/release/pymap, built when missing), BASELINE_BIN (another pymap binary, e.g. an
# older commit's: then every round runs both binaries one after the other on the same
# database, and the summary gives their ratio; the baseline must accept the same schema),
# BASELINE_ENV (VAR=value words set only for the baseline's server, e.g.
# `BASELINE_BIN=target/release/pymap BASELINE_ENV=PYMAP_DATABASE_MAX_CONNECTIONS=16`
# compares one setting side by side),
# and for PostgreSQL PYMAP_TEST_DATABASE_URL (a server URL whose user may create
# databases, as printed by `scripts/test.sh --services-only`). wrk comes from Debian
# (`apt-get install wrk`).
#
# Last, as a ceiling for this machine, nginx (Debian's, one worker, installed when root and
# missing) serves the task list's own response body, saved from the first server, as a static
# file to the same wrk command: what wrk, loopback TCP and HTTP cost here with no
# application behind them.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
which_backends="${1:-both}"
TASKS="${TASKS:-10000}"
JOBS_PER_TASK="${JOBS_PER_TASK:-10}"
CONNECTIONS="${CONNECTIONS:-64}"
DURATION="${DURATION:-30s}"
THREADS="${THREADS:-2}"
ROUNDS="${ROUNDS:-1}"
BIN="${PYMAP_BIN:-$root/target/release/pymap}"
BASELINE="${BASELINE_BIN:-}"
read -r -a BASELINE_VARS <<<"${BASELINE_ENV:-}"
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
    (cd "$root" && cargo build --release --locked --bin pymap)
fi
if [ -n "$BASELINE" ] && [ ! -x "$BASELINE" ]; then
    echo "BASELINE_BIN=$BASELINE is not an executable" >&2
    exit 1
fi

# How fast this machine's cores are right now, to compare runs made on different days:
# the same build has run at 3,767 and at 2,400 list requests/s on machines of the same
# kind. One core hashing with OpenSSL (MB/s of SHA-256 over 16 KiB blocks), nothing else
# running; higher is faster.
calibrate() {
    command -v openssl >/dev/null || { echo "?"; return; }
    openssl speed -seconds 3 -bytes 16384 sha256 2>/dev/null |
        awk '$1 == "sha256" { v = $NF; sub(/k$/, "", v); printf "%.0f", v / 1000 }'
}
calibration_before="$(calibrate)"

work="$(mktemp -d /tmp/pymap-bench.XXXXXX)"
server=""
cleanup() {
    if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# One line per measured run:
# backend|request|binary|req/s|p50 ms|p99 ms|errors|pymap CPU ms/req|database CPU ms/req
results="$work/results.txt"
: >"$results"

# CPU time (ticks) used so far by the given processes; vanished ones count 0.
cpu_ticks() {
    local total=0 pid fields
    for pid in "$@"; do
        fields="$(cut -d' ' -f14,15 "/proc/$pid/stat" 2>/dev/null)" || continue
        total=$(( total + ${fields% *} + ${fields#* } ))
    done
    echo "$total"
}

# wrk's latency ("850.00us", "12.34ms", "1.02s") in milliseconds.
to_ms() {
    awk -v t="$1" 'BEGIN {
        if (t ~ /us$/) { sub(/us$/, "", t); printf "%.2f", t / 1000 }
        else if (t ~ /ms$/) { sub(/ms$/, "", t); printf "%.2f", t }
        else if (t ~ /s$/) { sub(/s$/, "", t); printf "%.2f", t * 1000 }
        else print "?" }'
}

# wrk output → "req/s|p50|p99|errors"
summarise() {
    local out="$1"
    local rps p50 p99 non2xx sock
    rps="$(awk '/^Requests\/sec:/ {print $2}' "$out")"
    p50="$(awk '$1 == "50%" {print $2}' "$out")"
    p99="$(awk '$1 == "99%" {print $2}' "$out")"
    non2xx="$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")"
    sock="$(awk '/Socket errors:/ {gsub(",", ""); print $4 + $6 + $8 + $10}' "$out")"
    echo "${rps}|$(to_ms "$p50")|$(to_ms "$p99")|$(( ${non2xx:-0} + ${sock:-0} ))"
}

start_server() {
    local bin="$1" data="$2"
    shift 2
    env "$@" "$bin" serve >>"$data/server.log" 2>&1 &
    server=$!
    for _ in $(seq 1 100); do
        curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    echo "$bin did not become ready (log: $data/server.log)" >&2
    tail -n 20 "$data/server.log" >&2
    exit 1
}

stop_server() {
    kill "$server"
    wait "$server" 2>/dev/null || true
    server=""
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
    local auth="Authorization: Bearer $token"
    local binaries=("new=$BIN")
    [ -n "$BASELINE" ] && binaries+=("baseline=$BASELINE")
    local task=""
    for round in $(seq 1 "$ROUNDS"); do
        for entry in "${binaries[@]}"; do
            local label="${entry%%=*}" bin="${entry#*=}"
            local vars=()
            [ "$label" = baseline ] && vars=("${BASELINE_VARS[@]}")
            start_server "$bin" "$data" "${vars[@]}"
            if [ -z "$task" ]; then
                task="$(curl -fs -H "$auth" "http://127.0.0.1:$PORT/api/v1/tasks?limit=1" | grep -o '"id":[0-9]*' | head -n1 | cut -d: -f2)"
            fi
            if [ ! -s "$work/static/tasks.json" ]; then
                mkdir -p "$work/static"
                curl -fs -H "$auth" -o "$work/static/tasks.json" "http://127.0.0.1:$PORT/api/v1/tasks?limit=50"
            fi
            for target in "/api/v1/tasks?limit=50" "/api/v1/tasks/$task"; do
                local request="GET ${target}"
                [ "$target" = "/api/v1/tasks/$task" ] && request="GET /api/v1/tasks/{id}"
                echo "== $name, round $round, $label: $request" >&2
                # Warm-up, then the measured run.
                wrk -t"$THREADS" -c"$CONNECTIONS" -d3s -H "$auth" "http://127.0.0.1:$PORT$target" >/dev/null
                # CPU of pymap and of the PostgreSQL server processes over the measured
                # run, per request (what the 2 cores are spent on).
                local db_pids=()
                [ "$name" = postgres ] && mapfile -t db_pids < <(pgrep -x postgres || true)
                local app0 db0 app1 db1 requests
                app0="$(cpu_ticks "$server")"
                db0="$(cpu_ticks "${db_pids[@]}")"
                wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -H "$auth" \
                    "http://127.0.0.1:$PORT$target" | tee "$data/wrk.txt" >&2
                app1="$(cpu_ticks "$server")"
                [ "$name" = postgres ] && mapfile -t db_pids < <(pgrep -x postgres || true)
                db1="$(cpu_ticks "${db_pids[@]}")"
                requests="$(awk '/requests in/ {print $1}' "$data/wrk.txt")"
                local per_req
                per_req="$(awk -v a=$((app1 - app0)) -v d=$((db1 - db0)) -v n="${requests:-0}" -v hz="$(getconf CLK_TCK)" \
                    'BEGIN { if (n > 0) printf "%.3f|%.3f", a * 1000 / hz / n, d * 1000 / hz / n; else print "?|?" }')"
                echo "$name|$request|$label|$(summarise "$data/wrk.txt")|$per_req" >>"$results"
            done
            stop_server
        done
    done
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

# The ceiling: the same body, the same wrk command, nginx instead of pymap.
ceiling=""
if [ -s "$work/static/tasks.json" ]; then
    if ! command -v nginx >/dev/null && [ "$(id -u)" = 0 ]; then
        apt-get install -y nginx-light >/dev/null 2>&1 || apt-get install -y nginx >/dev/null
    fi
    nginx_bin="$(command -v nginx || echo /usr/sbin/nginx)"
    if [ -x "$nginx_bin" ]; then
        nport=$((PORT + 1))
        cat >"$work/nginx.conf" <<NGINX
worker_processes 1;
# The worker must read the private work directory (as root, nginx would switch to nobody).
user $(id -un);
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $work/nginx-tmp;
    server {
        listen 127.0.0.1:$nport;
        location = /tasks.json { root $work/static; default_type application/json; }
    }
}
NGINX
        "$nginx_bin" -c "$work/nginx.conf" -g 'daemon off;' &
        server=$!
        for _ in $(seq 1 50); do
            curl -fs -o /dev/null "http://127.0.0.1:$nport/tasks.json" && break
            sleep 0.1
        done
        # Fails the script (set -e) if nginx does not serve the file.
        cmp -s <(curl -fs "http://127.0.0.1:$nport/tasks.json") "$work/static/tasks.json"
        echo "== ceiling: nginx serving the list body ($(stat -c %s "$work/static/tasks.json") bytes) as a static file" >&2
        wrk -t"$THREADS" -c"$CONNECTIONS" -d3s "http://127.0.0.1:$nport/tasks.json" >/dev/null
        wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "http://127.0.0.1:$nport/tasks.json" | tee "$work/wrk-nginx.txt" >&2
        ceiling="$(summarise "$work/wrk-nginx.txt")"
        stop_server
    else
        echo "nginx is missing (apt-get install nginx-light): no ceiling" >&2
    fi
fi

calibration_after="$(calibrate)"
echo
echo "Machine: $(nproc) CPUs ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)); one core's SHA-256 speed (openssl speed, 16 KiB blocks) before / after the runs: ${calibration_before} / ${calibration_after} MB/s."
echo "$TASKS tasks, $((TASKS * JOBS_PER_TASK)) jobs; wrk -t$THREADS -c$CONNECTIONS -d$DURATION, bearer token of an admin (sees every task); $ROUNDS round(s)."
[ -n "$BASELINE" ] && echo "Baseline: $BASELINE${BASELINE_ENV:+ with $BASELINE_ENV}."
echo
echo "Every run:"
echo
echo "| database | request | binary | req/s | p50 ms | p99 ms | errors | pymap CPU ms/req | PostgreSQL CPU ms/req |"
echo "|---|---|---|---|---|---|---|---|---|"
awk -F'|' '{ printf "| %s | `%s` | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8, ($1 == "postgres" ? $9 : "–") }' "$results"
echo
echo "Medians over the rounds (errors: sum):"
echo
# Median of a column per (database, request, binary), then the ratio new / baseline.
awk -F'|' '
    function median(list,   n, a, i, j, t) {
        n = split(list, a, " ")
        if (n == 0 || a[1] == "?") return "?"
        for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > t + 0; j--) a[j + 1] = a[j]; a[j + 1] = t }
        return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    function cpu(key, bin, db) {
        return (db == "postgres") ? sprintf("%.3f + %.3f", median(app[key, bin]), median(dbc[key, bin])) : sprintf("%.3f", median(app[key, bin]))
    }
    {
        key = $1 "|" $2
        if (!(key in seen)) { seen[key] = 1; order[++k] = key }
        rps[key, $3] = rps[key, $3] " " $4; p50[key, $3] = p50[key, $3] " " $5
        p99[key, $3] = p99[key, $3] " " $6; err[key, $3] += $7; has[$3] = 1
        app[key, $3] = app[key, $3] " " $8; dbc[key, $3] = dbc[key, $3] " " $9
    }
    END {
        base = ("baseline" in has)
        head = "| database | request | req/s | p50 ms | p99 ms | errors | CPU ms/req (pymap + PostgreSQL)"
        rule = "|---|---|---|---|---|---|---"
        if (base) { head = head " | baseline req/s | baseline p99 ms | baseline CPU ms/req | req/s ratio"; rule = rule "|---|---|---|---" }
        print head " |"; print rule "|"
        for (i = 1; i <= k; i++) {
            key = order[i]; split(key, kk, "|")
            line = sprintf("| %s | `%s` | %.0f | %.1f | %.1f | %d | %s", kk[1], kk[2], median(rps[key, "new"]), median(p50[key, "new"]), median(p99[key, "new"]), err[key, "new"], cpu(key, "new", kk[1]))
            if (base) {
                b = median(rps[key, "baseline"])
                line = line sprintf(" | %.0f | %.1f | %s | %.2f×", b, median(p99[key, "baseline"]), cpu(key, "baseline", kk[1]), median(rps[key, "new"]) / b)
            }
            print line " |"
        }
    }' "$results"
if [ -n "$ceiling" ]; then
    IFS='|' read -r c_rps c_p50 c_p99 c_err <<<"$ceiling"
    echo
    echo "Ceiling: nginx (one worker) serving the list's own body as a static file, same wrk command: $c_rps req/s, p50 $c_p50 ms, p99 $c_p99 ms, $c_err errors."
fi
