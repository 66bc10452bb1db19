package vm

import (
	"strings"
	"testing"
	"time"
)

// TestBinderProxyInVM runs the binder package's service manager and policy
// proxy tests (binder/proxy_driver_linux_test.go) against the real driver:
// a host context on /dev/binder with its own service manager and a Go echo
// service in its own process, workcelld's service manager and proxy on
// /dev/workbinder, and work apps calling through it. The node helper
// tests (binder/nodehelper_driver_linux_test.go) run the proxy as workcelld
// does, one helper process per proxied service and per export: death
// notices reaching work apps, and work services exported to the host. The
// guest prints the proxy's cost beside the direct call (BINDER-BENCH
// lines, and BINDER-BENCH-HELPER through a node helper), shown here.
//
// The suite speaks android11; the proxy tests that carry binder objects,
// fds and exceptions both ways run once more in every other release
// (WORKCELL_BINDER_TEST_RIG_RELEASE), so each release's wire format
// (interface token, stability words, object flags, service manager codes)
// goes through the real driver between separate processes, and
// TestServiceManagerProtocol speaks every release's service manager codes.
func TestBinderProxyInVM(t *testing.T) {
	bin := buildStatic(t, "binder.test", false, "../../binder", "test", "-c", "-tags", "binderdriver")
	devices := []string{"WORKCELL_BINDER_DEVICE=/dev/workbinder", "WORKCELL_BINDER_HOST_DEVICE=/dev/binder"}
	programs := []Program{{
		Name: "binderproxy",
		Path: bin,
		Args: []string{"-test.v", "-test.count=1", "-test.timeout=4m",
			"-test.run", "^(TestServiceManager|TestProxy|TestNodeHelper|TestExport)"},
		Env: devices,
	}}
	perRelease := []string{"TestProxyAllowsAndDeniesByPolicy", "TestProxyCallbackReachesWorkApp",
		"TestProxyFileDescriptors", "TestProxyHandsOutHostObjects", "TestProxyHostDeathReachesWork"}
	others := []string{"android10", "android12", "android13", "android14"}
	for _, rel := range others {
		programs = append(programs, Program{
			Name: "binderproxy-" + rel,
			Path: bin,
			Args: []string{"-test.v", "-test.count=1", "-test.timeout=2m",
				"-test.run", "^(" + strings.Join(perRelease, "|") + ")$"},
			Env: append([]string{"WORKCELL_BINDER_TEST_RIG_RELEASE=" + rel}, devices...),
		})
	}
	res := boot(t, programs...)
	for i, rel := range others {
		p := res.Programs[1+i]
		requirePassed(t, p, perRelease...)
		t.Logf("%s: %d proxy tests ran in %v (exit %d)", rel, len(perRelease), p.Duration.Round(time.Millisecond), p.Code)
	}
	p := res.Programs[0]
	requirePassed(t, p, "TestServiceManagerProtocol/android10", "TestServiceManagerProtocol/android11",
		"TestServiceManagerProtocol/android12", "TestServiceManagerProtocol/android13",
		"TestServiceManagerProtocol/android14")
	requirePassed(t, p, "TestServiceManagerProtocol", "TestProxyAllowsAndDeniesByPolicy",
		"TestProxyCallbackReachesWorkApp", "TestProxyFileDescriptors", "TestProxyHandsOutHostObjects",
		"TestProxyHostDeathReachesWork", "TestProxyConcurrentCallers", "TestProxySurvivesHostileClient",
		"TestProxyFigures", "TestNodeHelperDeathReachesWork", "TestNodeHelperPolicy", "TestExportToHost",
		"TestNodeHelperFigures", "TestProxyScatterGatherBuffers", "TestProxyFDArrays",
		"TestServiceManagerFDFlood", "TestNodeHelperFDFlood", "TestServiceManagerLimits",
		"TestNodeHelperSandboxed", "TestNodeHelperObjectLimit")
	var figures, helper int
	for _, line := range strings.Split(p.Output, "\n") {
		if i := strings.Index(line, "BINDER-BENCH "); i >= 0 {
			t.Log(strings.TrimSpace(line[i:]))
			figures++
		}
		if i := strings.Index(line, "BINDER-BENCH-HELPER "); i >= 0 {
			t.Log(strings.TrimSpace(line[i:]))
			helper++
		}
		if i := strings.Index(line, "death notice reached"); i >= 0 {
			t.Log(strings.TrimSpace(line[i:]))
		}
	}
	if figures != 3 || helper != 1 {
		t.Errorf("guest printed %d BINDER-BENCH and %d BINDER-BENCH-HELPER lines, want 3 and 1", figures, helper)
	}
}
