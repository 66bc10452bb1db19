package daemon

import (
	"strings"
	"testing"
)

func TestIDPoolAllocate(t *testing.T) {
	pool := idPool{base: 1_000_000_000, size: 65536, slots: 3}
	slot := func(i uint32) idRange { return idRange{HostID: 1_000_000_000 + i*65536, Size: 65536} }
	tests := []struct {
		name    string
		inUse   map[string]idRange
		want    idRange
		wantErr string
	}{
		{"empty pool gives the first slot", nil, slot(0), ""},
		{"lowest free slot", map[string]idRange{"a": slot(0), "c": slot(2)}, slot(1), ""},
		{"a freed slot is reused", map[string]idRange{"b": slot(1)}, slot(0), ""},
		{"a range off the slot grid blocks both slots it touches",
			map[string]idRange{"old": {HostID: 1_000_000_000 + 65536/2, Size: 65536}}, slot(2), ""},
		{"a range below the base blocks nothing", map[string]idRange{"old": {HostID: 100000, Size: 65536}}, slot(0), ""},
		{"full pool", map[string]idRange{"a": slot(0), "b": slot(1), "c": slot(2)}, idRange{}, "all 3 ranges"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := pool.allocate(tt.inUse)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("allocate = %+v, %v; want an error with %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("allocate = %+v, %v; want %+v", got, err, tt.want)
			}
			for name, r := range tt.inUse {
				if uint64(r.HostID) < uint64(got.HostID)+uint64(got.Size) && uint64(got.HostID) < uint64(r.HostID)+uint64(r.Size) {
					t.Fatalf("allocated %+v overlaps %s's %+v", got, name, r)
				}
			}
		})
	}
}

func TestIDPoolDisjointUntilFull(t *testing.T) {
	pool := idPool{base: DefaultIDBase, size: IDRangeSize, slots: 64}
	inUse := map[string]idRange{}
	for i := 0; i < 64; i++ {
		r, err := pool.allocate(inUse)
		if err != nil {
			t.Fatalf("allocation %d: %v", i, err)
		}
		for name, o := range inUse {
			if o.HostID == r.HostID {
				t.Fatalf("allocation %d gave %s's range %d again", i, name, r.HostID)
			}
		}
		inUse[string(rune('a'+i))] = r
	}
	if _, err := pool.allocate(inUse); err == nil {
		t.Fatal("a 65th range was given out of 64")
	}
}
