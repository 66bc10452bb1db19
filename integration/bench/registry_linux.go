package main

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// Sections in the order the table shows them. Later issues register rows
// under "network", "storage" and "binder" from their own files; a section
// not listed here comes after these, in name order.
var sectionOrder = []string{"runtime", "network", "storage", "binder"}

// Row is one benchmark: it measures workcell beside its peer in the same
// run and returns one or more lines of the table. A row registers itself
// from an init function in the file of its section:
//
//	func init() { Register(Row{Section: "network", Name: "throughput", Run: throughput}) }
type Row struct {
	// Section groups rows of one concern ("runtime", "network", ...).
	Section string
	// Name selects the row with -rows (a section name selects all of its
	// rows).
	Name string
	Run  func(ctx context.Context, b *Bench) ([]Line, error)
}

// Line is one line of the table. Figures left unset print as "-".
type Line struct {
	Name string
	// Workcell and Peer are medians (or the single measured value).
	Workcell, Peer Figure
	// PeerName says what the peer was; it goes into the note.
	PeerName string
	// P99s are shown only where the row asks for them.
	WorkcellP99, PeerP99 Figure
	// Target is the budget in words ("<= 0.5x runc"); Over says it was
	// missed. Timing never fails the program.
	Target string
	Over   bool
	Note   string
	// Ratio, when not 0, is the ratio column instead of Workcell/Peer: for
	// rows that pair their samples round by round (the median of the
	// per-round ratios, not the ratio of the medians).
	Ratio float64
}

var registry []Row

// Register adds a row to the table. Names are unique across sections.
func Register(r Row) {
	if r.Section == "" || r.Name == "" || r.Run == nil {
		panic(fmt.Sprintf("bench: incomplete row %+v", r))
	}
	for _, o := range registry {
		if o.Name == r.Name {
			panic("bench: row " + r.Name + " registered twice")
		}
	}
	registry = append(registry, r)
}

// rows returns the registered rows in table order: by section, then in
// registration order.
func rows() []Row {
	rank := func(s string) int {
		if i := slices.Index(sectionOrder, s); i >= 0 {
			return i
		}
		return len(sectionOrder)
	}
	out := slices.Clone(registry)
	slices.SortStableFunc(out, func(a, b Row) int {
		if ra, rb := rank(a.Section), rank(b.Section); ra != rb {
			return ra - rb
		}
		if rank(a.Section) == len(sectionOrder) && a.Section != b.Section {
			if a.Section < b.Section {
				return -1
			}
			return 1
		}
		return 0
	})
	return out
}

// selectRows keeps the rows named in sel (row or section names); an empty
// selection keeps all.
func selectRows(all []Row, sel []string) ([]Row, error) {
	if len(sel) == 0 {
		return all, nil
	}
	var out []Row
	for _, s := range sel {
		found := false
		for _, r := range all {
			if r.Name == s || r.Section == s {
				found = true
				if !slices.ContainsFunc(out, func(o Row) bool { return o.Name == r.Name }) {
					out = append(out, r)
				}
			}
		}
		if !found {
			var names []string
			for _, r := range all {
				names = append(names, r.Section+"/"+r.Name)
			}
			return nil, fmt.Errorf("-rows: no row or section %q (have %v)", s, names)
		}
	}
	// Keep table order whatever the order of the flag.
	slices.SortStableFunc(out, func(a, b Row) int {
		return slices.IndexFunc(all, func(r Row) bool { return r.Name == a.Name }) -
			slices.IndexFunc(all, func(r Row) bool { return r.Name == b.Name })
	})
	return out, nil
}

// Figure is one measured value with its unit.
type Figure struct {
	Value float64
	Unit  string // "ms", "MiB", "" for a plain count
	Set   bool
}

// Millis is a duration in milliseconds.
func Millis(d time.Duration) Figure {
	return Figure{Value: float64(d) / float64(time.Millisecond), Unit: "ms", Set: true}
}

// MiB is a size in mebibytes.
func MiB(bytes uint64) Figure {
	return Figure{Value: float64(bytes) / (1 << 20), Unit: "MiB", Set: true}
}

// Count is a plain number.
func Count(n float64) Figure { return Figure{Value: n, Set: true} }

func (f Figure) String() string {
	if !f.Set {
		return "-"
	}
	var s string
	switch {
	case f.Unit == "" && f.Value == float64(int64(f.Value)):
		s = fmt.Sprintf("%d", int64(f.Value))
	case f.Value == 0:
		s = "0"
	case f.Value < 1:
		s = fmt.Sprintf("%.3f", f.Value)
	case f.Value < 100:
		s = fmt.Sprintf("%.2f", f.Value)
	default:
		s = fmt.Sprintf("%.1f", f.Value)
	}
	if f.Unit != "" {
		s += " " + f.Unit
	}
	return s
}

// ratio is workcell/peer, or "-" when there is no comparable peer.
func ratio(w, p Figure) string {
	if !w.Set || !p.Set || w.Unit != p.Unit || p.Value <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", w.Value/p.Value)
}
