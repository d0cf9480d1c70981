#!/usr/bin/env bash
# Entrypoint of the pymap appliance image (container/Dockerfile).
#
# On first start: initialise the PostgreSQL cluster in /data/postgres with a role and a
# database for pymap (generated password), a Redis password, pymap's secret key and a
# self-signed TLS certificate (unless one is mounted at /etc/pymap/tls). On every start:
# check that /data is writable and consistent, fix ownership, write the run-time configs,
# then exec supervisord (supervisord.conf), which runs PostgreSQL, Redis, pymap and nginx.
#
# With arguments it prepares nothing and runs them instead (`docker run IMAGE pymap --help`).
#
# Layout of /data (the volume):
#   postgres/            PostgreSQL 15 cluster                         postgres 0700
#   redis/               Redis snapshot (sessions, login throttling)   redis    0700
#   secrets/             database-url, redis-url (pymap 0600), redis-password (root 0600)
#   tls/                 generated certificate and key                 root     0700
#   .secret              pymap's secret key                            pymap    0600
#   initial-admin-password, logs/, run/    written by pymap itself
#   .appliance           layout version of this directory
#
# Secrets are generated with openssl into 0600 files and reach programs through files
# (PYMAP_*_FILE, Redis' config file), never through a command line or the environment.

set -euo pipefail
umask 077

readonly DATA=/data
readonly PG_BIN=/usr/lib/postgresql/15/bin
readonly PG_MAJOR=15
readonly PGDATA="$DATA/postgres"
readonly SECRETS="$DATA/secrets"
readonly RUN_DIR=/run/pymap
readonly LAYOUT=1
# The bundled services' URL files, as the image's ENV names them.
readonly BUNDLED_DB_URL_FILE="$SECRETS/database-url"
readonly BUNDLED_REDIS_URL_FILE="$SECRETS/redis-url"

