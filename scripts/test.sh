#!/usr/bin/env bash
# pymap test runner: installs (when root and missing) and starts private, loopback-only
# PostgreSQL and Redis instances, checks for Dovecot/Chromium/chromedriver/openssl, runs the
# Rust test suite against them, and stops everything it started on exit (also on failure/Ctrl-C).
#
# Usage:
#   ./scripts/test.sh [--no-services | --services-only] [cargo test args...]
#
#   (no option)       start services, lint (when CI=true or PYMAP_LINT=1), run
#                     `cargo test --workspace --locked "$@"`, stop services.
#   --no-services     start/install nothing; run lint + tests against whatever the PYMAP_TEST_*
#                     variables already say.
#   --services-only   start services, print `export PYMAP_TEST_...=...` lines on stdout and wait
#                     until Ctrl-C (or SIGTERM), then stop everything.
#   -h, --help        this text.
#
# Environment:
#   CI=true           every service must be installable and startable, otherwise exit non-zero
#                     (never skip); also lints (cargo fmt --check, cargo clippy -D warnings).
#   PYMAP_LINT=1      lint even when not under CI.
#
# Exported to the tests:
#   PYMAP_TEST_DATABASE_URL   postgres://postgres@127.0.0.1:PORT/postgres (superuser, trust auth)
#   PYMAP_TEST_REDIS_URL      redis://127.0.0.1:PORT/
#   PYMAP_TEST_DOVECOT        path of the dovecot binary (the tests start private instances)
#   PYMAP_TEST_CHROMIUM       path of chromium
#   PYMAP_TEST_CHROMEDRIVER   path of chromedriver
#
# Messages go to stderr; only the `export` lines of --services-only go to stdout.

set -euo pipefail

# Dovecot and friends live in /usr/sbin, which a non-root PATH may lack.
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
export PATH

PROG="test.sh"
say() { printf '%s: %s\n' "$PROG" "$*" >&2; }
warn() { printf '%s: WARNING: %s\n' "$PROG" "$*" >&2; }
die() {
    printf '%s: ERROR: %s\n' "$PROG" "$*" >&2
    exit 1
}
usage() { sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0" >&2; }

case "${CI:-}" in
    true | TRUE | True | 1 | yes) IS_CI=1 ;;
    *) IS_CI=0 ;;
esac
IS_ROOT=0
if [ "$(id -u)" = 0 ]; then IS_ROOT=1; fi

# ---------------------------------------------------------------------------------------------
# Options (ours may appear anywhere before a `--`; everything else goes to cargo test).
MODE=normal
CARGO_ARGS=()
seen_dashdash=0
for arg in "$@"; do
    if [ "$seen_dashdash" = 0 ]; then
        case "$arg" in
            --no-services)
                [ "$MODE" = services-only ] && die "--no-services and --services-only exclude each other"
                MODE=no-services
                continue
                ;;
            --services-only)
                [ "$MODE" = no-services ] && die "--no-services and --services-only exclude each other"
                MODE=services-only
                continue
                ;;
            -h | --help)
                usage
                exit 0
                ;;
            --) seen_dashdash=1 ;;
        esac
    fi
    CARGO_ARGS+=("$arg")
done

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# ---------------------------------------------------------------------------------------------
# State and cleanup.
TMP=""
PG_BIN=""
PG_DATA=""
PG_PORT=""
PG_STARTED=0
REDIS_PORT=""
REDIS_PIDFILE=""
REDIS_STARTED=0
POLICY_RC=/usr/sbin/policy-rc.d
POLICY_RC_STATE=none # none | ours (ours installed, nothing to restore) | saved (original at $POLICY_RC_SAVED)
POLICY_RC_SAVED="$POLICY_RC.pymap-test-saved"
WAIT_PID=""

restore_policy_rc() {
    case "$POLICY_RC_STATE" in
        ours) rm -f "$POLICY_RC" ;;
        saved) mv -f "$POLICY_RC_SAVED" "$POLICY_RC" ;;
    esac
    POLICY_RC_STATE=none
}

