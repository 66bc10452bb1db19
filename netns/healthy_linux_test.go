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
