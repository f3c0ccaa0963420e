#!/usr/bin/env bash
# A real Active Directory domain controller: Samba AD DC from Debian, on
# loopback, provisioned afresh for each run (realm CORP.DIRSYNC.TEST) and seeded
# from ldap/ad-seed.py. `install` installs the Debian packages when missing;
# `start` provisions, starts and seeds the domain and prints its
# `export DIRSYNC_TEST_AD_*=...` lines; `stop` stops it.
#
# Needs root. Samba's LDAP server has no port setting (389, 636, and the global
# catalog's 3268/3269 are built in), so it listens on those ports of 127.0.0.1
# only, and only one such domain can run on a machine at a time: nothing else
# may listen on them.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/common.sh"

REALM=CORP.DIRSYNC.TEST
DOMAIN=CORP
DOMAIN_DN=DC=corp,DC=dirsync,DC=test
PORTS=(389 636 3268 3269)
# An orphaned server (its test run killed) still stops by itself after this.
MAX_RUNTIME=$((6 * 3600))
dir="$DIRSYNC_RUN_DIR/samba-ad"
pidfile="$DIRSYNC_RUN_DIR/samba-ad.pid"

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
  for pkg in samba-ad-dc samba-ad-provision ldap-utils openssl; do
    installed "$pkg" || missing+=("$pkg")
  done
  [ "${#missing[@]}" -eq 0 ] || apt_install "${missing[@]}"
  command -v samba-tool >/dev/null && command -v ldapadd >/dev/null || die "samba-tool or ldapadd is still missing after the install"
}

# since START [END]: seconds elapsed, from $EPOCHREALTIME values.
since() { awk -v a="$1" -v b="${2:-$EPOCHREALTIME}" 'BEGIN { printf "%.1f", b - a }'; }

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# A password that meets AD's default complexity rules and needs no shell quoting.
password() { printf 'Ds-%s' "$(openssl rand -hex 12)"; }

# Our own CA and a server certificate for localhost / 127.0.0.1 (Samba's
# self-signed one has no subjectAltName, so hostname checks fail on it).
make_tls() {
  local tls=$1
  mkdir -p "$tls"
  # OpenLDAP's tools check "localhost" against the machine's own name instead,
  # so that name is in the certificate too.
  local san="DNS:localhost,IP:127.0.0.1,DNS:dc1.${REALM,,}" name
  for name in $(hostname 2>/dev/null) $(hostname -f 2>/dev/null); do
    [[ "$name" =~ ^[A-Za-z0-9.-]+$ && ",$san," != *",DNS:$name,"* ]] && san="$san,DNS:$name"
  done
  printf '%s\n' "subjectAltName=$san" \
    "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=serverAuth" >"$tls/server.ext"
  { openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 7 \
      -keyout "$tls/ca.key" -out "$tls/ca.pem" -subj "/O=dirsync tests/CN=dirsync test CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" &&
    openssl req -newkey rsa:2048 -nodes -sha256 -keyout "$tls/server.key" -out "$tls/server.csr" \
      -subj "/O=dirsync tests/CN=localhost" &&
    openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial \
      -sha256 -days 7 -extfile "$tls/server.ext" -out "$tls/server.pem"
  } >"$tls/openssl.log" 2>&1 || die "making the TLS certificates failed: $(cat "$tls/openssl.log")"
  # Samba refuses a key file that others can read.
  chmod 600 "$tls/ca.key" "$tls/server.key"
}