log() { printf 'entrypoint: %s\n' "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

if [ "$#" -gt 0 ]; then
    exec "$@"
fi

[ "$(id -u)" = 0 ] || die "must start as root (it hands each program its own user)"

# Writes stdin to FILE atomically with the given owner and mode 0600.
write_private() {
    local file="$1" owner="$2" tmp
    tmp="$(mktemp "$file.XXXXXX")"
    cat >"$tmp"
    chown "$owner" "$tmp"
    chmod 0600 "$tmp"
    mv -f "$tmp" "$file"
}

random_hex() { openssl rand -hex "$1"; }

# --- /data is there, writable and ours ------------------------------------------------------
check_data() {
    [ -d "$DATA" ] || die "$DATA is missing (the image declares it as a volume)"
    local probe="$DATA/.write-test.$$"
    if ! : >"$probe" 2>/dev/null; then
        die "$DATA is not writable (read-only mount, or a full disk?)"
    fi
    rm -f "$probe"
    if [ -f "$DATA/.appliance" ]; then
        local layout
        layout="$(cat "$DATA/.appliance")"
        [ "$layout" = "$LAYOUT" ] ||
            die "$DATA has layout version '$layout'; this image knows version $LAYOUT"
    elif [ -n "$(ls -A "$DATA")" ] && [ ! -d "$PGDATA" ] && [ ! -f "$DATA/.secret" ]; then
        log "note: $DATA is not empty and has no pymap files yet; adding ours beside them"
    fi
    # pymap writes its secret key, logs and job files here; the services only traverse it.
    chown pymap:pymap "$DATA"
    chmod 0711 "$DATA"
    install -d -o root -g root -m 0711 "$SECRETS"
    local d
    for d in logs run; do
        if [ -e "$DATA/$d" ] && [ "$(stat -c %U "$DATA/$d")" != pymap ]; then
            log "giving $DATA/$d back to pymap"
            chown -R pymap:pymap "$DATA/$d"
        fi
    done
    local f
    for f in "$DATA/.secret" "$DATA/initial-admin-password" "$BUNDLED_DB_URL_FILE" \
        "$BUNDLED_REDIS_URL_FILE"; do
        if [ -e "$f" ]; then
            chown pymap:pymap "$f"
            chmod 0600 "$f"
        fi
    done
}

# --- which services are bundled -------------------------------------------------------------
# A URL given in the environment would clash with the image's *_FILE variable (pymap
# refuses both), so an external service is named by a file, e.g. a mounted secret.
decide_services() {
    if [ -n "${PYMAP_DATABASE_URL:-}" ]; then
        die "PYMAP_DATABASE_URL is set, but this image passes the database as PYMAP_DATABASE_URL_FILE; put the URL of an external database in a file (e.g. a mounted secret) and set PYMAP_DATABASE_URL_FILE to its path instead"
    fi
    if [ -n "${PYMAP_REDIS_URL:-}" ]; then
        die "PYMAP_REDIS_URL is set, but this image passes Redis as PYMAP_REDIS_URL_FILE; put the URL of an external Redis in a file and set PYMAP_REDIS_URL_FILE to its path instead"
    fi
    APPLIANCE_POSTGRESQL=false
    APPLIANCE_REDIS=false
    if [ "${PYMAP_DATABASE_URL_FILE:-}" = "$BUNDLED_DB_URL_FILE" ]; then
        APPLIANCE_POSTGRESQL=true
    else
        log "PYMAP_DATABASE_URL_FILE=${PYMAP_DATABASE_URL_FILE:-} names an external database: the bundled PostgreSQL stays off"
    fi
    if [ "${PYMAP_REDIS_URL_FILE:-}" = "$BUNDLED_REDIS_URL_FILE" ]; then
        APPLIANCE_REDIS=true
    else
        log "PYMAP_REDIS_URL_FILE=${PYMAP_REDIS_URL_FILE:-} names an external Redis (or none): the bundled Redis stays off"
    fi
    export APPLIANCE_POSTGRESQL APPLIANCE_REDIS
}

# --- PostgreSQL -----------------------------------------------------------------------------
init_postgres() {
    local staging="$PGDATA.init" password out
    # A first start that died half-way left only the staging directory: start over.
    rm -rf "$staging"
    install -d -o postgres -g postgres -m 0700 "$staging"
    log "first start: creating the PostgreSQL $PG_MAJOR cluster in $PGDATA"
    # Local connections as OS user postgres only; pymap logs in over 127.0.0.1 with a
    # password (scram-sha-256). initdb's output lists no secret. --no-sync skips its
    # file-by-file fsync (seconds); one syncfs below makes the finished cluster durable
    # before it is moved into place.
    (cd / && runuser -u postgres -- "$PG_BIN/initdb" -D "$staging" --username=postgres \
        --auth-local=peer --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 \
        --data-checksums --no-sync >/dev/null)
    printf "\n# pymap appliance settings (shipped with the image)\ninclude '/etc/pymap/postgresql.conf'\n" \
        >>"$staging/postgresql.conf"
    printf '%s\n' '# pymap appliance: the postgres OS user locally, pymap over loopback with a password.' \
        'local all  postgres               peer' \
        'host  pymap pymap   127.0.0.1/32  scram-sha-256' >"$staging/pg_hba.conf"
    chown postgres:postgres "$staging/pg_hba.conf"
    chmod 0600 "$staging/pg_hba.conf"

    # Single-user mode creates the role and database without starting a server; the
    # password travels on stdin (printf is a shell builtin), never on a command line.
    # fsync=off for the same reason as --no-sync above (the syncfs covers it).
    password="$(random_hex 32)"
    out="$(printf "CREATE ROLE pymap LOGIN PASSWORD '%s';\nCREATE DATABASE pymap OWNER pymap ENCODING 'UTF8';\n" "$password" |
        (cd / && runuser -u postgres -- "$PG_BIN/postgres" --single -D "$staging" \
            -c config_file="$staging/postgresql.conf" -c fsync=off postgres 2>&1))" ||
        die "creating the pymap role and database failed"
    if grep -qE '(ERROR|FATAL|PANIC):' <<<"$out"; then
        die "creating the pymap role and database failed: $(grep -E '(ERROR|FATAL|PANIC):' <<<"$out" | head -n 3)"
    fi
    printf 'postgres://pymap:%s@127.0.0.1:5432/pymap\n' "$password" |
        write_private "$BUNDLED_DB_URL_FILE" pymap:pymap
    sync -f "$staging"
    mv "$staging" "$PGDATA"
    sync -f "$DATA"
}

