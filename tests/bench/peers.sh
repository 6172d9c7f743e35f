#!/usr/bin/env bash
# axsync vs mbsync vs OfflineIMAP on the same generated mail, the same (latency-added)
# loopback network and the same machine. See tests/bench/peers.py and docs/performance.md.
#
#   tests/bench/peers.sh [--sizes 1000,10000] [--latencies 0,20] [--repeat 3]
#                        [--tools axsync,mbsync,offlineimap] [--out peers-results.json] [--keep]
#
# Installs (as root, Debian 12) dovecot-imapd, isync (mbsync), offlineimap3 and time
# (/usr/bin/time -v), creates the unprivileged user Dovecot's mail processes run as, makes
# the project venv if missing, then runs the benchmark. Nothing listens beyond 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

PACKAGES=(dovecot-imapd isync offlineimap3 time)
TESTUSER=axsynctest

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${db:Status-Status}\n' "$p" 2>/dev/null | grep -qx installed || missing+=("$p")
done
if [ "${#missing[@]}" != 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "peers.sh: missing Debian packages ${missing[*]}; run as root to install them" >&2
    exit 1
  fi
  echo "peers.sh: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  # Keep Debian's postinst from starting a system Dovecot on :143.
  POLICY=/usr/sbin/policy-rc.d
  if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$POLICY"
    chmod 755 "$POLICY"
    trap 'rm -f "$POLICY"' EXIT
  fi
  apt-get -q -o DPkg::Lock::Timeout=300 update >/dev/null
  apt-get -q -o DPkg::Lock::Timeout=300 install -y --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! id -u "$TESTUSER" >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || { echo "peers.sh: user $TESTUSER missing; run as root" >&2; exit 1; }
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$TESTUSER"
fi
if [ "$(id -u)" != 0 ]; then
  echo "peers.sh: must run as root (the Dovecot master binds, forks and drops privileges)" >&2
  exit 1
fi
[ -x .venv/bin/python ] || make .venv/.installed >/dev/null

exec .venv/bin/python tests/bench/peers.py "$@"
