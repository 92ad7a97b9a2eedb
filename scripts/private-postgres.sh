# Sourced by scripts/test and scripts/bench: starts a private, throw-away PostgreSQL server
# in a temp dir (trust auth, 127.0.0.1 only) and removes it again on any exit, including
# failure and Ctrl-C. `start_private_postgres VAR [durable]` exports VAR as its URL; without
# `durable` the server skips fsync (tests), with it every commit is flushed (benchmarks).
# As root, the server runs as the `postgres` OS user (PostgreSQL refuses to run as root).

PG_TMP=""       # temp dir (data dir, socket dir, log); removed on exit
PG_DATA=""      # data dir inside PG_TMP
PG_CTL=""       # path to pg_ctl once found
RUN_AS_PG=0     # 1 when we are root and must drop to the postgres OS user
PG_STARTING=0   # 1 while `pg_ctl start` runs (postmaster may not have written its pid file yet)

# Run a PostgreSQL server binary as the right OS user, from a directory that
# user can read (its cwd must be accessible).
as_pg() {
    if [[ $RUN_AS_PG == 1 ]]; then
        (cd "$PG_TMP" && runuser -u postgres -- "$@")
    else
        (cd "$PG_TMP" && "$@")
    fi
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    set +e
    if [[ $PG_STARTING == 1 ]]; then
        # Interrupted mid-start: give the postmaster a moment to write its pid file.
        for _ in $(seq 1 20); do
            [[ -f $PG_DATA/postmaster.pid ]] && break
            sleep 0.1
        done
    fi
    if [[ -n $PG_DATA && -f $PG_DATA/postmaster.pid ]]; then
        log "stopping PostgreSQL (pg_ctl stop -m immediate)"
        as_pg "$PG_CTL" stop -D "$PG_DATA" -m immediate -w >/dev/null 2>&1
        # Belt and braces: if the postmaster we started is still alive, kill it.
        if [[ -f $PG_DATA/postmaster.pid ]]; then
            local pid
            pid=$(head -n1 "$PG_DATA/postmaster.pid" 2>/dev/null)
            if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
                kill -KILL "$pid" 2>/dev/null
                sleep 0.5
            fi
        fi
    fi
    if [[ -n $PG_TMP && -d $PG_TMP ]]; then
        log "removing $PG_TMP"
        rm -rf -- "$PG_TMP"
    fi
    exit "$rc"
}

port_busy() {
    local port=$1
    if command -v ss >/dev/null 2>&1 &&
        ss -ltnH 2>/dev/null | awk '{print $4}' | grep -Eq "[:.]${port}\$"; then
        return 0
    fi
    # Fallback / double check: can we connect to it?
    (exec 3<>"/dev/tcp/127.0.0.1/${port}") 2>/dev/null
}

find_pg_bindir() {
    local dir
    # Debian/Ubuntu layout: /usr/lib/postgresql/<major>/bin, prefer the highest.
    while IFS= read -r dir; do
        if [[ -x $dir/initdb && -x $dir/pg_ctl ]]; then
            printf '%s\n' "$dir"
            return 0
        fi
    done < <(compgen -G '/usr/lib/postgresql/*/bin' | sort -t/ -k5,5Vr)
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(command -v initdb)"
        return 0
    fi
    return 1
}

start_private_postgres() {
    local url_var=$1 durable=${2:-}
    local bindir initdb
    bindir=$(find_pg_bindir) ||
        die "PostgreSQL server binaries (initdb, pg_ctl) not found. Install them with: apt-get install postgresql  (as root or via sudo), or set DIARYSYNC_TEST_PG_URL to an existing server"
    initdb=$bindir/initdb
    PG_CTL=$bindir/pg_ctl
    log "using PostgreSQL binaries from $bindir ($("$PG_CTL" --version))"

    if [[ $(id -u) == 0 ]]; then
        id postgres >/dev/null 2>&1 ||
            die "running as root but OS user 'postgres' does not exist (PostgreSQL refuses to run as root). Install it with: apt-get install postgresql"
        RUN_AS_PG=1
        log "running as root: PostgreSQL commands will run as OS user 'postgres' (runuser)"
    fi

    # Private temp dir (data dir + unix socket dir + log). Under root, TMPDIR
    # may point somewhere the postgres user cannot reach, so use /tmp then.
    local tmpbase=${TMPDIR:-/tmp}
    [[ $RUN_AS_PG == 1 ]] && tmpbase=/tmp
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'exit 129' HUP
    PG_TMP=$(mktemp -d "${tmpbase%/}/diarysync-pg.XXXXXX")
    PG_DATA=$PG_TMP/data
    if [[ $RUN_AS_PG == 1 ]]; then
        chown postgres:postgres "$PG_TMP"
    fi
    chmod 700 "$PG_TMP"
    log "temp dir $PG_TMP"

    local -a initdb_args=(-D "$PG_DATA" --auth=trust --username=postgres --encoding=UTF8 --no-locale)
    local help
    help=$("$initdb" --help 2>&1 || true)
    [[ $help == *--no-instructions* ]] && initdb_args+=(--no-instructions)
    [[ $help == *--no-sync* ]] && initdb_args+=(--no-sync)
    log "initdb ${initdb_args[*]}"
    if ! as_pg "$initdb" "${initdb_args[@]}" >"$PG_TMP/initdb.log" 2>&1; then
        cat "$PG_TMP/initdb.log" >&2
        die "initdb failed"
    fi

    local settings="-c listen_addresses=127.0.0.1 -c unix_socket_directories=$PG_TMP -c max_connections=300"
    if [[ $durable != durable ]]; then
        settings+=" -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    elif [[ -e $bindir/../lib/pg_stat_statements.so ]]; then
        # The benchmark counts the statements an event costs (docs/PERFORMANCE.md).
        settings+=" -c shared_preload_libraries=pg_stat_statements"
    fi
    # Pick a free port: $DIARYSYNC_TEST_PG_PORT or 54329, then a few others.
    local first=${DIARYSYNC_TEST_PG_PORT:-54329} port started=0 i
    for i in $(seq 0 9); do
        port=$((first + i))
        if port_busy "$port"; then
            log "port $port is busy, trying the next one"
            continue
        fi
        log "starting PostgreSQL on 127.0.0.1:$port (log: $PG_TMP/postgres.log)"
        PG_STARTING=1
        if as_pg "$PG_CTL" start -w -t 60 -D "$PG_DATA" -l "$PG_TMP/postgres.log" \
            -o "$settings -c port=$port" \
            >/dev/null 2>&1; then
            PG_STARTING=0
            started=1
            break
        fi
        PG_STARTING=0
        # Lost a race for the port? Try the next one; otherwise give up.
        if grep -qi 'address already in use' "$PG_TMP/postgres.log" 2>/dev/null; then
            log "port $port was taken while starting, trying the next one"
            as_pg "$PG_CTL" stop -D "$PG_DATA" -m immediate -w >/dev/null 2>&1 || true
            : >"$PG_TMP/postgres.log"
            continue
        fi
        tail -n 30 "$PG_TMP/postgres.log" >&2 || true
        die "pg_ctl start failed (see log above)"
    done
    [[ $started == 1 ]] || die "no free port found in $first..$((first + 9)); set DIARYSYNC_TEST_PG_PORT"

    export "$url_var=postgres://postgres@127.0.0.1:$port/postgres"
    log "PostgreSQL is up: $url_var=${!url_var}"
}

