#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tuner's shared-study tests (and for .ci/run).
#
#   tests/tune/start_postgres.sh start DIR   # prints PERFTUNE_TEST_POSTGRES_URL=postgresql://...
#   tests/tune/start_postgres.sh stop DIR
#
# The server listens on 127.0.0.1 on a free port, trusts local connections, keeps its data in
# DIR (created; must not exist or be empty), and runs as the `postgres` user when started as
# root (initdb refuses to run as root). Use it from CI as:
#   eval "$(tests/tune/start_postgres.sh start /tmp/perftune-pg)"; export PERFTUNE_TEST_POSTGRES_URL
#   ... pytest tests/tune ...; tests/tune/start_postgres.sh stop /tmp/perftune-pg
set -euo pipefail

action=${1:-}
dir=${2:-}
if [[ -z "$action" || -z "$dir" ]]; then
    echo "usage: $0 start|stop DIR" >&2
    exit 2
fi

find_bin() {
    local name=$1 candidate
    if [[ -n "${PG_BIN:-}" && -x "$PG_BIN/$name" ]]; then echo "$PG_BIN/$name"; return; fi
    for candidate in /usr/lib/postgresql/*/bin/"$name"; do
        if [[ -x "$candidate" ]]; then echo "$candidate"; return; fi
    done
    command -v "$name" || true
}

as_owner() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

pg_ctl=$(find_bin pg_ctl)
if [[ -z "$pg_ctl" ]]; then
    echo "PostgreSQL binaries (initdb, pg_ctl) not found; set PG_BIN" >&2
    exit 3
fi

show_logs() {
    for log in "$dir/initdb.log" "$dir/server.log"; do
        [[ -f "$log" ]] && tail -n 20 "$log" >&2
    done
}

case "$action" in
start)
    trap show_logs ERR
    initdb=$(find_bin initdb)
    if [[ $(id -u) -eq 0 ]] && ! id postgres >/dev/null 2>&1; then
        echo "running as root and there is no postgres user to run the server as" >&2
        exit 3
    fi
    mkdir -p "$dir"
    if [[ $(id -u) -eq 0 ]]; then chown postgres "$dir"; fi
    chmod 700 "$dir"
    as_owner "$initdb" -D "$dir/data" -A trust -U perftune --no-sync >"$dir/initdb.log" 2>&1
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    as_owner "$pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
    as_owner "$(find_bin createdb)" -h 127.0.0.1 -p "$port" -U perftune perftune
    echo "PERFTUNE_TEST_POSTGRES_URL=postgresql://perftune@127.0.0.1:$port/perftune"
    ;;
stop)
    as_owner "$pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null
    ;;
*)
    echo "usage: $0 start|stop DIR" >&2
    exit 2
    ;;
esac
