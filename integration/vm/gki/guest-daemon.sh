#!/bin/sh
# TestDaemonOnGKIInVM's guest script (integration/vm/gki_daemon_vm_linux_test.go):
# runs in the GKI-shaped, Android-laid-out guest (busybox sh), with the
# static workcelld, workcell and binderapp in /wc. The guest plays a phone:
#
#   - Wi-Fi: wlan0 (192.168.50.1/24) is a veth into the namespace "router",
#     which holds the gateway (192.168.50.254), a LAN host (192.168.50.2:80)
#     and two internet hosts on its loopback: a web server (203.0.113.10:80)
#     and a VPN server (203.0.113.20:443). Routing is netd's: wlan0's routes
#     in table 1003, reached by "iif lo" (pref 22000), the local_network
#     table 97 (pref 20000), everything else unreachable (pref 32000) and
#     the main table empty; ip_forward is 0 until someone needs it.
#   - the phone's own services: 192.168.50.1:7000 and *:7002.
#   - binder: the host's context is /dev/binder (binderfs, Android's
#     symlink) with a service manager and workcell.echo (binderapp).
#
# The steps: install, start, exec, isolation probes, off/on, binder through
# the proxy, the split-network probes in direct, offline and vpn-lockdown,
# stop, lock, unlock, wipe, remove, and nothing left behind. Every
# failure prints "FAIL[<step>]: <what>"; the last line is
# "gki-daemon: PASS" or "gki-daemon: FAIL <steps>".
set -u
W=/wc
# The real iproute2 (Android's ip): busybox's sh would run its own ip
# applet for a bare "ip". Its wget is used without -T, which makes
# busybox 1.35's wget crash; timeout(1) bounds it instead.
IP=/bin/ip
export WORKCELL_SOCKET=/run/workcell/workcelld.sock
rc=0
STEP=setup
failed=""
out=/tmp/step.out
last=""

step() { STEP=$1; echo "=== STEP $1"; }
skipped=""
# do_step NAME FUNC PREREQ...: run FUNC as step NAME unless a step it
# needs failed or was skipped; then it is skipped, saying why.
do_step() {
  name=$1 fn=$2; shift 2
  for need in "$@"; do
    case " $failed $skipped " in *" $need "*)
      echo "=== STEP $name"; echo "SKIP[$name]: step $need did not succeed"; skipped="$skipped $name"; return ;;
    esac
  done
  step "$name"; "$fn"
}
fail() {
  echo "FAIL[$STEP]: $*"; rc=1
  case " $failed " in *" $STEP "*) ;; *) failed="$failed $STEP" ;; esac
}
# run CMD...: print and keep its output and exit code.
run() { last="$*"; echo "== $*"; "$@" >$out 2>&1; code=$?; cat $out; echo "== exit $code"; }
said() { tail -n 4 $out | tr '\n' ' ' | cut -c1-400; }
expect_code() { [ "$code" -eq "$1" ] || fail "'$last' exited $code, want $1: $(said)"; }
expect_fail() { [ "$code" -ne 0 ] || fail "'$last' succeeded: $1"; }
expect_out() { grep -q -- "$1" $out || fail "'$last': no \"$1\" in its output: $(said)"; }
expect_outi() { grep -qi -- "$1" $out || fail "'$last': no \"$1\" (any case) in its output: $(said)"; }
waitfor() { # waitfor WHAT CMD...: up to 30 s
  what=$1; shift; i=0
  until "$@" >/dev/null 2>&1; do
    i=$((i + 1)); [ $i -gt 150 ] && { fail "$what never happened"; return 1; }
    sleep 0.2
  done
}
wc_() { $W/workcell "$@"; }
inwork() { $W/workcell exec -T work -- "$@"; }
# reach NAME URL: work must get NAME's page from URL.
reach() { run inwork timeout 6 wget -q -O - "$2"; [ "$code" -eq 0 ] && grep -q "^$1$" $out || fail "work cannot reach $1 at $2 (exit $code): $(said)"; }
# blocked NAME URL: work must not reach URL at all.
blocked() { run inwork timeout 6 wget -q -O - "$2"; if [ "$code" -eq 0 ]; then fail "work reached $1 at $2: $(said)"; fi; }
snapshot() { # snapshot FILE: what a removed profile must leave as it was
  {
    # The daemon's own parents (made at the first start, kept like
    # libcontainer's) are left out by exact name: a profile's group below
    # one of them still shows.
    echo "# cgroups"; find /dev/memcg /dev/cpuctl /dev/cpuset /dev/blkio /sys/fs/cgroup -type d 2>/dev/null | sort |
      grep -vxE '(/dev/memcg|/dev/cpuctl|/sys/fs/cgroup)/workcell|/sys/fs/cgroup/workcell-binder' 
    echo "# iptables"; iptables-save | grep -v -e '^#' | sed 's/\[[0-9]*:[0-9]*\]//'
    echo "# ip6tables"; ip6tables-save | grep -v -e '^#' | sed 's/\[[0-9]*:[0-9]*\]//'
    echo "# links"; $IP -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | sort
    echo "# rules"; $IP rule show; $IP -6 rule show
    # Likewise the daemon's tmpfs for profiles' device nodes; what is in it
    # must go with the profile.
    echo "# mounts"; awk '{print $2, $3}' /proc/self/mounts | grep -vx '/run/workcell/dev tmpfs' | sort
    echo "# profile device nodes"; ls -A /run/workcell/dev 2>/dev/null
    echo "# binderfs"; ls /dev/binderfs; ls /run/workcell/binderfs 2>/dev/null
    echo "# loop"; for l in /sys/block/loop*; do [ -s $l/loop/backing_file ] && echo "${l##*/} $(cat $l/loop/backing_file)"; done
  } >"$1" 2>&1
}

