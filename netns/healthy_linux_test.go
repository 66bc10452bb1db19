package netns

import (
	"context"
	"testing"

	"github.com/google/nftables"
)

func TestHealthySeesWhatEnsureWouldRepair(t *testing.T) {
	w := newWorld(t)
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
	c, err := w.mgr.hostConn()
	must(t, err)
	c.FlushTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: tableName})
	must(t, c.Flush())
	if w.mgr.Healthy(ctx, "p1", direct) {
		t.Fatal("healthy with the table flushed")
	}
	_, err = w.mgr.Ensure(ctx, "p1", direct)
	must(t, err)
	if !w.mgr.Healthy(ctx, "p1", direct) {
		t.Fatal("not healthy after Ensure repaired the table")
	}
	ipCmd(t, "-n", w.hostName, "link", "del", "wc-p1")
	if w.mgr.Healthy(ctx, "p1", direct) {
		t.Fatal("healthy with the veth deleted")
	}
}
