package netns

import (
	"context"
	"testing"
)

func TestHealthySeesWhatEnsureWouldRepair(t *testing.T) {
	eachBackend(t, testHealthySeesWhatEnsureWouldRepair)
}

func testHealthySeesWhatEnsureWouldRepair(t *testing.T, w *world) {
	w.ensure("p1", direct)
	ctx := context.Background()
	if !w.mgr.Healthy(ctx, "p1", direct) {
		t.Fatal("a freshly ensured profile is not healthy")
	}
	if w.mgr.Healthy(ctx, "p1", Settings{Mode: ModeOffline}) {
		t.Fatal("healthy with settings other than those applied")
	}
	if w.mgr.Healthy(ctx, "nope", direct) {
		t.Fatal("an unknown profile is healthy")
	}
	w.flushHostRules()
	if w.mgr.Healthy(ctx, "p1", direct) {
		t.Fatal("healthy with the table flushed")
	}
	_, err := w.mgr.Ensure(ctx, "p1", direct)
	must(t, err)
	if !w.mgr.Healthy(ctx, "p1", direct) {
		t.Fatal("not healthy after Ensure repaired the table")
	}
	ipCmd(t, "-n", w.hostName, "link", "del", "wc-p1")
	if w.mgr.Healthy(ctx, "p1", direct) {
		t.Fatal("healthy with the veth deleted")
	}
}

// A profile's traffic counters keep counting across a change of its rules
// (iptables reloads the chain; its counting rule's counters are carried
// over).
func TestCountersSurviveARuleChange(t *testing.T) { eachBackend(t, testCountersSurviveARuleChange) }

func testCountersSurviveARuleChange(t *testing.T, w *world) {
	a := w.ensure("p1", direct)
	ctx := context.Background()
	check(t, path{name: "traffic to count", ns: a.NSPath, network: "tcp", addr: inetServer + ":80", allowed: true})
	before, err := w.mgr.Counters(ctx, "p1")
	must(t, err)
	if before.OutPackets == 0 || before.InPackets == 0 {
		t.Fatalf("no traffic counted: %+v", before)
	}
	must(t, w.mgr.Apply(ctx, "p1", Settings{Mode: ModeDirect, Allow: []Rule{mustRule(inetServer + "/tcp:80")}}))
	after, err := w.mgr.Counters(ctx, "p1")
	must(t, err)
	if after.OutPackets < before.OutPackets || after.OutBytes < before.OutBytes || after.InPackets < before.InPackets {
		t.Errorf("counters went back after a rule change: %+v -> %+v", before, after)
	}
	check(t, path{name: "more traffic", ns: a.NSPath, network: "tcp", addr: inetServer + ":80", allowed: true})
	more, err := w.mgr.Counters(ctx, "p1")
	must(t, err)
	if more.OutPackets <= after.OutPackets {
		t.Errorf("counters do not count after a rule change: %+v -> %+v", after, more)
	}
}
