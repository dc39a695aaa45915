#!/usr/bin/env bash
# Installs the NATS server that the tests of remote ports (test/nats.test.ts) and bench/nats.js
# start on 127.0.0.1: Debian's nats-server package. The tests fail in CI without it.
set -euo pipefail
echo "== nats-server for the remote-port tests"
if command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ]; then
  echo "nats-server already installed: $(PATH="$PATH:/usr/sbin" nats-server --version)"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq nats-server >/dev/null
echo "nats-server installed: $(PATH="$PATH:/usr/sbin" nats-server --version)"
