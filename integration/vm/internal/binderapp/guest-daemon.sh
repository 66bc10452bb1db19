#!/bin/sh
# Runs in the integration/vm guest (busybox sh), copied to /wc/guest.sh by
# TestDaemonBinderInVM with the static workcelld, workcell and binderapp
# next to it. The host's context is /dev/binder (its service manager and
# an echo service, both binderapp); workcelld gets /dev/workbinder from its
# binder_devices for the profile "work", whose container runs binderapp as
# /workapp against its /dev/binder. Each step's output follows a "== step"
# line; a failed expectation prints "FAIL:" and the script exits 1.
set -u
W=/wc
export WORKCELL_SOCKET=/run/workcell/workcelld.sock
rc=0
out=/tmp/step.out
# run CMD...: print and keep its output and exit code.
run() { echo "== $*"; "$@" >$out 2>&1; code=$?; cat $out; echo "== exit $code"; }
expect_code() { [ "$code" -eq "$1" ] || { echo "FAIL: exit $code, want $1"; rc=1; }; }
expect_out() { grep -q -- "$1" $out || { echo "FAIL: no \"$1\" in the output"; rc=1; }; }
waitfor() { # waitfor WHAT CMD...: up to 20 s
  what=$1; shift; i=0
  until "$@" >/dev/null 2>&1; do
    i=$((i + 1)); [ $i -gt 100 ] && { echo "FAIL: $what never happened"; return 1; }
    sleep 0.2
  done
}

[ -e /etc/resolv.conf ] || echo "nameserver 192.0.2.53" >/etc/resolv.conf

echo "== host side: service manager and echo service on /dev/binder"
$W/binderapp -d /dev/binder hostsm >/tmp/hostsm.log 2>&1 &
$W/binderapp -d /dev/binder echo workcell.echo >/tmp/echo.log 2>&1 &
echo_pid=$!
waitfor "workcell.echo on the host" sh -c "$W/binderapp -d /dev/binder list | grep -qx workcell.echo" || rc=1

echo "== workcelld"
$W/workcelld --config $W/daemon.json >/tmp/workcelld.log 2>&1 &
wcd=$!
waitfor "workcelld's socket" $W/workcell version || rc=1

mkdir -p /tmp/bundle/rootfs/bin /tmp/bundle/rootfs/proc /tmp/bundle/rootfs/sys /tmp/bundle/rootfs/dev /tmp/bundle/rootfs/tmp /tmp/bundle/rootfs/etc
cp /bin/busybox /tmp/bundle/rootfs/bin/busybox
for a in sh sleep ls cat; do ln -s busybox /tmp/bundle/rootfs/bin/$a; done
cp $W/binderapp /tmp/bundle/rootfs/workapp
cp $W/config.json /tmp/bundle/config.json

