#!/usr/bin/env bash
# A pg_auto_failover formation on loopback for `make failover`: a monitor and two PostgreSQL 15
# nodes (node1, node2), synchronous replication, each keeper in a session of its own so that a
# node can be lost whole.
#   failover.sh deps               install postgresql-15-auto-failover if pg_autoctl is missing (apt-get when root)
#   failover.sh create DIR         monitor and both nodes under DIR; waits for a primary and a secondary
#   failover.sh url DIR            the formation's multi-host URL (libpq finds the primary itself)
#   failover.sh state DIR          one line per node: name port reported-state assigned-state
#   failover.sh primary DIR        the node that is primary now
#   failover.sh kill DIR NODE      SIGKILL the node's postmaster and its keeper: the machine is lost
#   failover.sh start DIR NODE     the node's keeper again; it rejoins as a secondary (pg_rewind)
#   failover.sh wait DIR [SECONDS] until one primary and one secondary, both settled
#   failover.sh destroy DIR        stop everything and remove DIR
# As root, everything runs as the postgres user, which PostgreSQL requires.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/15/bin 2>/dev/null || true)}

# Failure detection tuned for loopback (the monitor's defaults take 20 s to call a node unhealthy
# and 30 s more before it gives up waiting for a lost primary to demote itself). A primary that
# cannot reach the monitor or its standby demotes itself after NETWORK_PARTITION seconds, so the
# monitor waits longer than that before it promotes: never two primaries.
HEALTH_PERIOD_MS=${HEALTH_PERIOD_MS:-1000}
UNHEALTHY_MS=${UNHEALTHY_MS:-2000}
NETWORK_PARTITION_S=${NETWORK_PARTITION_S:-3}
DEMOTE_TIMEOUT_MS=${DEMOTE_TIMEOUT_MS:-5000}

deps() {
    # The keepers reach their own server through its socket in the packaged default directory.
    if [ "$(id -u)" -eq 0 ] && [ ! -d /var/run/postgresql ]; then install -d -o postgres -g postgres -m 2775 /var/run/postgresql; fi
    command -v pg_autoctl >/dev/null 2>&1 && return 0
    if [ "$(id -u)" -eq 0 ]; then
        echo "installing postgresql-15-auto-failover with apt-get" >&2
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15-auto-failover pg-auto-failover-cli >&2
    else
        echo "missing pg_autoctl. Install it with:" >&2
        echo "    sudo apt-get update && sudo apt-get install -y postgresql-15-auto-failover pg-auto-failover-cli" >&2
        exit 1
    fi
}

as_owner() {
    local env=(env "XDG_CONFIG_HOME=$DIR/xdg/config" "XDG_DATA_HOME=$DIR/xdg/data" "PG_CONFIG=$PG_BIN/pg_config" "PATH=$PG_BIN:$PATH")
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "${env[@]}" "$@"; else "${env[@]}" "$@"; fi
}

free_port() { "$root/scripts/pg.sh" free-port; }

monitor_sql() { psql "postgres://postgres@127.0.0.1:$(cat "$DIR/monitor.port")/pg_auto_failover" -qAtX -F' ' -c "$1"; }

node_sql() { psql "postgres://postgres@127.0.0.1:$(cat "$DIR/$1.port")/agentd?connect_timeout=2" -qAtX -c "$2"; }

# A keeper (`pg_autoctl run`) in a session of its own; its session id is kept to kill it whole.
run_keeper() {
    local name=$1
    setsid bash -c 'echo $$ > "$1"; shift; exec "$@"' _ "$DIR/$name.sid" \
        "$0" _as_owner "$DIR" pg_autoctl run --pgdata "$DIR/$name" >>"$DIR/$name.log" 2>&1 </dev/null &
    local tries=0
    while [ ! -s "$DIR/$name.sid" ] && [ $tries -lt 50 ]; do sleep 0.1; tries=$((tries + 1)); done
}

