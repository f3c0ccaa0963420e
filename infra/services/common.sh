# Shared helpers for the service scripts: where things are installed, how a
# free port is found and how readiness is awaited. Sourced, not run.

# Installs live outside the clone so that later runs on the same machine
# reuse them; a fresh machine installs from the package registries.
DIRSYNC_CACHE="${DIRSYNC_CACHE:-$HOME/.cache/dirsync}"
# Per-run state (pids, logs, data) of the services started by one test run.
DIRSYNC_RUN_DIR="${DIRSYNC_RUN_DIR:-$DIRSYNC_CACHE/run}"
mkdir -p "$DIRSYNC_CACHE" "$DIRSYNC_RUN_DIR"

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] error: %s\n' "$*" >&2; exit 1; }

# A TCP port nobody listens on right now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_port PORT NAME SECONDS PID: until something accepts on 127.0.0.1:PORT.
wait_port() {
  local port=$1 name=$2 limit=$3 pid=${4:-}
  local deadline=$((SECONDS + limit))
  while ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      die "$name exited while starting; its log follows:
$(tail -n 40 "$DIRSYNC_RUN_DIR/$name.log" 2>/dev/null)"
    fi
    [ "$SECONDS" -lt "$deadline" ] || die "$name did not accept connections on port $port within ${limit}s"
    sleep 0.1
  done
}

# stop_pidfile NAME: stops a service started by these scripts.
stop_pidfile() {
  local file="$DIRSYNC_RUN_DIR/$1.pid"
  if [ -f "$file" ]; then
    local pid
    pid=$(cat "$file")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$file"
  fi
}