if [ $rc -eq 0 ]; then
  run $W/workcell install work /tmp/bundle; expect_code 0
  run $W/workcell net set work --mode offline; expect_code 0
  run $W/workcell binder set work --allow workcell.echo=workcell.IEcho:1; expect_code 0
  run $W/workcell start work; expect_code 0
  run $W/workcell binder services work; expect_code 0
  expect_out "on /dev/workbinder"; expect_out "workcell.echo .*workcell.IEcho .*1 .*yes"
  run $W/workcell exec work -- ls -l /dev/binder; expect_code 0
  # Work's root is not the guest's: the profile has its own user namespace,
  # and its root still opens its binder node.
  run $W/workcell version; expect_out "identity: userns"
  run $W/workcell exec work -- cat /proc/self/uid_map; expect_code 0
  grep -q "^ *0 *0 *4294967295" $out && { echo "FAIL: work runs with the guest's own ids"; rc=1; }
  run $W/workcell exec work -- /workapp call workcell.echo 1 hello-through-the-proxy; expect_code 0
  expect_out "reply: hello-through-the-proxy"
  # The node helper proxying workcell.echo is not root: uid 65534 (the
  # default binder_helper_uid), no capabilities, seccomp filter mode.
  helpers=0
  for p in /proc/[0-9]*; do
    tr '\0' ' ' <$p/cmdline 2>/dev/null | grep -q ' binder-node' || continue
    helpers=$((helpers + 1))
    echo "== node helper ${p#/proc/}"; grep -E '^(Uid|Gid|CapEff|CapPrm|CapBnd|NoNewPrivs|Seccomp):' $p/status | tee $out
    expect_out "^Uid:	65534	65534	65534	65534"; expect_out "^CapEff:	0000000000000000"
    expect_out "^CapBnd:	0000000000000000"; expect_out "^NoNewPrivs:	1"; expect_out "^Seccomp:	2"
  done
  [ $helpers -ge 1 ] || { echo "FAIL: no node helper process found"; rc=1; }
  run $W/workcell exec work -- /workapp call workcell.echo 2 x; expect_code 3
  expect_out "SecurityException"
  run $W/workcell exec work -- /workapp list; expect_code 0
  expect_out "^workcell.echo$"
  run $W/workcell binder services work --audit --follow=false; expect_code 0
  expect_out '"service":"workcell.echo".*"code":2,"verdict":"deny"'
  # The policy applies live: code 2 is allowed from the next lookup on.
  run $W/workcell binder set work --allow workcell.echo=workcell.IEcho:1-2; expect_code 0
  run $W/workcell exec work -- /workapp call workcell.echo 2 x; expect_code 0
  expect_out "reply: secret"
  # Stopped and started again, workcelld is the context's manager again.
  run $W/workcell stop work; expect_code 0
  run $W/workcell start work; expect_code 0
  run $W/workcell exec work -- /workapp call workcell.echo 1 again; expect_code 0
  expect_out "reply: again"
  # A work app's own service stays in the profile: workcelld lists it,
  # the host's context does not have it.
  run $W/workcell exec work -- sh -c "/workapp echo work.private >/dev/null 2>&1 &"; expect_code 0
  waitfor "work.private in the profile" sh -c "$W/workcell binder services work | grep -q 'own services: work.private'" || rc=1
  run $W/workcell binder services work; expect_out "own services: work.private"
  run $W/binderapp -d /dev/binder list; expect_code 0
  grep -q work.private $out && { echo "FAIL: the host's context lists work.private"; rc=1; }
  # A host service's death reaches a work app's death recipient, and the
  # restarted service is found again.
  run $W/workcell exec work -- sh -c "/workapp watch workcell.echo >/tmp/watch.out 2>&1 &"; expect_code 0
  waitfor "the work app watches workcell.echo" sh -c "$W/workcell exec work -- cat /tmp/watch.out | grep -q watching" || rc=1
  kill $echo_pid
  waitfor "the death notice in the work app" sh -c "$W/workcell exec work -- cat /tmp/watch.out | grep -q 'dead: workcell.echo'" || rc=1
  run $W/workcell exec work -- cat /tmp/watch.out; expect_out "dead: workcell.echo"
  $W/binderapp -d /dev/binder echo workcell.echo >/tmp/echo2.log 2>&1 &
  waitfor "workcell.echo back on the host" sh -c "$W/binderapp -d /dev/binder list | grep -qx workcell.echo" || rc=1
  run $W/workcell exec work -- /workapp call workcell.echo 1 reborn; expect_code 0
  expect_out "reply: reborn"
  # Exports: work.exported is the host's work.shared, code 1 only;
  # work.private stays invisible.
  run $W/workcell binder set work --allow workcell.echo=workcell.IEcho:1-2 --export work.exported@work.shared=workcell.IEcho:1; expect_code 0
  run $W/workcell exec work -- sh -c "/workapp echo work.exported >/dev/null 2>&1 &"; expect_code 0
  waitfor "work.shared on the host" sh -c "$W/binderapp -d /dev/binder list | grep -qx work.shared" || rc=1
  run $W/binderapp -d /dev/binder call work.shared 1 from-the-host; expect_code 0
  expect_out "reply: from-the-host"
  run $W/binderapp -d /dev/binder call work.shared 2 x; expect_code 3
  expect_out "SecurityException"
  run $W/workcell binder services work --audit --follow=false; expect_code 0
  expect_out '"service":"work.exported","direction":"host-to-work".*"code":2,"verdict":"deny"'
  run $W/workcell binder services work; expect_out "work.exported .*work.shared .*workcell.IEcho .*1 .*yes"
  run $W/binderapp -d /dev/binder list; expect_code 0
  grep -q -e work.private -e '^work.exported$' $out && { echo "FAIL: the host's context lists a work service by its own name"; rc=1; }
  run $W/binderapp -d /dev/binder call work.private 1 x; expect_code 4
  run $W/workcell stop work; expect_code 0
  waitfor "work.shared gone from the host" sh -c "! $W/binderapp -d /dev/binder list | grep -qx work.shared" || rc=1
  run $W/binderapp -d /dev/binder list; expect_code 0
  grep -q work.shared $out && { echo "FAIL: the export outlived the profile"; rc=1; }
fi

kill $wcd 2>/dev/null
wait $wcd 2>/dev/null
echo "== workcelld log"
cat /tmp/workcelld.log
echo "== host logs"
cat /tmp/hostsm.log /tmp/echo.log
echo "== dmesg binder"
dmesg | grep -i binder | tail -n 20
if [ $rc -eq 0 ]; then echo "daemon-binder: PASS"; else echo "daemon-binder: FAIL"; fi
exit $rc
