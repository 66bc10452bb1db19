package sandbox

import (
	"reflect"
	"testing"
)

// The bundle's process.user survives in the container's labels, which is
// how an adopting daemon knows whom exec runs as; a damaged label gives
// no user (exec is then refused) rather than root.
func TestUserLabel(t *testing.T) {
	for _, u := range []User{{}, {UID: 1000, GID: 1000}, {UID: 1, GID: 2, AdditionalGids: []uint32{3, 4}}} {
		got := userFromLabels([]string{"bundle=/x", u.label()})
		if got == nil || got.UID != u.UID || got.GID != u.GID || !reflect.DeepEqual(append([]uint32{}, got.AdditionalGids...), append([]uint32{}, u.AdditionalGids...)) {
			t.Errorf("round trip of %+v: %+v", u, got)
		}
	}
	for _, l := range []string{"", "workcell.exec-user=", "workcell.exec-user=1:2", "workcell.exec-user=x:2:", "workcell.exec-user=1:2:a", "workcell.exec-user=-1:0:"} {
		if got := userFromLabels([]string{l}); got != nil {
			t.Errorf("label %q gave %+v, want none", l, got)
		}
	}
}
