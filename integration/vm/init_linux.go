package vm

import (
	"fmt"
	"strings"
)

// Console markers: /init prints them on the serial console, the host parses
// them. Each carries the boot's random nonce, so that a test's own output
// cannot forge a result.
const (
	markerPrefix = "WORKCELL-VM-"
	markReady    = "READY"  // setup done: mounts, cgroup v2, modules
	markSetup    = "SETUP"  // a setup step failed: step=<cmd> code=<c>
	markModule   = "MODULE" // name=<module> code=<insmod exit code>
	markBegin    = "BEGIN"  // name=<program>
	markResult   = "RESULT" // name=<program> code=<exit code>
	markDone     = "DONE"   // every program ran; poweroff follows
)

// guestProgramDir holds the programs in the guest; guestModuleDir the
// modules, named <name>.ko.
const (
	guestProgramDir = "/workcell/bin"
	guestModuleDir  = "/workcell/modules"
	guestWorkDir    = "/workcell/work"
)

// CgroupControllers are enabled in the guest's root cgroup.subtree_control.
var CgroupControllers = []string{"cpu", "memory", "pids"}

// initScript is the guest's /init. Stage one copies the initramfs into a
// tmpfs and switch_roots into it, because pivot_root (which libcontainer
// uses) refuses the initramfs's rootfs. Stage two mounts the usual
// filesystems and cgroup v2, loads the modules, runs each program with a
// clean environment and prints its exit code, then powers off.
func initScript(nonce string, mods []loadable, progs []Program, gomaxprocs int, android bool) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	p("#!/bin/busybox sh")
	p("# Written by integration/vm; see initScript.")
	p("export PATH=/bin HOME=/root TMPDIR=/tmp")
	p("mark() { m=$1; shift; echo %s$m nonce=%s \"$@\"; }", markerPrefix, nonce)
	p(`must() { "$@" || { c=$?; mark %s "step=$(echo "$*" | tr ' ' _)" code=$c; poweroff -f; sleep 60; }; }`, markSetup)
	p("if [ ! -e /.stage2 ]; then")
	p("  /bin/busybox --install -s /bin")
	p("  must mkdir -p /newroot")
	p("  must mount -t tmpfs -o mode=0755 tmpfs /newroot")
	p(`  for f in /*; do [ "$f" = /newroot ] || must cp -a "$f" /newroot/; done`)
	p("  : > /newroot/.stage2")
	p("  exec switch_root /newroot /init")
	p("  must false switch_root")
	p("fi")
	p("must mount -t proc proc /proc")
	p("must mount -t sysfs sysfs /sys")
	p("must mount -t devtmpfs devtmpfs /dev")
	p("mkdir -p /dev/pts /dev/shm /tmp /run")
	p("must mount -t devpts -o ptmxmode=0666 devpts /dev/pts")
	p("must mount -t tmpfs tmpfs /dev/shm")
	p("must mount -t tmpfs -o mode=1777 tmpfs /tmp")
	p("must mount -t tmpfs -o mode=0755 tmpfs /run")
	if android {
		b.WriteString(androidInit)
	} else {
		p("must mount -t cgroup2 cgroup2 /sys/fs/cgroup")
		ctrls := make([]string, len(CgroupControllers))
		for i, c := range CgroupControllers {
			ctrls[i] = "+" + c
		}
		p("echo %s > /sys/fs/cgroup/cgroup.subtree_control || must false enable %s", shellQuote(strings.Join(ctrls, " ")), strings.Join(CgroupControllers, ","))
	}
	p("must ip link set lo up")
	p("hostname workcell-vm")
	for _, m := range mods {
		args := []string{"insmod", guestModuleDir + "/" + m.name + ".ko"}
		args = append(args, m.params...)
		p("%s; mark %s name=%s code=$?", shellJoin(args), markModule, m.name)
	}
	p("mark %s kernel=$(uname -r) cgroup=$(tr ' ' , < /sys/fs/cgroup/cgroup.subtree_control)", markReady)
	for _, pr := range progs {
		env := []string{"env", "-i", "PATH=/bin", "HOME=/root", "TMPDIR=/tmp", fmt.Sprintf("GOMAXPROCS=%d", gomaxprocs)}
		env = append(env, pr.Env...)
		cmd := append(append(env, guestProgramDir+"/"+pr.Name), pr.Args...)
		dir := guestWorkDir + "/" + pr.Name
		p("mark %s name=%s", markBegin, pr.Name)
		p("mkdir -p %s; (cd %s && exec %s) </dev/null 2>&1; mark %s name=%s code=$?", dir, dir, shellJoin(cmd), markResult, pr.Name)
	}
	p("mark %s", markDone)
	p("sync")
	p("poweroff -f")
	p("sleep 60")
	return b.String()
}

func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./=,:") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = shellQuote(a)
	}
	return strings.Join(q, " ")
}