echo "== the phone's shape"
uname -r
ls /dev/binderfs
grep -E ' (/dev/memcg|/dev/cpuctl|/sys/fs/cgroup|/dev/binderfs) ' /proc/self/mounts
iptables --version

step network-setup
mkdir -p /srv/inet /srv/lan /srv/vpn /srv/phone /srv/phone2 /data
echo inet >/srv/inet/index.html; echo lan >/srv/lan/index.html; echo vpn >/srv/vpn/index.html
echo phone >/srv/phone/index.html; echo phone2 >/srv/phone2/index.html
{
  $IP netns add router &&
  $IP link add wlan0 type veth peer name eth0 netns router &&
  $IP addr add 192.168.50.1/24 dev wlan0 && $IP link set wlan0 up &&
  $IP -n router link set lo up &&
  $IP -n router addr add 192.168.50.254/24 dev eth0 && $IP -n router addr add 192.168.50.2/24 dev eth0 &&
  $IP -n router link set eth0 up &&
  $IP -n router addr add 203.0.113.10/32 dev lo && $IP -n router addr add 203.0.113.20/32 dev lo &&
  $IP netns exec router httpd -p 203.0.113.10:80 -h /srv/inet &&
  $IP netns exec router httpd -p 192.168.50.2:80 -h /srv/lan &&
  $IP netns exec router httpd -p 203.0.113.20:443 -h /srv/vpn &&
  httpd -p 192.168.50.1:7000 -h /srv/phone && httpd -p 7002 -h /srv/phone2 &&
  # netd: wlan0's routes in its own table, the main table empty.
  $IP route del 192.168.50.0/24 dev wlan0 table main &&
  $IP route add 192.168.50.0/24 dev wlan0 table 1003 &&
  $IP route add default via 192.168.50.254 dev wlan0 table 1003 &&
  $IP rule add pref 20000 fwmark 0x0/0x10000 lookup 97 &&
  $IP rule add pref 22000 fwmark 0x0/0xffff iif lo lookup 1003 &&
  $IP rule add pref 32000 unreachable &&
  echo 0 >/proc/sys/net/ipv4/ip_forward
} || fail "could not build the phone's network"
run $IP route show table main; [ -s $out ] && fail "the main routing table is not empty"
run timeout 6 wget -q -O - http://203.0.113.10/; expect_code 0; expect_out '^inet$'
run timeout 6 wget -q -O - http://192.168.50.2/; expect_code 0; expect_out '^lan$'