# Contractors becomes its members' primary group. AD needs the group's RID
# (its primaryGroupToken), which exists only once the group does.
seed_primary_groups() {
  local admin=(-x -H ldaps://127.0.0.1:636 -D "CN=Administrator,CN=Users,$DOMAIN_DN" -w "$1") rid
  rid=$(LDAPTLS_CACERT="$dir/tls/ca.pem" ldapsearch "${admin[@]}" -LLL -s base \
      -b "CN=Contractors,OU=Groups,OU=Dirsync,$DOMAIN_DN" primaryGroupToken |
    awk '/^primaryGroupToken:/ { print $2 }')
  [ -n "$rid" ] || die "Contractors has no primaryGroupToken after seeding"
  python3 "$here/ldap/ad-seed.py" primary-groups "$DOMAIN_DN" "$rid" >"$dir/primary-groups.ldif"
  LDAPTLS_CACERT="$dir/tls/ca.pem" ldapmodify "${admin[@]}" -f "$dir/primary-groups.ldif" \
      >>"$DIRSYNC_RUN_DIR/samba-ad-seed.log" 2>&1 ||
    die "setting primary groups failed; the end of the seed log follows:
$(tail -n 20 "$DIRSYNC_RUN_DIR/samba-ad-seed.log")"
}

start() {
  install
  [ "$(id -u)" = 0 ] || die "Samba AD needs root"
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    die "Samba AD already runs for this run folder ($DIRSYNC_RUN_DIR): stop it first"
  fi
  local port
  for port in "${PORTS[@]}"; do
    if listening "$port"; then
      die "port $port of 127.0.0.1 is taken, and Samba AD cannot use another one (another run's Samba AD, or an LDAP server?):
$(ss -ltnp "sport = :$port" 2>/dev/null || true)"
    fi
  done

  rm -rf "$dir"
  mkdir -p "$dir"
  local admin_pass svc_pass conf="$dir/etc/smb.conf" t0=$EPOCHREALTIME
  admin_pass=$(password)
  svc_pass=$(password)

  # ldb:nosync: no fsync per write (seeding takes 5 s instead of 35 s); a test
  # domain need not survive a crash of the machine.
  log "provisioning Samba AD domain $REALM"
  samba-tool domain provision --targetdir="$dir" --realm="$REALM" --domain="$DOMAIN" \
      --adminpass="$admin_pass" --server-role=dc --dns-backend=NONE --use-rfc2307 \
      --host-name=dc1 --host-ip=127.0.0.1 \
      --option="interfaces=127.0.0.1" --option="bind interfaces only=yes" \
      --option="ldb:nosync=true" \
      >"$DIRSYNC_RUN_DIR/samba-ad-provision.log" 2>&1 ||
    die "samba-tool domain provision failed; its log follows:
$(tail -n 40 "$DIRSYNC_RUN_DIR/samba-ad-provision.log")"
  local t1=$EPOCHREALTIME
  make_tls "$dir/tls"

  # LDAP only; simple binds without TLS allowed (tests use both ldap:// and
  # ldaps://); our certificate; every file inside the run folder.
  mkdir -p "$dir/run" "$dir/log"
  sed -i -e 's/^\s*server services\s*=.*/\tserver services = ldap/' \
         -e '/^\s*log file\s*=/d' -e '/^\s*logging\s*=/d' "$conf"
  sed -i "/^\[global\]/a\\
\tldap server require strong auth = no\\
\ttls enabled = yes\\
\ttls keyfile = $dir/tls/server.key\\
\ttls certfile = $dir/tls/server.pem\\
\ttls cafile = $dir/tls/ca.pem\\
\tpid directory = $dir/run\\
\tncalrpc dir = $dir/run/ncalrpc\\
\tlog file = $dir/log/%m.log" "$conf"

  # Its own process group, so that stop ends every process it makes.
  setsid samba -F -M single -s "$conf" --debug-stdout --maximum-runtime="$MAX_RUNTIME" \
    </dev/null >"$DIRSYNC_RUN_DIR/samba-ad.log" 2>&1 &
  echo $! >"$pidfile"
  wait_port 389 samba-ad 60 "$!"
  wait_port 636 samba-ad 60 "$!"
  local t2=$EPOCHREALTIME
  log "Samba AD listens on 127.0.0.1:389 and :636 (provisioned in $(since "$t0" "$t1")s, started in $(since "$t1" "$t2")s)"

  # Seed over LDAPS: it checks our certificate, and Windows only takes
  # passwords (unicodePwd) over an encrypted connection.
  python3 "$here/ldap/ad-seed.py" "$DOMAIN_DN" "$svc_pass" >"$dir/seed.ldif"
  LDAPTLS_CACERT="$dir/tls/ca.pem" ldapadd -x -H ldaps://127.0.0.1:636 \
      -D "CN=Administrator,CN=Users,$DOMAIN_DN" -w "$admin_pass" -f "$dir/seed.ldif" \
      >"$DIRSYNC_RUN_DIR/samba-ad-seed.log" 2>&1 ||
    die "seeding Samba AD failed; the end of its log follows:
$(tail -n 20 "$DIRSYNC_RUN_DIR/samba-ad-seed.log")"
  seed_primary_groups "$admin_pass"
  log "Samba AD seeded in $(since "$t2")s"

  cat <<EOF | tee "$dir/env"
export DIRSYNC_TEST_AD_URL=ldap://127.0.0.1:389
export DIRSYNC_TEST_AD_LDAPS_URL=ldaps://localhost:636
export DIRSYNC_TEST_AD_CA=$dir/tls/ca.pem
export DIRSYNC_TEST_AD_DOMAIN_DN=$DOMAIN_DN
export DIRSYNC_TEST_AD_BASE_DN=OU=Dirsync,$DOMAIN_DN
export DIRSYNC_TEST_AD_BIND_DN='CN=svc-dirsync,OU=Service Accounts,$DOMAIN_DN'
export DIRSYNC_TEST_AD_PASSWORD=$svc_pass
export DIRSYNC_TEST_AD_ADMIN_DN=CN=Administrator,CN=Users,$DOMAIN_DN
export DIRSYNC_TEST_AD_ADMIN_PASSWORD=$admin_pass
export DIRSYNC_TEST_AD_SMBCONF=$conf
EOF
}

stop() {
  [ -f "$pidfile" ] || return 0
  local pid
  pid=$(cat "$pidfile")
  kill -TERM -- "-$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 -- "-$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$pidfile"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  *) die "usage: $0 install|start|stop" ;;
esac
