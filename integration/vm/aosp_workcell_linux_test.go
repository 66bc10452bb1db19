package vm

import (
	"encoding/binary"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
)

// TestAOSPInteropWithWorkcellInVM is the interop proof against workcell's
// own side: Android 10's `service` command and a libbinder service
// (aosp/interop_service.cpp), both built from AOSP's sources, talk to the
// binder package's ServiceManager and Proxy (internal/workcellsm), release
// Android 10.
//
//   - context: workcellsm is the context manager of /dev/workbinder;
//     interop_service registers with it (addService from real libbinder),
//     and `service list`, `check` and `call` find and reach it.
//   - proxy: AOSP's servicemanager and interop_service are the host's
//     context on /dev/binder; workcellsm serves /dev/workbinder and proxies
//     workcell.interop under a policy allowing workcell.IInterop code 1
//     only. A work app's code 1 reaches the host service through the
//     proxy, its code 2 gets a SecurityException, and the audit log has
//     both decisions.
func TestAOSPInteropWithWorkcellInVM(t *testing.T) {
	root := aospBuild(t)
	files := aospFiles(t, root)
	files["aosp/workcell.sh"] = "aosp/guest-workcell.sh"
	files["aosp/bin/workcellsm"] = buildStatic(t, "workcellsm", false, "./internal/workcellsm", "build")
	// busybox runs the applet its argv[0] names: /workcell/bin/sh is sh and
	// /workcell/bin/ash is ash, the same shell under two program names.
	res := bootConfig(t, Config{
		Programs: []Program{
			{Name: "sh", Path: busybox, Args: []string{"/aosp/workcell.sh", "context"}},
			{Name: "ash", Path: busybox, Args: []string{"/aosp/workcell.sh", "proxy"}},
		},
		Files:   files,
		Timeout: aospTimeout,
	})
	t.Run("context", func(t *testing.T) {
		out := res.Programs[0].Output
		checkInterop(t, "/dev/workbinder", out)
		if !t.Failed() {
			t.Logf("guest output (context):\n%s", out)
		}
	})
	t.Run("proxy", func(t *testing.T) {
		out := res.Programs[1].Output
		checkProxyInterop(t, out)
		t.Logf("guest output (proxy):\n%s", out)
	})
}

func checkProxyInterop(t *testing.T, out string) {
	steps := interopSteps(out)
	list := steps["/aosp/bin/service list"]
	// The proxy answers the interface query for the host service itself,
	// with the policy's descriptor.
	if !regexp.MustCompile(`(?m)^Found 1 services:`).MatchString(list) ||
		!regexp.MustCompile(`(?m)^0\s+workcell\.interop: \[workcell\.IInterop\]$`).MatchString(list) {
		t.Errorf("work's service list does not show exactly the proxied workcell.interop:\n%s", list)
	}
	if got := steps["/aosp/bin/service check workcell.interop"]; !strings.Contains(got, "Service workcell.interop: found") {
		t.Errorf("service check workcell.interop = %q, want found", got)
	}
	if got := steps["/aosp/bin/service check workcell.absent"]; !strings.Contains(got, "Service workcell.absent: not found") {
		t.Errorf("service check workcell.absent = %q, want not found", got)
	}

	call := steps["/aosp/bin/service call workcell.interop 1 s16 hello"]
	if p, err := parcelFromDump(call); err != nil {
		t.Errorf("service call workcell.interop 1 s16 hello: %v\n%s", err, call)
	} else if ex, s, err := readEcho(p); err != nil || ex != 0 || s != "hello" {
		t.Errorf("service call workcell.interop 1 s16 hello: reply exception %d string %q (%v), want 0 and \"hello\"\n%s", ex, s, err, call)
	}

	denied := steps["/aosp/bin/service call workcell.interop 2"]
	if p, err := parcelFromDump(denied); err != nil {
		t.Errorf("service call workcell.interop 2: %v\n%s", err, denied)
	} else if ex, msg, err := readEcho(p); err != nil || ex != -1 || !strings.Contains(msg, "code not allowed") {
		// EX_SECURITY is -1: the reply starts with 0xffffffff, then the message.
		t.Errorf("service call workcell.interop 2: exception %d message %q (%v), want -1 (EX_SECURITY) with \"code not allowed\"; first word %#x\n%s",
			ex, msg, err, firstWord(p), denied)
	}
	if got := steps["/aosp/bin/interop_service -d /dev/binder -c hello-from-libbinder"]; !strings.Contains(got, `workcell.interop echoed "hello-from-libbinder"`) {
		t.Errorf("libbinder's own proxy (BpInterop) did not get the echo through workcell's proxy:\n%s", got)
	}

	type record struct {
		Profile, Service, Direction, Descriptor, Verdict, Reason string
		Code                                                     uint32
	}
	var allowed, deniedRec bool
	for _, line := range strings.Split(strings.TrimSpace(steps["audit"]), "\n") {
		var r record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Errorf("audit line %q: %v", line, err)
			continue
		}
		if r.Profile != "work" || r.Service != "workcell.interop" || r.Descriptor != "workcell.IInterop" || r.Direction != "work-to-host" {
			continue
		}
		switch {
		case r.Code == 1 && r.Verdict == "allow":
			allowed = true
		case r.Code == 2 && r.Verdict == "deny" && r.Reason == "code not allowed":
			deniedRec = true
		}
	}
	if !allowed || !deniedRec {
		t.Errorf("audit log lacks the allowed code 1 (%v) or the denied code 2 (%v) of workcell.interop:\n%s", allowed, deniedRec, steps["audit"])
	}
}

func firstWord(p []byte) uint32 {
	if len(p) < 4 {
		return 0
	}
	return binary.LittleEndian.Uint32(p)
}
