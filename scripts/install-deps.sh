#!/usr/bin/env bash
# Installs what Presage's tests, demo and benchmarks need: npm packages (from package-lock.json)
# and the real external programs from Debian (NBD clients, fio, qemu-nbd, nbdkit, etcd, smartctl,
# chromium for the dashboard's browser tests). Safe to run repeatedly: it skips what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
want() { command -v "$1" >/dev/null 2>&1 || need_apt+=("$2"); }
want fio fio
want qemu-io qemu-utils
want qemu-nbd qemu-utils
want nbdinfo libnbd-bin
want nbdcopy libnbd-bin
want nbdkit nbdkit
want etcd etcd-server
want smartctl smartmontools
if [ "${PRESAGE_SKIP_BROWSER:-}" != 1 ]; then want chromium chromium; fi

if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: need root to apt-get install: ${need_apt[*]}" >&2
    exit 1
  fi
  echo "install-deps: apt-get install ${need_apt[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  # nbdkit's memory plugin lives in nbdkit-plugin-* on some releases; the base package has it on bookworm.
  apt-get install -y -qq --no-install-recommends $(printf '%s\n' "${need_apt[@]}" | sort -u) >/dev/null
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "install-deps: npm ci" >&2
  npm ci --no-audit --no-fund >/dev/null
fi