step binder-host
$W/binderapp -d /dev/binder hostsm >/tmp/hostsm.log 2>&1 &
$W/binderapp -d /dev/binder echo workcell.echo >/tmp/echo.log 2>&1 &
waitfor "workcell.echo on the host's /dev/binder" sh -c "$W/binderapp -d /dev/binder list | grep -qx workcell.echo"

step daemon-start
$W/workcelld --config $W/daemon.json >/tmp/workcelld.log 2>&1 &
wcd=$!
i=0
until $W/workcell version >/dev/null 2>&1; do
  if ! kill -0 $wcd 2>/dev/null; then
    fail "workcelld exited at start: $(grep -iE 'error|fail|unknown|missing|refus|not ' /tmp/workcelld.log | tail -n 3 | tr '\n' ' ' | cut -c1-600)"
    break
  fi
  # A daemon that never answers says where it hangs: SIGQUIT makes Go
  # print every goroutine's stack into its log.
  i=$((i + 1)); [ $i -gt 150 ] && { fail "workcelld's socket never answered in 30 s"; kill -QUIT $wcd; sleep 1; break; }
  sleep 0.2
done
echo "== workcelld log so far"; cat /tmp/workcelld.log
run wc_ version; expect_code 0
snapshot /tmp/before

mkdir -p /tmp/bundle/rootfs/bin /tmp/bundle/rootfs/proc /tmp/bundle/rootfs/sys /tmp/bundle/rootfs/dev /tmp/bundle/rootfs/tmp /tmp/bundle/rootfs/etc
cp /bin/busybox /tmp/bundle/rootfs/bin/busybox
for a in sh sleep ls cat echo id ps kill mount mknod hostname wget httpd ip grep test touch timeout; do ln -s busybox /tmp/bundle/rootfs/bin/$a; done
cp $W/binderapp /tmp/bundle/rootfs/workapp
cp $W/config.json /tmp/bundle/config.json

