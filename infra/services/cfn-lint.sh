#!/usr/bin/env bash
# cfn-lint from PyPI in a virtualenv of its own (it works offline once
# installed). `install` prints `export DIRSYNC_CFN_LINT=<path>`.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/common.sh"

venv="$DIRSYNC_CACHE/venv-cfn-lint"
case "${1:-}" in
  install)
    if [ ! -x "$venv/bin/cfn-lint" ]; then
      command -v python3 >/dev/null || die "cfn-lint needs python3"
      log "installing cfn-lint"
      python3 -m venv "$venv" >&2
      "$venv/bin/pip" install --quiet --disable-pip-version-check 'cfn-lint>=1,<2' >&2
    fi
    echo "export DIRSYNC_CFN_LINT=$venv/bin/cfn-lint"
    ;;
  *) die "usage: $0 install" ;;
esac
