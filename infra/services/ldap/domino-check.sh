#!/usr/bin/env bash
# A quick look at the Domino-shaped directory without building anything:
#   eval "$(DIRSYNC_RUN_DIR=/tmp/run infra/services/slapd.sh start)"
#   infra/services/ldap/domino-check.sh
# Compares what a blank-base search sees with the manifest; the Rust test
# tests/tests/domino_directory.rs checks the same and more.
set -euo pipefail
: "${DIRSYNC_TEST_DOMINO_ROOT_URL:?run slapd.sh start and eval its output first}"
r=(-x -LLL -o ldif-wrap=no -H "$DIRSYNC_TEST_DOMINO_ROOT_URL"
   -D "$DIRSYNC_TEST_DOMINO_ROOT_BIND_DN" -w "$DIRSYNC_TEST_DOMINO_ROOT_PASSWORD" -b "")
want() { python3 -c "import json,sys; m=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" \
  "$DIRSYNC_TEST_DOMINO_ROOT_MANIFEST" "$1"; }
count() { grep -c '^dn:' || true; }
fail=0
check() { # NAME GOT WANT
  if [ "$2" = "$3" ]; then echo "ok   $1: $2"; else echo "FAIL $1: got $2, want $3"; fail=1; fi
}
check "people (paged, blank base)" \
  "$(ldapsearch "${r[@]}" -E pr=500/noprompt '(objectClass=dominoPerson)' 1.1 | count)" "$(want 'm["counts"]["people"]')"
check "groups (paged, blank base)" \
  "$(ldapsearch "${r[@]}" -E pr=500/noprompt '(objectClass=dominoGroup)' 1.1 | count)" "$(want 'm["counts"]["groups"]')"
check "people under o=AcmeEU" \
  "$(ldapsearch "${r[@]}" -E pr=500/noprompt '(&(objectClass=dominoPerson)(cn=*/AcmeEU))' 1.1 | count)" \
  "$(want 'm["counts"]["people_per_org"]["AcmeEU"]')"
rc=0
got=$(ldapsearch "${r[@]}" '(objectClass=*)' 1.1 2>/dev/null | count) || rc=$?
check "unpaged search: entries, result code" "$got,$rc" "$(want 'm["size_limit"]'),4"
unid=$(want 'm["people"][0]["dominoUNID"]')
check "dominoUNID asked for by name" \
  "$(ldapsearch "${r[@]}" "(dominoUNID=$unid)" dominoUNID | grep -c "^dominoUNID: $unid")" 1
check "dominoUNID returned for '*' (slapd: plain attribute)" \
  "$(ldapsearch "${r[@]}" "(dominoUNID=$unid)" '*' | grep -c '^dominoUNID:')" \
  "$(want '0 if m["unid_operational"] else 1')"
exit "$fail"