check_postgres() {
    if [ ! -f "$PGDATA/PG_VERSION" ]; then
        if [ -e "$PGDATA" ] && [ -n "$(ls -A "$PGDATA")" ]; then
            die "$PGDATA exists but holds no PostgreSQL cluster (PG_VERSION missing); move it away to start over"
        fi
        rm -rf "$PGDATA"
        init_postgres
    fi
    local version
    version="$(cat "$PGDATA/PG_VERSION")"
    [ "$version" = "$PG_MAJOR" ] ||
        die "$PGDATA is a PostgreSQL $version cluster; this image runs $PG_MAJOR (upgrade it with pg_upgrade first)"
    [ -s "$BUNDLED_DB_URL_FILE" ] ||
        die "$BUNDLED_DB_URL_FILE is missing although the cluster exists; restore it from a backup of $DATA"
    if [ "$(stat -c %U "$PGDATA")" != postgres ]; then
        log "giving $PGDATA back to the postgres user"
        chown -R postgres:postgres "$PGDATA"
    fi
    chmod 0700 "$PGDATA"
    # A container killed without a clean stop leaves postmaster.pid behind; in a fresh
    # container its PID can belong to another program, and PostgreSQL would refuse to
    # start. Nothing runs yet, so the file is stale.
    if [ -f "$PGDATA/postmaster.pid" ]; then
        log "removing a stale postmaster.pid (the last stop was not clean; PostgreSQL will recover)"
        rm -f "$PGDATA/postmaster.pid"
    fi
    install -d -o postgres -g postgres -m 0755 /run/postgresql
}

# --- Redis ----------------------------------------------------------------------------------
prepare_redis() {
    local pwfile="$SECRETS/redis-password" password
    install -d -o redis -g redis -m 0700 "$DATA/redis"
    if [ "$(stat -c %U "$DATA/redis")" != redis ]; then chown -R redis:redis "$DATA/redis"; fi
    if [ ! -s "$pwfile" ]; then
        random_hex 32 | write_private "$pwfile" root:root
    fi
    password="$(cat "$pwfile")"
    # Rewritten on every start so an image upgrade brings its settings along.
    printf 'include /etc/pymap/redis.conf\nrequirepass %s\n' "$password" |
        write_private "$RUN_DIR/redis.conf" redis:redis
    printf 'redis://:%s@127.0.0.1:6379/0\n' "$password" |
        write_private "$BUNDLED_REDIS_URL_FILE" pymap:pymap
}

# --- pymap's secret key ---------------------------------------------------------------------
prepare_secret_key() {
    if [ -n "${PYMAP_SECRET_KEY:-}" ] || [ -n "${PYMAP_SECRET_KEY_FILE:-}" ]; then
        return 0
    fi
    # The same form pymap would generate itself (96 hex digits), made here so that it
    # exists, with the right owner, before anything else runs.
    if [ ! -s "$DATA/.secret" ]; then
        log "first start: generating pymap's secret key"
        random_hex 48 | tr -d '\n' | write_private "$DATA/.secret" pymap:pymap
    fi
}