s_doctor() {
# What the daemon found on this kernel and chose, as doctor says it.
run wc_ doctor; expect_code 0
expect_out 'shared-pid+hidepid'
expect_out 'uid-range'
expect_out 'iptables-legacy'
expect_out 'per-network tables'
expect_out 'Adiantum'
expect_out 'CONFIG_CGROUP_PIDS'
expect_out 'CONFIG_POSIX_MQUEUE'

}
s_install() {
# --pids: GKI has no pids controller; the limit must be a warning, not a failed start.
run wc_ install --memory 256M --cpus 1 --pids 200 work /tmp/bundle; expect_code 0

}
s_start() {
run wc_ start work; expect_code 0
started=$code
run wc_ status work; expect_out running
grep -qi pids $out || fail "status does not say that the pids limit cannot be enforced on this kernel: $(said)"
if [ "$started" -ne 0 ]; then
  echo "== workcelld log"; tail -n 40 /tmp/workcelld.log
fi

}
s_exec() {
run inwork echo hello-from-work; expect_code 0; expect_out '^hello-from-work$'
run inwork id -u; expect_code 0
wuid=$(tail -n 1 $out)

}
s_isolation() {
guest_host=$(hostname)
run inwork test -e /proc/$wcd; expect_fail "work sees the daemon (pid $wcd) in its /proc"
run inwork cat /proc/1/cmdline
[ "$code" -eq 0 ] && grep -q '/init' $out && fail "work sees the phone's init as pid 1"
run inwork ls /proc; grep -qx "$wcd" $out && fail "work's /proc lists the daemon's pid $wcd"
run inwork kill -0 $wcd; expect_fail "work can signal the daemon (pid $wcd)"
run inwork kill -0 1; expect_fail "work can signal pid 1"
run inwork mount -t tmpfs none /tmp; expect_fail "work can mount"
run inwork mknod /tmp/null c 1 3; expect_fail "work can mknod"
run inwork sh -c 'echo x >/proc/sys/kernel/domainname'; expect_fail "work can write /proc/sys"
run inwork sh -c 'echo h >/proc/sysrq-trigger'; expect_fail "work can write /proc/sysrq-trigger"
run inwork hostname; expect_code 0
grep -qx "$guest_host" $out && fail "work's hostname is the phone's ($guest_host)"
run inwork hostname work-evil
[ "$(hostname)" = "$guest_host" ] || fail "work changed the phone's hostname to $(hostname)"
# Work's processes are not root on the phone: their uid is the profile's.
inwork sleep 4321 >/dev/null 2>&1 &
sleeper=$!
waitfor "work's sleep 4321 on the phone" sh -c "grep -l 'sleep.4321' /proc/[0-9]*/cmdline 2>/dev/null | grep -q ."
for c in $(grep -l 'sleep.4321' /proc/[0-9]*/cmdline 2>/dev/null); do
  d=${c%/cmdline}; tr '\0' ' ' <$c | grep -q '^sleep 4321' || continue
  u=$(awk '/^Uid:/{print $2}' $d/status)
  echo "work's sleep: ${d#/proc/} uid $u"
  [ "$u" = 0 ] && fail "work runs as root (uid 0) on the phone"
done
kill $sleeper 2>/dev/null

}
s_off_on() {
run wc_ off work; expect_code 0
run wc_ status work; expect_out 'paused'
run wc_ on work; expect_code 0
run inwork echo thawed; expect_code 0; expect_out '^thawed$'

}
s_binder() {
run wc_ binder set work --allow workcell.echo=workcell.IEcho:1; expect_code 0
run wc_ binder services work; expect_code 0
expect_out "workcell.echo"
run inwork ls -l /dev/binder; expect_code 0
run inwork /workapp call workcell.echo 1 hello-through-the-proxy; expect_code 0
expect_out "reply: hello-through-the-proxy"
run inwork /workapp call workcell.echo 2 x; expect_code 3
expect_out "SecurityException"
run ls /run/workcell/binderfs; grep -q 'wc-work' $out || fail "no binderfs device wc-work in the daemon's binderfs: $(said)"

}
s_net_direct() {
run wc_ net show work; expect_code 0
waddr=$(awk '$1=="address"{print $2}' $out | cut -d/ -f1)
wgw=$(awk '$1=="address"{print $4}' $out | cut -d/ -f1)
echo "work: $waddr gateway $wgw"
[ -n "$waddr" ] || fail "net show gives work no address"
reach inet http://203.0.113.10/
blocked "a LAN host" http://192.168.50.2/
blocked "the phone's Wi-Fi address" http://192.168.50.1:7000/
blocked "the phone's service on all addresses" http://192.168.50.1:7002/
[ -n "$wgw" ] && blocked "the phone through work's gateway" "http://$wgw:7002/"
blocked "the LAN gateway" http://192.168.50.254/
run inwork sh -c 'mkdir -p /tmp/www && echo work >/tmp/www/index.html && httpd -p 8080 -h /tmp/www'; expect_code 0
if [ -n "$waddr" ]; then
  run timeout 6 wget -q -O - "http://$waddr:8080/"; expect_fail "the phone reached work's server at $waddr:8080"
  run $IP netns exec router timeout 6 wget -q -O - "http://$waddr:8080/"; expect_fail "the LAN reached work's server at $waddr:8080"
fi

}
s_net_offline() {
run wc_ net set work --mode offline; expect_code 0
blocked "the internet (offline)" http://203.0.113.10/
blocked "a LAN host (offline)" http://192.168.50.2/
blocked "the phone (offline)" http://192.168.50.1:7000/

}
s_net_vpn_lockdown() {
run wc_ net set work --mode vpn-lockdown --vpn-endpoint 203.0.113.20:443; expect_code 0
run wc_ stop work; expect_code 0
run wc_ start work; expect_code 0
run inwork test -c /dev/net/tun; expect_code 0
reach vpn http://203.0.113.20:443/
blocked "the internet outside the tunnel (kill switch)" http://203.0.113.10/
blocked "a LAN host (vpn-lockdown)" http://192.168.50.2/
blocked "the phone (vpn-lockdown)" http://192.168.50.1:7000/
run wc_ net set work --mode direct; expect_code 0

}
s_stop() {
run wc_ stop work; expect_code 0
run wc_ status work; expect_outi 'stopped\|prepared'
run wc_ start work; expect_code 0
run inwork sh -c 'echo kept >/tmp/../kept.txt'; expect_code 0

}
s_lock() {
run wc_ lock work; expect_code 0
run wc_ status work; expect_outi locked
run wc_ start work; expect_fail "a locked profile started"

}
s_unlock() {
run wc_ unlock work; expect_code 0
run wc_ start work; expect_code 0
run inwork cat /kept.txt; expect_code 0; expect_out '^kept$'

}
s_wipe() {
run wc_ wipe --yes work; expect_code 0
# wipe ends the profile: it is absent, as after remove.
run wc_ status work; expect_code 3

}
s_remove() {
# A second profile, started (network, binder context, cgroups, devices),
# then removed: nothing of either may remain (the leftovers step).
run wc_ install work2 /tmp/bundle; expect_code 0
run wc_ start work2; expect_code 0
run wc_ remove work2; expect_code 0
run wc_ status work2; expect_code 3

}
s_leftovers() {
# A profile's network namespace is made once and kept across starts; on a
# kernel without user namespaces it must not look like another owner's.
grep -q 'has another owner\|from another identity mode' /tmp/workcelld.log &&
  fail "the profile's network namespace was made again at a start: $(grep -m1 'another' /tmp/workcelld.log | cut -c1-300)"
sleep 1
snapshot /tmp/after
if ! diff /tmp/before /tmp/after >/tmp/leftover.diff; then
  cat /tmp/leftover.diff
  grep '^[-+][^-+]' /tmp/leftover.diff | head -n 20 | while read -r l; do echo "FAIL[leftovers]: changed by the profile's life: $l"; done
  rc=1; failed="$failed leftovers"
fi
for u in $(awk '/^Uid:/{print $2}' /proc/[0-9]*/status 2>/dev/null | sort -u); do
  [ "$u" -ge 100000 ] 2>/dev/null && fail "a process of uid $u (a profile's range) outlived remove"
done

}

do_step doctor s_doctor daemon-start
do_step install s_install daemon-start
do_step start s_start install
do_step exec s_exec start
do_step isolation s_isolation start
do_step off-on s_off_on start
do_step binder s_binder start binder-host
do_step net-direct s_net_direct start network-setup
do_step net-offline s_net_offline start network-setup
do_step net-vpn-lockdown s_net_vpn_lockdown start network-setup
do_step stop s_stop start
do_step lock s_lock start
do_step unlock s_unlock lock
do_step wipe s_wipe install
do_step remove s_remove install
do_step leftovers s_leftovers remove

kill $wcd 2>/dev/null
wait $wcd 2>/dev/null
echo "== workcelld log"
cat /tmp/workcelld.log
echo "== dmesg"
dmesg | tail -n 30
if [ $rc -eq 0 ]; then echo "gki-daemon: PASS"; else echo "gki-daemon: FAIL$failed"; fi
exit $rc