create() {
    deps
    mkdir -p "$(dirname "$DIR")"
    # As root, the keepers run as postgres, which must reach the folder: a clone under a private
    # home cannot be, so the formation then lives in /tmp with the folder a link to it.
    if [ "$(id -u)" -eq 0 ] && [ ! -e "$DIR" ] \
        && ! runuser -u postgres -- test -x "$(cd "$(dirname "$DIR")" && pwd -P)" 2>/dev/null; then
        ln -s "$(mktemp -d /tmp/agentd-failover-XXXXXX)" "$DIR"
    fi
    mkdir -p "$DIR"
    DIR=$(cd "$DIR" && pwd -P)
    [ "$(id -u)" -eq 0 ] && chown postgres: "$DIR"
    [ -f "$DIR/monitor/PG_VERSION" ] && { echo "a formation already exists in $DIR; destroy it first" >&2; exit 1; }
    free_port >"$DIR/monitor.port"
    as_owner pg_autoctl create monitor --pgdata "$DIR/monitor" --pgport "$(cat "$DIR/monitor.port")" --hostname 127.0.0.1 \
        --auth trust --no-ssl --pgctl "$PG_BIN/pg_ctl" >>"$DIR/monitor.log" 2>&1
    as_owner pg_autoctl config set --pgdata "$DIR/monitor" postgresql.listen_addresses 127.0.0.1 >>"$DIR/monitor.log" 2>&1
    run_keeper monitor
    local tries=0
    until monitor_sql "SELECT 1" >/dev/null 2>&1; do
        sleep 0.5; tries=$((tries + 1))
        [ $tries -gt 60 ] && { tail -20 "$DIR/monitor.log" >&2; exit 1; }
    done
    monitor_sql "ALTER SYSTEM SET pgautofailover.health_check_period = $HEALTH_PERIOD_MS" >/dev/null
    monitor_sql "ALTER SYSTEM SET pgautofailover.health_check_timeout = $HEALTH_PERIOD_MS" >/dev/null
    monitor_sql "ALTER SYSTEM SET pgautofailover.health_check_retry_delay = $((HEALTH_PERIOD_MS / 2))" >/dev/null
    monitor_sql "ALTER SYSTEM SET pgautofailover.health_check_max_retries = 1" >/dev/null
    monitor_sql "ALTER SYSTEM SET pgautofailover.node_considered_unhealthy_timeout = $UNHEALTHY_MS" >/dev/null
    monitor_sql "ALTER SYSTEM SET pgautofailover.primary_demote_timeout = $DEMOTE_TIMEOUT_MS" >/dev/null
    monitor_sql "SELECT pg_reload_conf()" >/dev/null
    local monitor_url="postgres://autoctl_node@127.0.0.1:$(cat "$DIR/monitor.port")/pg_auto_failover?sslmode=disable"
    for name in node1 node2; do
        free_port >"$DIR/$name.port"
        as_owner pg_autoctl create postgres --pgdata "$DIR/$name" --pgport "$(cat "$DIR/$name.port")" \
            --listen 127.0.0.1 --hostname 127.0.0.1 --name "$name" --dbname agentd --auth trust --no-ssl \
            --monitor "$monitor_url" --pgctl "$PG_BIN/pg_ctl" >>"$DIR/$name.log" 2>&1
        as_owner pg_autoctl config set --pgdata "$DIR/$name" timeout.network_partition_timeout "$NETWORK_PARTITION_S" >>"$DIR/$name.log" 2>&1
        run_keeper "$name"
        # The first node must be primary before the second asks to follow it.
        [ "$name" = node1 ] && wait_for 120 "node1 primary" single_primary
    done
    wait_for 180 "a primary and a secondary" settled
    url
}

# The nodes' states from the monitor: name port reported assigned.
state() { monitor_sql "SELECT nodename, nodeport, reportedstate, goalstate FROM pgautofailover.node ORDER BY nodename"; }

single_primary() { state | awk '$3 == "single" && $4 == "single" { found = 1 } END { exit !found }'; }

settled() {
    state | awk '$3 == $4 && $3 == "primary" { p++ } $3 == $4 && $3 == "secondary" { s++ } END { exit !(p == 1 && s == 1) }'
}

# Waits for CONDITION, hurrying base backups along: pg_basebackup waits for a spread checkpoint
# (minutes on an idle cluster) unless one is asked for.
wait_for() {
    local seconds=$1 what=$2 condition=$3 start=$SECONDS
    until $condition; do
        if [ $((SECONDS - start)) -ge "$seconds" ]; then
            echo "no $what after ${seconds}s:" >&2
            state >&2 || true
            exit 1
        fi
        if state 2>/dev/null | awk '$4 == "catchingup" || $4 == "wait_standby" { found = 1 } END { exit !found }'; then
            local p
            p=$(primary 2>/dev/null || true)
            [ -n "$p" ] && node_sql "$p" "CHECKPOINT" >/dev/null 2>&1 || true
        fi
        sleep 1
    done
}

