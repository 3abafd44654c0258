#!/usr/bin/env bash
# PostgreSQL clusters for agentd's development and tests.
#   pg.sh deps             install libpq-dev and postgresql if missing (apt-get when root)
#   pg.sh start DIR [PORT] create (if new) and start a cluster in DIR on 127.0.0.1; prints the port
#   pg.sh stop DIR         stop the cluster in DIR
#   pg.sh standby PRIMARY DIR [PORT]  a hot standby of the cluster in PRIMARY (pg_basebackup), streaming
#                          asynchronously, started in DIR; prints its port
#   pg.sh free-port        print a free TCP port on 127.0.0.1
# PostgreSQL refuses to run as root, so as root the cluster runs as the postgres user.
set -euo pipefail

pg_bin() {
    local found
    if found=$(command -v "$1" 2>/dev/null); then echo "$found"; return; fi
    found=$(ls -d /usr/lib/postgresql/*/bin/"$1" 2>/dev/null | sort -V | tail -n 1)
    [ -n "$found" ] && echo "$found"
}

deps() {
    local missing=()
    pkg-config --exists libpq 2>/dev/null || missing+=(libpq-dev)
    { [ -n "$(pg_bin initdb)" ] && [ -n "$(pg_bin pg_ctl)" ]; } || missing+=(postgresql)
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -eq 0 ]; then
        echo "installing ${missing[*]} with apt-get" >&2
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" pkg-config >&2
    else
        echo "missing: ${missing[*]}. Install them with:" >&2
        echo "    sudo apt-get update && sudo apt-get install -y ${missing[*]} pkg-config" >&2
        exit 1
    fi
}

as_owner() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
    local dir=$1 port=${2:-}
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    [ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        as_owner "$(pg_bin initdb)" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
            || { cat "$dir/initdb.log" >&2; exit 1; }
    fi
    # Already running: report its port.
    if [ -f "$dir/port" ] && as_owner "$(pg_bin pg_ctl)" -D "$dir/data" status >/dev/null 2>&1; then
        cat "$dir/port"
        return 0
    fi
    local options="-c listen_addresses=127.0.0.1 -k $dir -c max_connections=300 ${PG_EXTRA_OPTIONS:-}"
    local attempt
    for attempt in 1 2 3 4 5; do
        local try_port=${port:-$(free_port)}
        if as_owner "$(pg_bin pg_ctl)" -D "$dir/data" -l "$dir/server.log" -w -t 60 -o "-p $try_port $options" start >/dev/null; then
            echo "$try_port" >"$dir/port"
            echo "$try_port"
            return 0
        fi
        # A fixed port that fails will fail again; a free one may have been taken meanwhile.
        [ -n "$port" ] && break
    done
    echo "PostgreSQL did not start; its log:" >&2
    tail -n 20 "$dir/server.log" >&2 || true
    exit 1
}

standby() {
    local primary=$1 dir=$2 port=${3:-}
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    [ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        # -R writes primary_conninfo and standby.signal; a fast checkpoint starts the copy at once.
        as_owner "$(pg_bin pg_basebackup)" -h 127.0.0.1 -p "$(cat "$primary/port")" -U postgres -D "$dir/data" \
            -R -X stream -c fast >"$dir/basebackup.log" 2>&1 || { cat "$dir/basebackup.log" >&2; exit 1; }
    fi
    start "$dir" "$port"
}

stop() {
    local dir=$1
    [ -f "$dir/data/postmaster.pid" ] || return 0
    as_owner "$(pg_bin pg_ctl)" -D "$dir/data" -m fast -w -t 60 stop >/dev/null
}

case "${1:-}" in
    deps) deps ;;
    start) shift; start "$@" ;;
    stop) shift; stop "$@" ;;
    standby) shift; standby "$@" ;;
    free-port) free_port ;;
    *) echo "usage: $0 deps | start DIR [PORT] | standby PRIMARY DIR [PORT] | stop DIR | free-port" >&2; exit 2 ;;
esac
