#!/usr/bin/env bash
# OpenLDAP (slapd, from Debian) imitating a Domino directory: our own schema
# (ldap/domino.schema), seeded from ldap/domino-seed.py. `install` installs the
# Debian packages when missing, without setting up the system's own slapd;
# `start` runs a private slapd (its own config and database in the run folder)
# on a free port of 127.0.0.1 and prints its `export DIRSYNC_TEST_DOMINO_*=...`
# lines; `stop` stops it.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/common.sh"

SUFFIX=o=Dirsync
READER_DN="cn=Dirsync Reader,$SUFFIX"
ADMIN_DN="cn=admin,$SUFFIX"
DENY_GROUP="cn=Deny Access,$SUFFIX"
# Standard schemas shipped by the slapd package (package data, not its config).
SCHEMA_DIR=/etc/ldap/schema
dir="$DIRSYNC_RUN_DIR/slapd"

apt_install() {
  [ "$(id -u)" = 0 ] || die "installing $* needs root"
  log "installing $* (apt-get)"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=120 "$@" >&2; then
    log "apt-get install failed; updating the package lists and trying again"
    apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=120 "$@" >&2
  fi
}

installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]; }

install() {
  # Only what is missing: naming an installed package to apt-get upgrades it.
  local missing=() pkg
  for pkg in slapd ldap-utils; do
    installed "$pkg" || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    # No system directory: the package then creates no database and its own
    # service has nothing to run (it would otherwise listen on port 389,
    # which Samba AD needs).
    echo 'slapd slapd/no_configuration boolean true' | debconf-set-selections
    apt_install "${missing[@]}"
  fi
  [ -x /usr/sbin/slapd ] && [ -f "$SCHEMA_DIR/inetorgperson.schema" ] || die "slapd or its schemas are missing after the install"
}

password() { printf 'Ds-%s' "$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"; }

start() {
  install
  rm -rf "$dir"
  mkdir -p "$dir/db"
  local port reader_pass admin_pass
  port=$(free_port)
  reader_pass=$(password)
  admin_pass=$(password)

  # The admin (rootdn) may change anything, for tests that mutate the
  # directory between syncs; the reader may read everything but passwords;
  # anonymous users may only bind.
  cat >"$dir/slapd.conf" <<EOF
include $SCHEMA_DIR/core.schema
include $SCHEMA_DIR/cosine.schema
include $SCHEMA_DIR/inetorgperson.schema
include $here/ldap/domino.schema

pidfile $dir/slapd.pid
modulepath /usr/lib/ldap
moduleload back_mdb
sizelimit unlimited

database mdb
suffix "$SUFFIX"
rootdn "$ADMIN_DN"
rootpw $(slappasswd -s "$admin_pass")
directory $dir/db
maxsize 67108864
index objectClass eq
index cn,mail,uid,member eq

access to attrs=userPassword
  by anonymous auth
  by * none
access to *
  by users read
  by * none
EOF
  python3 "$here/ldap/domino-seed.py" "$SUFFIX" "$READER_DN" "$reader_pass" >"$dir/seed.ldif"
  slapadd -q -f "$dir/slapd.conf" -l "$dir/seed.ldif" >"$DIRSYNC_RUN_DIR/slapd-seed.log" 2>&1 ||
    die "seeding slapd failed; its log follows:
$(tail -n 20 "$DIRSYNC_RUN_DIR/slapd-seed.log")"

  # -d keeps it in the foreground; "stats" logs each connection and operation.
  /usr/sbin/slapd -f "$dir/slapd.conf" -h "ldap://127.0.0.1:$port/" -d stats \
    </dev/null >"$DIRSYNC_RUN_DIR/slapd.log" 2>&1 &
  echo $! >"$DIRSYNC_RUN_DIR/slapd.pid"
  wait_port "$port" slapd 30 "$!"
  log "OpenLDAP (Domino imitation) listens on 127.0.0.1:$port"

  cat <<EOF | tee "$dir/env"
export DIRSYNC_TEST_DOMINO_URL=ldap://127.0.0.1:$port
export DIRSYNC_TEST_DOMINO_BASE_DN=$SUFFIX
export DIRSYNC_TEST_DOMINO_BIND_DN='$READER_DN'
export DIRSYNC_TEST_DOMINO_PASSWORD=$reader_pass
export DIRSYNC_TEST_DOMINO_ADMIN_DN=$ADMIN_DN
export DIRSYNC_TEST_DOMINO_ADMIN_PASSWORD=$admin_pass
export DIRSYNC_TEST_DOMINO_DENY_GROUP='$DENY_GROUP'
EOF
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop_pidfile slapd ;;
  *) die "usage: $0 install|start|stop" ;;
esac