primary() {
    state | awk '$4 == "primary" || $4 == "wait_primary" || $4 == "single" { print $1; found = 1; exit } END { exit !found }'
}

url() {
    echo "postgres://postgres@127.0.0.1:$(cat "$DIR/node1.port"),127.0.0.1:$(cat "$DIR/node2.port")/agentd?target_session_attrs=read-write"
}

# The keeper is frozen first: killed after its postmaster, it would start a new one in the
# moment between (a node that "died" and was back as primary 0.2 s later, one run in two).
# Whatever it forked still belongs to its session, so the session is killed until it is empty.
# Whether session SID is one of this formation's keepers (a recorded id may have been reused).
ours() {
    ps -o args= -s "$1" 2>/dev/null | grep -qF -e "_as_owner $DIR " -e "--pgdata $DIR/"
}

kill_node() {
    local name=$1 sid="" postmaster
    [ -s "$DIR/$name.sid" ] && sid=$(cat "$DIR/$name.sid")
    [ -n "$sid" ] && ! ours "$sid" && sid=""
    [ -n "$sid" ] && pkill -STOP -s "$sid" 2>/dev/null || true
    postmaster=$(head -n 1 "$DIR/$name/postmaster.pid" 2>/dev/null || true)
    [ -n "$postmaster" ] && kill -KILL "$postmaster" 2>/dev/null || true
    if [ -n "$sid" ]; then
        local tries=0
        while pgrep -s "$sid" >/dev/null 2>&1 && [ $tries -lt 100 ]; do
            pkill -KILL -s "$sid" 2>/dev/null || true
            sleep 0.05
            tries=$((tries + 1))
        done
    fi
    rm -f "$DIR/$name.sid"
}

destroy() {
    local link=$1
    [ -d "$DIR" ] || { [ -L "$link" ] && rm -f "$link"; return 0; }
    for name in node1 node2 monitor; do kill_node "$name"; done
    # A keeper whose session was not recorded: its whole session, found by its command line
    # (only sessions that are keepers of this folder: see `ours`).
    local pid sid
    for pid in $(pgrep -f -- "$DIR/" 2>/dev/null); do
        sid=$(ps -o sid= -p "$pid" 2>/dev/null | tr -d ' ' || true)
        [ -n "$sid" ] && [ "$sid" != "$(ps -o sid= -p $$ | tr -d ' ')" ] && echo "$sid" >"$DIR/stray.sid" && kill_node stray
    done
    sleep 0.5
    # A killed postmaster's children run in sessions of their own. Backends leave by themselves,
    # but the monitor's health-check worker does not: every process whose working directory is a
    # data directory of the folder goes.
    for pid in $(pgrep -u postgres 2>/dev/null); do
        case "$(readlink "/proc/$pid/cwd" 2>/dev/null || true)" in
            "$DIR"/*) kill -KILL "$pid" 2>/dev/null || true ;;
        esac
    done
    rm -rf "$DIR"
    [ -L "$link" ] && rm -f "$link"
    return 0
}

command=${1:-}
case "$command" in
    deps) deps ;;
    _as_owner) DIR=$2; shift 2; as_owner "$@" ;;
    create | url | state | primary | destroy)
        DIR=$2
        [ "$command" = create ] || DIR=$(cd "$DIR" 2>/dev/null && pwd -P || echo "$DIR")
        "$command" "$2" ;;
    kill) DIR=$(cd "$2" && pwd -P); kill_node "$3" ;;
    start)
        DIR=$(cd "$2" && pwd -P)
        if [ -s "$DIR/$3.sid" ] && pgrep -s "$(cat "$DIR/$3.sid")" >/dev/null 2>&1; then
            echo "$3's keeper is running already" >&2
            exit 1
        fi
        run_keeper "$3" ;;
    wait) DIR=$(cd "$2" && pwd -P); wait_for "${3:-120}" "a primary and a secondary" settled ;;
    *) sed -n '2,14p' "$0" >&2; exit 2 ;;
esac
