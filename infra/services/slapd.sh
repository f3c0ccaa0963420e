#!/usr/bin/env bash
# OpenLDAP (slapd, from Debian) imitating a Domino directory: our own schema
# (ldap/domino.schema), seeded from ldap/domino-seed.py. `install` installs the
# Debian packages when missing, without setting up the system's own slapd;
# `start` runs a private slapd (its own config and database in the run folder)
# on a free port of 127.0.0.1 and prints its `export DIRSYNC_TEST_DOMINO_*=...`
# lines; `stop` stops it.
#
# The same slapd serves a second directory, laid out as HCL documents
# Domino's LDAP service (ldap/domino-root-seed.py): no common root, people
# under o=Acme and o=AcmeEU, groups with flat names at the root. It is one
# back-mdb database with the null suffix "" (so a search from the blank base
# DN sees all of it, and modrdn may move people between organisations; glued
# per-organisation databases would refuse that), listed after o=Dirsync so
# that o=Dirsync keeps its own database and data exactly as before. Its
# readers get Domino's usual cap of 1,000 entries per search (result 4,
# sizeLimitExceeded) unless they page; the refint overlay rewrites member
# values on renames and moves, as Domino's AdminP does. It prints
# DIRSYNC_TEST_DOMINO_ROOT_* lines (URL, an empty base DN, reader, admin,
# deny group, the manifest of expected facts, the LDIF of the documented
# renames and moves). dominoUNID stays a plain attribute: slapd refuses
# operational attribute types defined in a schema file (see domino.schema).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/common.sh"

SUFFIX=o=Dirsync
READER_DN="cn=Dirsync Reader,$SUFFIX"
ADMIN_DN="cn=admin,$SUFFIX"
DENY_GROUP="cn=Deny Access,$SUFFIX"
# Standard schemas shipped by the slapd package (package data, not its config).
SCHEMA_DIR=/etc/ldap/schema
# The Domino-shaped directory (null suffix). The reader's entry is hidden
# from searches by the ACL, so it is in none of the manifest's counts.
ROOT_READER_DN="cn=Dirsync Reader,o=Acme"
ROOT_ADMIN_DN="cn=Dirsync Admin,o=Acme"
ROOT_DENY_GROUP="cn=Deny Access"
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
  mkdir -p "$dir/db" "$dir/root-db"
  local port reader_pass admin_pass root_reader_pass root_admin_pass
  port=$(free_port)
  reader_pass=$(password)
  admin_pass=$(password)
  root_reader_pass=$(password)
  root_admin_pass=$(password)

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
moduleload refint
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

# The Domino-shaped directory: must come after the databases with a
# non-empty suffix (slapd picks the first database whose suffix matches).
database mdb
suffix ""
rootdn "$ROOT_ADMIN_DN"
rootpw $(slappasswd -s "$root_admin_pass")
directory $dir/root-db
maxsize 268435456
index objectClass eq
index cn,mail,uid,member,dominoUNID eq
# Unpaged searches stop at 1,000 entries (result 4); paged ones may read all.
limits users size.soft=1000 size.hard=1000 size.prtotal=unlimited
overlay refint
refint_attributes member

access to dn.exact="$ROOT_READER_DN"
  by anonymous auth
  by * none
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
  python3 "$here/ldap/domino-root-seed.py" ldif "$ROOT_READER_DN" "$root_reader_pass" >"$dir/root-seed.ldif"
  python3 "$here/ldap/domino-root-seed.py" manifest >"$dir/root-manifest.json"
  python3 "$here/ldap/domino-root-seed.py" changes >"$dir/root-changes.ldif"
  # Database 2 is the null suffix; slapadd keeps member values as written
  # (ldapadd/ldapmodify would rewrite them in OpenLDAP's own escape form).
  slapadd -q -n 2 -f "$dir/slapd.conf" -l "$dir/root-seed.ldif" >>"$DIRSYNC_RUN_DIR/slapd-seed.log" 2>&1 ||
    die "seeding the Domino-shaped directory failed; its log follows:
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
export DIRSYNC_TEST_DOMINO_ROOT_URL=ldap://127.0.0.1:$port
export DIRSYNC_TEST_DOMINO_ROOT_BASE_DN=''
export DIRSYNC_TEST_DOMINO_ROOT_BIND_DN='$ROOT_READER_DN'
export DIRSYNC_TEST_DOMINO_ROOT_PASSWORD=$root_reader_pass
export DIRSYNC_TEST_DOMINO_ROOT_ADMIN_DN='$ROOT_ADMIN_DN'
export DIRSYNC_TEST_DOMINO_ROOT_ADMIN_PASSWORD=$root_admin_pass
export DIRSYNC_TEST_DOMINO_ROOT_DENY_GROUP='$ROOT_DENY_GROUP'
export DIRSYNC_TEST_DOMINO_ROOT_MANIFEST=$dir/root-manifest.json
export DIRSYNC_TEST_DOMINO_ROOT_CHANGES=$dir/root-changes.ldif
EOF
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop_pidfile slapd ;;
  *) die "usage: $0 install|start|stop" ;;
esac
