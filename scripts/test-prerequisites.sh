#!/usr/bin/env bash
# Install and start what the test suite talks to: redis-server (the tests start a private one)
# and PostgreSQL. Anything that cannot be had stops the run here with a clear message.
set -euo pipefail

need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v pg_isready >/dev/null || need_apt+=(postgresql)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)  # browser tests (Playwright, never `playwright install`)
[ -x /usr/sbin/dovecot ] || need_apt+=(dovecot-imapd)  # a real IMAP server for `bounces poll`
if ((${#need_apt[@]})); then
  echo "installing: ${need_apt[*]}"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

PGHOST_ADDR=${PAPERMAIL_PG_HOST:-127.0.0.1}
if ! pg_isready -q -h "$PGHOST_ADDR" -p 5432; then
  echo "PostgreSQL is not answering on $PGHOST_ADDR:5432: trying to start it"
  if command -v pg_ctlcluster >/dev/null; then
    for version in $(ls /etc/postgresql 2>/dev/null); do
      pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    done
  fi
  for _ in $(seq 1 30); do pg_isready -q -h "$PGHOST_ADDR" -p 5432 && break; sleep 1; done
  if ! pg_isready -q -h "$PGHOST_ADDR" -p 5432; then
    echo "error: the tests need PostgreSQL on $PGHOST_ADDR:5432 (database 'test', trust auth)" >&2
    exit 1
  fi
fi
echo "prerequisites ready: $(redis-server --version | cut -d' ' -f1-3), PostgreSQL on $PGHOST_ADDR:5432"