# --- TLS for nginx --------------------------------------------------------------------------
tls_hostname() {
    local host="${APPLIANCE_TLS_HOSTNAME:-}"
    if [ -z "$host" ] && [ -n "${PYMAP_PUBLIC_URL:-}" ]; then
        host="${PYMAP_PUBLIC_URL#*://}"
        host="${host%%[:/]*}"
    fi
    [ -n "$host" ] || host="$(hostname)"
    # Used in an openssl -subj/-addext argument: keep to host-name characters.
    if ! [[ "$host" =~ ^[A-Za-z0-9.-]{1,253}$ ]]; then
        log "ignoring unusable TLS host name; using localhost"
        host=localhost
    fi
    printf '%s\n' "$host"
}

prepare_tls() {
    local cert key
    if [ -f /etc/pymap/tls/cert.pem ] && [ -f /etc/pymap/tls/key.pem ]; then
        cert=/etc/pymap/tls/cert.pem
        key=/etc/pymap/tls/key.pem
        log "TLS: using the mounted certificate in /etc/pymap/tls"
    else
        install -d -o root -g root -m 0700 "$DATA/tls"
        cert="$DATA/tls/cert.pem"
        key="$DATA/tls/key.pem"
        if [ ! -s "$cert" ] || [ ! -s "$key" ]; then
            local host
            host="$(tls_hostname)"
            log "first start: generating a self-signed TLS certificate for $host (mount your own at /etc/pymap/tls)"
            openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
                -days 825 -subj "/CN=$host" \
                -addext "subjectAltName=DNS:$host,DNS:localhost,IP:127.0.0.1" \
                -keyout "$key.tmp" -out "$cert.tmp" 2>/dev/null
            chmod 0600 "$key.tmp"
            chmod 0644 "$cert.tmp"
            mv -f "$key.tmp" "$key"
            mv -f "$cert.tmp" "$cert"
        fi
    fi
    ln -sfn "$cert" /etc/nginx/tls/cert.pem
    ln -sfn "$key" /etc/nginx/tls/key.pem
}

# With an https:// public URL pymap's cookies are Secure, so plain HTTP redirects there.
prepare_nginx() {
    local origin="" url="${PYMAP_PUBLIC_URL:-}"
    rm -f "$RUN_DIR/nginx-redirect.conf"
    if [[ "$url" == https://* ]]; then
        local rest="${url#https://}"
        origin="https://${rest%%/*}"
        # scheme://host[:port] only, and nothing nginx would interpret in a string.
        if [[ "$origin" =~ ^https://[A-Za-z0-9.-]+(:[0-9]{1,5})?$ ]]; then
            # shellcheck disable=SC2016 # $pymap_https_origin is an nginx variable
            printf 'set $pymap_https_origin "%s";\n' "$origin" >"$RUN_DIR/nginx-redirect.conf"
            chmod 0644 "$RUN_DIR/nginx-redirect.conf"
        else
            log "PYMAP_PUBLIC_URL is not a plain https://host[:port]/ URL; HTTP will not redirect"
        fi
    fi
    nginx -t -q -c /etc/nginx/nginx.conf || die "the nginx configuration does not load (a bad certificate in /etc/pymap/tls?)"
}

main() {
    install -d -o root -g root -m 0755 "$RUN_DIR"
    check_data
    decide_services
    if [ "$APPLIANCE_POSTGRESQL" = true ]; then check_postgres; fi
    if [ "$APPLIANCE_REDIS" = true ]; then prepare_redis; fi
    prepare_secret_key
    prepare_tls
    prepare_nginx
    printf '%s\n' "$LAYOUT" >"$DATA/.appliance"
    chmod 0644 "$DATA/.appliance"
    install -d -m 0700 /run/supervisor
    log "starting supervisord (PostgreSQL: $APPLIANCE_POSTGRESQL, Redis: $APPLIANCE_REDIS)"
    exec /usr/bin/supervisord -c /etc/supervisor/supervisord.conf
}

main
