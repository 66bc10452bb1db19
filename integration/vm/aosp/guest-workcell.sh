#!/bin/sh
# Runs in the VM guest (busybox sh), copied to /aosp/workcell.sh by
# integration/vm/aosp_workcell_linux_test.go next to build.sh's programs and
# workcellsm (integration/vm/internal/workcellsm, workcell's Go service
# manager and proxy):
#
#   workcell.sh context   workcellsm is the context manager of
#                         /dev/workbinder; AOSP's interop_service registers
#                         there and AOSP's `service` command uses it.
#   workcell.sh proxy     AOSP's servicemanager and interop_service are the
#                         host's context on /dev/binder; workcellsm manages
#                         /dev/workbinder and proxies workcell.interop with a
#                         policy allowing workcell.IInterop code 1 only; the
#                         `service` command plays a work app.
#
# Each step's output follows a "== step" line, which the host-side test
# asserts on; a step that exits non-zero makes the script exit 1. AOSP's
# `service` talks to /dev/binder: work apps get /dev/workbinder bind-mounted
# over it in a private mount namespace, as in a profile's container.
set -u
mode=${1:-context}
B=/aosp/bin
rc=0
step() { echo "== $*"; "$@" 2>&1; c=$?; [ $c -eq 0 ] || { echo "== exit $c: $*"; rc=1; }; }

# wait_for WHAT CMD...: retries CMD for 10 s.
wait_for() {
  what=$1; shift
  i=0
  until "$@" >/dev/null 2>&1; do
    i=$((i + 1))
    if [ $i -gt 50 ]; then
      echo "== $what: not after 10s"
      return 1
    fi
    sleep 0.2
  done
}

registered() { $B/service check workcell.interop 2>/dev/null | grep -q ': found'; }

# The work app's steps, in the namespace where /dev/binder is the profile's.
work_steps() {
  step $B/service list
  step $B/service check workcell.interop
  step $B/service check workcell.absent
  step $B/service call workcell.interop 1 s16 hello
  step $B/service call workcell.interop 2
  step $B/interop_service -d "$1" -c hello-from-libbinder
}

case $mode in
context)
  if [ -z "${INTEROP_NS:-}" ]; then
    exec env INTEROP_NS=1 unshare -m sh -c "mount --bind /dev/workbinder /dev/binder && exec sh $0 $mode"
  fi
  echo "== workcellsm -work /dev/workbinder"
  $B/workcellsm -work /dev/workbinder -release 10 >/tmp/workcellsm.log 2>&1 &
  wsm=$!
  wait_for "workcellsm ready" grep -q 'workcellsm: ready' /tmp/workcellsm.log || rc=1
  echo "== interop_service -d /dev/workbinder"
  $B/interop_service -d /dev/workbinder >/tmp/interop_service.log 2>&1 &
  svc=$!
  [ $rc -eq 0 ] && { wait_for "workcell.interop registered" registered || rc=1; }
  [ $rc -eq 0 ] && work_steps /dev/workbinder
  kill $svc $wsm 2>/dev/null
  wait $svc $wsm 2>/dev/null
  ;;
proxy)
  echo "== host: servicemanager /dev/binder"
  $B/servicemanager /dev/binder >/tmp/servicemanager.log 2>&1 &
  sm=$!
  echo "== host: interop_service -d /dev/binder"
  $B/interop_service -d /dev/binder >/tmp/interop_service.log 2>&1 &
  svc=$!
  wait_for "workcell.interop registered with the host" registered || rc=1
  echo "== workcellsm -work /dev/workbinder -host /dev/binder"
  $B/workcellsm -work /dev/workbinder -host /dev/binder -release 10 \
    -allow workcell.interop=workcell.IInterop:1 -audit /tmp/audit.jsonl >/tmp/workcellsm.log 2>&1 &
  wsm=$!
  wait_for "workcellsm ready" grep -q 'workcellsm: ready' /tmp/workcellsm.log || rc=1
  if [ $rc -eq 0 ]; then
    INTEROP_NS=1 unshare -m sh -c "mount --bind /dev/workbinder /dev/binder && exec sh $0 proxy-work" || rc=1
  fi
  echo "== audit"
  cat /tmp/audit.jsonl
  kill $wsm $svc $sm 2>/dev/null
  wait $wsm $svc $sm 2>/dev/null
  echo "== servicemanager log"
  cat /tmp/servicemanager.log
  ;;
proxy-work)
  work_steps /dev/binder
  exit $rc
  ;;
*)
  echo "usage: $0 context|proxy" >&2
  exit 2
  ;;
esac

echo "== workcellsm log"
cat /tmp/workcellsm.log
echo "== interop_service log"
cat /tmp/interop_service.log
echo "== dmesg binder"
dmesg | grep -i binder | tail -n 20
echo "== end rc=$rc"
exit $rc
