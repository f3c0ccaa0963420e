#!/usr/bin/env bash
# The Secrets Manager emulator (moto's server mode, from PyPI, in its own
# virtualenv). `start` runs it on a free port and prints
# `export DIRSYNC_TEST_SECRETS_ENDPOINT=...`; `stop` stops it.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/common.sh"

venv="$DIRSYNC_CACHE/venv-moto"

install() {
  if [ ! -x "$venv/bin/moto_server" ]; then
    command -v python3 >/dev/null || die "the Secrets Manager emulator needs python3"
    log "installing the Secrets Manager emulator (moto server)"
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]>=5,<6' >&2
  fi
}

start() {
  install
  local port
  port=$(free_port)
  "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$DIRSYNC_RUN_DIR/moto.log" 2>&1 &
  echo $! >"$DIRSYNC_RUN_DIR/moto.pid"
  wait_port "$port" moto 60 "$!"
  log "Secrets Manager emulator listens on 127.0.0.1:$port"
  echo "export DIRSYNC_TEST_SECRETS_ENDPOINT=http://127.0.0.1:$port"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop_pidfile moto ;;
  *) die "usage: $0 install|start|stop" ;;
esac