stop_postgres() {
    [ "$PG_STARTED" = 1 ] || return 0
    PG_STARTED=0
    say "stopping PostgreSQL (port $PG_PORT)"
    if ! as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" stop -m immediate -w -t 30 >/dev/null 2>&1; then
        local pid
        pid="$(head -n1 "$PG_DATA/postmaster.pid" 2>/dev/null || true)"
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            warn "pg_ctl stop failed; killing postmaster $pid"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
}

stop_redis() {
    [ "$REDIS_STARTED" = 1 ] || return 0
    REDIS_STARTED=0
    say "stopping Redis (port $REDIS_PORT)"
    local pid i
    pid="$(cat "$REDIS_PIDFILE" 2>/dev/null || true)"
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
    if [ -n "$pid" ]; then
        for i in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            if [ "$i" = 50 ]; then
                warn "redis-server $pid did not stop; killing it"
                kill -KILL "$pid" 2>/dev/null || true
            fi
            sleep 0.1
        done
    fi
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    set +e
    if [ -n "$WAIT_PID" ]; then kill "$WAIT_PID" 2>/dev/null; fi
    restore_policy_rc
    stop_redis
    stop_postgres
    if [ -n "$TMP" ] && [ -d "$TMP" ]; then rm -rf "$TMP"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# A missing/unstartable service: fatal under CI, a warning otherwise.
unavailable() {
    local what="$1" why="$2" var="$3"
    if [ "$IS_CI" = 1 ]; then
        die "$what: $why (CI=true: refusing to skip)"
    fi
    if [ -n "$var" ] && [ -n "${!var:-}" ]; then
        warn "$what: $why; keeping $var=${!var} from the environment"
    else
        warn "$what: $why; tests that need it will be skipped"
    fi
}

# ---------------------------------------------------------------------------------------------
# Detection.
find_pg_bin() {
    local d best=""
    # Debian's versioned directories (the highest version wins), else whatever is on PATH.
    for d in /usr/lib/postgresql/*/bin; do
        if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ]; then
            best="$(printf '%s\n' "$best" "$d" | sort -V | tail -n1)"
        fi
    done
    if [ -z "$best" ] && command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        best="$(dirname "$(command -v pg_ctl)")"
    fi
    [ -n "$best" ] || return 1
    PG_BIN="$best"
}

pg_isready_bin() {
    if [ -x "$PG_BIN/pg_isready" ]; then
        echo "$PG_BIN/pg_isready"
    else
        command -v pg_isready
    fi
}

# Prints the path of an executable: the preferred path if given and executable, else from PATH.
find_exe() {
    local name="$1" preferred="${2:-}" p
    if [ -n "$preferred" ] && [ -x "$preferred" ] && [ -f "$preferred" ]; then
        echo "$preferred"
        return 0
    fi
    p="$(command -v "$name" 2>/dev/null)" || return 1
    [ -x "$p" ] && [ -f "$p" ] || return 1
    echo "$p"
}
find_dovecot() { find_exe dovecot; }
have_dovecot_imap() {
    find_dovecot >/dev/null || return 1
    # Debian splits the IMAP server (dovecot-imapd) from dovecot-core.
    [ -x /usr/lib/dovecot/imap ] || [ -x /usr/libexec/dovecot/imap ]
}
find_chromium() { find_exe chromium /usr/bin/chromium; }
find_chromedriver() { find_exe chromedriver /usr/bin/chromedriver; }

# Prints the Debian packages whose programs are missing.
missing_packages() {
    local m=()
    find_pg_bin || m+=(postgresql)
    { command -v redis-server && command -v redis-cli; } >/dev/null 2>&1 || m+=(redis-server)
    have_dovecot_imap || m+=(dovecot-imapd)
    find_chromium >/dev/null || m+=(chromium)
    find_chromedriver >/dev/null || m+=(chromium-driver)
    command -v openssl >/dev/null 2>&1 || m+=(openssl)
    if [ "${#m[@]}" -gt 0 ]; then echo "${m[*]}"; fi
}

install_packages() {
    local missing
    missing="$(missing_packages)"
    [ -n "$missing" ] || return 0
    if [ "$IS_ROOT" != 1 ]; then
        local msg="missing Debian packages: $missing (run as root to have them installed, or: sudo apt-get install --no-install-recommends $missing)"
        if [ "$IS_CI" = 1 ]; then die "$msg"; fi
        warn "$msg; continuing without them"
        return 0
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        local msg="missing packages: $missing, and no apt-get to install them"
        if [ "$IS_CI" = 1 ]; then die "$msg"; fi
        warn "$msg; continuing without them"
        return 0
    fi

    say "installing: $missing"
    # Keep package scripts from starting system services (there is no init system here,
    # and we run private instances anyway).
    if [ -e "$POLICY_RC" ]; then
        mv -f "$POLICY_RC" "$POLICY_RC_SAVED"
        POLICY_RC_STATE=saved
    else
        POLICY_RC_STATE=ours
    fi
    printf '#!/bin/sh\n# installed temporarily by pymap scripts/test.sh\nexit 101\n' >"$POLICY_RC"
    chmod 755 "$POLICY_RC"

    local ok=1
    local -a apt_opts=(-o DPkg::Lock::Timeout=600 -o Acquire::Retries=3)
    # shellcheck disable=SC2086 # $missing is a word list of package names
    if ! DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" -q update >&2; then
        ok=0
    elif ! DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" -q install -y \
        --no-install-recommends $missing >&2; then
        ok=0
    fi
    restore_policy_rc

    missing="$(missing_packages)"
    if [ "$ok" = 0 ] || [ -n "$missing" ]; then
        local msg="apt-get could not install everything${missing:+; still missing: $missing}"
        if [ "$IS_CI" = 1 ]; then die "$msg"; fi
        warn "$msg; continuing without them"
    fi
}

# ---------------------------------------------------------------------------------------------
# Ports: a random port in 20000-29999 (below Linux's ephemeral range) that nobody listens on.
USED_PORTS=" "
pick_port() {
    local p i
    for i in $(seq 1 200); do
        p=$((20000 + (RANDOM * 32768 + RANDOM) % 10000))
        case "$USED_PORTS" in *" $p "*) continue ;; esac
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            USED_PORTS="$USED_PORTS$p "
            PORT="$p"
            return 0
        fi
        : "$i"
    done
    return 1
}

# Runs a command as the PostgreSQL OS user (root can't run postgres), from a directory it can read.
as_pg() {
    if [ "$IS_ROOT" = 1 ]; then
        (cd "$TMP" && LC_ALL=C runuser -u postgres -- "$@")
    else
        (cd "$TMP" && LC_ALL=C "$@")
    fi
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL.
start_postgres() {
    if ! find_pg_bin; then
        unavailable PostgreSQL "initdb/pg_ctl not found (Debian package: postgresql)" PYMAP_TEST_DATABASE_URL
        return 0
    fi
    if [ "$IS_ROOT" = 1 ] && ! getent passwd postgres >/dev/null; then
        say "creating system user postgres"
        useradd --system --no-create-home --home-dir /var/lib/postgresql --shell /bin/sh postgres ||
            { unavailable PostgreSQL "no postgres OS user and useradd failed" PYMAP_TEST_DATABASE_URL; return 0; }
    fi

    local dir="$TMP/pg"
    PG_DATA="$dir/data"
    mkdir -p "$dir/sock"
    if [ "$IS_ROOT" = 1 ]; then chown -R postgres: "$dir"; fi

    if ! as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth=trust --encoding=UTF8 \
        --locale=C --no-sync >"$dir/initdb.log" 2>&1; then
        tail -n 20 "$dir/initdb.log" >&2
        unavailable PostgreSQL "initdb failed (log above)" PYMAP_TEST_DATABASE_URL
        return 0
    fi
    cat >>"$PG_DATA/postgresql.conf" <<EOF

# --- pymap scripts/test.sh: private, throw-away test cluster ---
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir/sock'
max_connections = 300
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
    cat >"$PG_DATA/pg_hba.conf" <<'EOF'
# pymap scripts/test.sh: trust on the private socket and 127.0.0.1 only
local all all trust
host  all all 127.0.0.1/32 trust
EOF

    local attempt
    for attempt in 1 2 3; do
        pick_port || break
        if as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$dir/postgres.log" -o "-p $PORT" -w -t 60 start \
            >"$dir/pg_ctl.log" 2>&1; then
            PG_PORT="$PORT"
            PG_STARTED=1
            break
        fi
        warn "PostgreSQL did not start on port $PORT (attempt $attempt):"
        cat "$dir/pg_ctl.log" >&2 2>/dev/null || true
        tail -n 10 "$dir/postgres.log" >&2 2>/dev/null || true
        # Make sure a half-started postmaster is gone before retrying.
        as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" stop -m immediate -w -t 10 >/dev/null 2>&1 || true
    done
    if [ "$PG_STARTED" != 1 ]; then
        unavailable PostgreSQL "could not start the server (log: $dir/postgres.log, removed on exit)" PYMAP_TEST_DATABASE_URL
        return 0
    fi

    local isready i
    isready="$(pg_isready_bin)"
    for i in $(seq 1 60); do
        if "$isready" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres; then break; fi
        if [ "$i" = 60 ]; then
            unavailable PostgreSQL "server on port $PG_PORT does not answer pg_isready" PYMAP_TEST_DATABASE_URL
            stop_postgres
            return 0
        fi
        sleep 0.5
    done
    export PYMAP_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
    say "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') ready: $PYMAP_TEST_DATABASE_URL"
}

# ---------------------------------------------------------------------------------------------
# Redis.
start_redis() {
    if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
        unavailable Redis "redis-server/redis-cli not found (Debian package: redis-server)" PYMAP_TEST_REDIS_URL
        return 0
    fi
    local dir="$TMP/redis"
    mkdir -p "$dir"
    REDIS_PIDFILE="$dir/redis.pid"

    local attempt i up
    for attempt in 1 2 3; do
        pick_port || break
        rm -f "$REDIS_PIDFILE"
        if redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no \
            --daemonize yes --pidfile "$REDIS_PIDFILE" --dir "$dir" \
            --logfile "$dir/redis.log" >"$dir/redis-start.log" 2>&1; then
            REDIS_PORT="$PORT"
            REDIS_STARTED=1 # so that cleanup stops it even if it isn't answering yet
            up=0
            for i in $(seq 1 100); do
                if [ "$(redis-cli -h 127.0.0.1 -p "$PORT" ping 2>/dev/null)" = PONG ]; then
                    up=1
                    break
                fi
                # The daemon exits early when it can't bind.
                if [ "$i" -gt 5 ] && ! { [ -s "$REDIS_PIDFILE" ] && kill -0 "$(cat "$REDIS_PIDFILE")" 2>/dev/null; }; then
                    break
                fi
                sleep 0.1
            done
            [ "$up" = 1 ] && break
            stop_redis
        fi
        warn "Redis did not start on port $PORT (attempt $attempt):"
        cat "$dir/redis-start.log" >&2 2>/dev/null || true
        tail -n 5 "$dir/redis.log" >&2 2>/dev/null || true
    done
    if [ "$REDIS_STARTED" != 1 ]; then
        unavailable Redis "could not start redis-server" PYMAP_TEST_REDIS_URL
        return 0
    fi
    export PYMAP_TEST_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/"
    say "Redis $(redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p') ready: $PYMAP_TEST_REDIS_URL"
}

# ---------------------------------------------------------------------------------------------
# Programs the Rust harness starts itself.
check_programs() {
    local p
    if have_dovecot_imap; then
        p="$(find_dovecot)"
        export PYMAP_TEST_DOVECOT="$p"
        say "Dovecot $("$p" --version 2>/dev/null | awk '{print $1}'): PYMAP_TEST_DOVECOT=$p"
    else
        unavailable Dovecot "dovecot with the IMAP server not found (Debian package: dovecot-imapd)" PYMAP_TEST_DOVECOT
    fi
    if p="$(find_chromium)"; then
        export PYMAP_TEST_CHROMIUM="$p"
        say "$("$p" --version 2>/dev/null | head -n1 || echo chromium): PYMAP_TEST_CHROMIUM=$p"
    else
        unavailable Chromium "chromium not found (Debian package: chromium)" PYMAP_TEST_CHROMIUM
    fi
    if p="$(find_chromedriver)"; then
        export PYMAP_TEST_CHROMEDRIVER="$p"
        say "$("$p" --version 2>/dev/null | awk '{print $1, $2}' || echo chromedriver): PYMAP_TEST_CHROMEDRIVER=$p"
    else
        unavailable chromedriver "chromedriver not found (Debian package: chromium-driver)" PYMAP_TEST_CHROMEDRIVER
    fi
    if command -v openssl >/dev/null 2>&1; then
        say "$(openssl version 2>/dev/null | awk '{print $1, $2}')"
    else
        unavailable openssl "openssl not found (Debian package: openssl)" ""
    fi
}

start_services() {
    install_packages
    TMP="$(mktemp -d /tmp/pymap-test.XXXXXX)"
    chmod 755 "$TMP"
    say "service state in $TMP"
    start_postgres
    start_redis
    check_programs
}

show_env() {
    local v
    for v in PYMAP_TEST_DATABASE_URL PYMAP_TEST_REDIS_URL PYMAP_TEST_DOVECOT \
        PYMAP_TEST_CHROMIUM PYMAP_TEST_CHROMEDRIVER; do
        if [ -n "${!v:-}" ]; then say "  $v=${!v}"; else say "  $v is not set"; fi
    done
}

# ---------------------------------------------------------------------------------------------
cd "$REPO_ROOT"

if [ "$MODE" = services-only ]; then
    [ "${#CARGO_ARGS[@]}" -eq 0 ] || die "--services-only takes no test arguments (got: ${CARGO_ARGS[*]})"
    start_services
    for v in PYMAP_TEST_DATABASE_URL PYMAP_TEST_REDIS_URL PYMAP_TEST_DOVECOT \
        PYMAP_TEST_CHROMIUM PYMAP_TEST_CHROMEDRIVER; do
        if [ -n "${!v:-}" ]; then printf 'export %s=%q\n' "$v" "${!v}"; fi
    done
    say "services are running; press Ctrl-C (or send SIGTERM to $$) to stop them"
    while :; do
        # `wait` (unlike a foreground sleep) returns as soon as a trapped signal arrives.
        sleep 3600 &
        WAIT_PID=$!
        wait "$WAIT_PID" || true
    done
fi

command -v cargo >/dev/null 2>&1 || die "cargo not found (install the Rust toolchain, see rust-toolchain.toml)"
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"

# Lint first: it needs no services and fails fast.
if [ "$IS_CI" = 1 ] || [ "${PYMAP_LINT:-0}" = 1 ]; then
    say "lint: cargo fmt --all --check"
    cargo fmt --all --check
    say "lint: cargo clippy --workspace --all-targets --locked -- -D warnings"
    cargo clippy --workspace --all-targets --locked -- -D warnings
fi

if [ "$MODE" = normal ]; then
    start_services
else
    say "--no-services: using the environment as it is"
fi
show_env

say "running: cargo test --workspace --locked ${CARGO_ARGS[*]}"
# Not `exec`: the EXIT trap must stop the services afterwards; it keeps cargo's exit status.
cargo test --workspace --locked "${CARGO_ARGS[@]}"

# The appliance proof (podman: image, compose, first start, a native-engine task through
# nginx, restart survival). Under CI it reuses the debug binary the tests just built
# instead of a 15-minute release build; its memory figures are then not the published ones
# (those come from a release build, see BENCHMARKS.md).
if [ "$MODE" = normal ] && { [ "$IS_CI" = 1 ] || [ "${PYMAP_APPLIANCE_TEST:-0}" = 1 ]; } \
    && [ ${#CARGO_ARGS[@]} -eq 0 ]; then
    say "appliance: scripts/appliance-test.sh"
    "$REPO_ROOT/scripts/appliance-test.sh" --binary "${CARGO_TARGET_DIR:-$REPO_ROOT/target}/debug/pymap"
fi
