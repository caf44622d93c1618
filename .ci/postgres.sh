#!/usr/bin/env bash
# A throwaway PostgreSQL server for tests/test_workers.py, on 127.0.0.1 only.
#
#   eval "$(bash .ci/postgres.sh)"      # start; exports BCPARETO_TEST_PG_URL
#   bash .ci/postgres.sh stop DIR       # stop the server whose files are in DIR
#
# Installs Debian's postgresql package if no server binaries are found, creates a cluster in a
# temporary folder (owned by the postgres user when run as root), listens on a free port of
# 127.0.0.1 (no Unix socket outside that folder), and creates database bcpareto owned by a user
# bcpareto with a random password, as a real deployment has one: the tests check it never leaks.
# Prints only the export line on stdout (progress goes to stderr); the URL is also in DIR/url.
set -euo pipefail

find_bin() {
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

as_owner() {  # run a command as the cluster's owner: postgres when we are root, else ourselves
    if [ "$(id -u)" = 0 ]; then
        su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
    else
        "$@"
    fi
}

if [ "${1:-}" = stop ]; then
    dir=${2:?usage: postgres.sh stop DIR}
    as_owner "$(find_bin)/pg_ctl" -D "$dir/data" -m fast stop >&2
    exit 0
fi

bin=$(find_bin)
if [ -z "$bin" ]; then
    echo "postgres.sh: installing Debian's postgresql" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends postgresql >&2
    bin=$(find_bin)
fi

dir=$(mktemp -d /tmp/bcpareto-pg.XXXXXX)
chmod 755 "$dir"
[ "$(id -u)" = 0 ] && chown postgres "$dir"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
password=$(python3 -c 'import secrets; print("pw-" + secrets.token_hex(12))')

as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
    -E UTF8 --no-instructions >&2
as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=100" start >&2
psql_() { as_owner "$bin/psql" -h "$dir" -p "$port" -U postgres -v ON_ERROR_STOP=1 -q "$@"; }
psql_ -c "CREATE ROLE bcpareto LOGIN PASSWORD '$password'" >&2
psql_ -c "CREATE DATABASE bcpareto OWNER bcpareto" >&2

url="postgresql+psycopg2://bcpareto:$password@127.0.0.1:$port/bcpareto"
umask 077
printf '%s\n' "$url" > "$dir/url"
echo "postgres.sh: server on 127.0.0.1:$port, files in $dir (stop: bash .ci/postgres.sh stop $dir)" >&2
echo "export BCPARETO_TEST_PG_URL='$url' BCPARETO_TEST_PG_DIR='$dir'"
