#!/bin/bash
# make run: workcelld in the foreground on a state directory inside the
# checkout, with a demo `work` profile (busybox) installed and started.
# From another shell: bin/workcell status
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "make run: workcelld needs root (namespaces, cgroups): run it with sudo" >&2
  exit 1
fi
state=$PWD/.run/state
bundle=$PWD/.run/demo-bundle
owner=${SUDO_UID:-${OWNER_UID:--1}}
sock=/run/workcell/workcelld.sock
mkdir -p .run
if [ ! -f "$bundle/config.json" ]; then
  bin/mkbundle "$bundle"
fi
(
  for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
  if ! bin/workcell --socket "$sock" status work >/dev/null 2>&1; then
    bin/workcell --socket "$sock" install work "$bundle"
  fi
  st=$(bin/workcell --socket "$sock" --json status work | sed -n 's/.*"state": "\(.*\)".*/\1/p')
  if [ "$st" = stopped ]; then bin/workcell --socket "$sock" start work; fi
  echo "make run: the demo profile is up; try: bin/workcell status, bin/workcell exec -- ps, bin/workcell off" >&2
) &
# The root filesystem here cannot encrypt: the profiles' data lives in a
# sparse ext4 image made with -O encrypt (1G, made on first run).
exec bin/workcelld --state-dir "$state" --socket "$sock" --owner-uid "$owner" --stop-timeout 2s \
  --store-image "$PWD/.run/store.img" --store-size 1G
