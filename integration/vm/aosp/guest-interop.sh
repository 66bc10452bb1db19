#!/bin/sh
# Runs in the VM guest (busybox sh), copied to /aosp/interop.sh by
# integration/vm/aosp_linux_test.go next to build.sh's programs:
#
#   interop.sh [DEVICE]     DEVICE defaults to /dev/binder
#
# Starts AOSP's servicemanager as the context manager of DEVICE, registers
# workcell.interop (interop_service) with it, then runs AOSP's `service`
# command against them. Each step's output follows a "== step" line, which
# the host-side test asserts on; any failing step makes the script exit 1.
# The AOSP programs talk to /dev/binder: for another DEVICE it is bind-mounted
# over /dev/binder in a private mount namespace first.
set -u
dev=${1:-/dev/binder}
B=/aosp/bin
rc=0
step() { echo "== $*"; "$@" 2>&1; c=$?; [ $c -eq 0 ] || { echo "== exit $c: $*"; rc=1; }; }

if [ "$dev" != /dev/binder ] && [ -z "${INTEROP_NS:-}" ]; then
  exec env INTEROP_NS=1 unshare -m sh -c "mount --bind $dev /dev/binder && exec sh $0 $dev"
fi
[ -c "$dev" ] || { echo "== no binder device $dev"; exit 1; }

echo "== servicemanager $dev"
$B/servicemanager "$dev" >/tmp/servicemanager.log 2>&1 &
sm=$!
echo "== interop_service -d $dev"
$B/interop_service -d "$dev" >/tmp/interop_service.log 2>&1 &
svc=$!

# Wait (10 s at most) until the service is registered.
i=0
until $B/service check workcell.interop 2>/dev/null | grep -q ': found'; do
  i=$((i + 1))
  if [ $i -gt 50 ] || ! kill -0 $sm 2>/dev/null || ! kill -0 $svc 2>/dev/null; then
    echo "== workcell.interop never registered (servicemanager alive: $(kill -0 $sm 2>/dev/null && echo yes || echo no), interop_service alive: $(kill -0 $svc 2>/dev/null && echo yes || echo no))"
    rc=1
    break
  fi
  sleep 0.2
done

if [ $rc -eq 0 ]; then
  step $B/service list
  step $B/service check workcell.interop
  step $B/service check workcell.absent
  step $B/service call workcell.interop 1 s16 hello
  step $B/service call workcell.interop 2
  step $B/interop_service -d "$dev" -c hello-from-libbinder
fi

kill $svc $sm 2>/dev/null
wait $svc $sm 2>/dev/null
echo "== servicemanager log"
cat /tmp/servicemanager.log
echo "== interop_service log"
cat /tmp/interop_service.log
echo "== dmesg binder"
dmesg | grep -i binder | tail -n 20
echo "== end rc=$rc"
exit $rc
