package binder

import (
	"bufio"
	"fmt"
	"sync"
	"time"
)

// Limits bound what the apps of one profile can make workcelld and its
// node helpers hold, so that a hostile app cannot grow them without end.
// Past a limit the call gets an exception naming it (IllegalStateException;
// on Android 10, whose service manager has no exceptions, a failed status)
// and workcelld logs one bounded line.
type Limits struct {
	// Services is how many names the profile's apps may have registered
	// with its service manager at once (addService).
	Services int
	// DeathLinks is how many apps' binders the service manager watches for
	// death at once (one BC_REQUEST_DEATH_NOTIFICATION per registered
	// binder).
	DeathLinks int
	// ProxiedObjects is how many host objects a node helper stands for
	// over its life (the service looked up and every binder it hands out
	// to work, and every work binder passed to the host): each is a node
	// the helper keeps until it exits.
	ProxiedObjects int
}

// DefaultLimits are the limits of a profile unless the daemon's config
// says otherwise. A phone's whole system registers about 300 services;
// a work profile needs far fewer.
var DefaultLimits = Limits{Services: 256, DeathLinks: 256, ProxiedObjects: 4096}

// Validate checks that every limit is at least 1.
func (l Limits) Validate() error {
	for _, f := range []struct {
		name string
		v    int
	}{{"services", l.Services}, {"death links", l.DeathLinks}, {"proxied objects", l.ProxiedObjects}} {
		if f.v < 1 {
			return fmt.Errorf("binder: limit of %s %d: must be at least 1", f.name, f.v)
		}
	}
	return nil
}

// LimitError is a refusal because a Limits field is reached; the caller's
// exception says its message after "workcell: ".
type LimitError struct {
	What  string // "registered services", ...
	Limit int
	Knob  string // the daemon's config field that sets it
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("limit of %d %s reached for this profile (%s)", e.Limit, e.What, e.Knob)
}

// Config fields that set the limits, named in refusals.
const (
	KnobServices       = "binder_max_services"
	KnobDeathLinks     = "binder_max_death_links"
	KnobProxiedObjects = "binder_max_proxied_objects"
)

// refusalLog lets through one log line per kind of refusal a second, with
// the count of those held back since, so that an app hammering a limit
// cannot flood the daemon's log.
type refusalLog struct {
	mu   sync.Mutex
	last map[string]time.Time
	held map[string]int
}

// allow reports whether a line for kind may be written now, and how many
// were held back before it.
func (r *refusalLog) allow(kind string, now time.Time) (ok bool, held int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last == nil {
		r.last, r.held = map[string]time.Time{}, map[string]int{}
	}
	if t, seen := r.last[kind]; seen && now.Sub(t) < time.Second {
		r.held[kind]++
		return false, 0
	}
	r.last[kind] = now
	held = r.held[kind]
	r.held[kind] = 0
	return true, held
}

// boundedLines splits lines like bufio.ScanLines but gives at most 512
// bytes of each read that holds no end of line, dropping the rest.
func boundedLines(data []byte, atEOF bool) (int, []byte, error) {
	const max = 512
	adv, tok, err := bufio.ScanLines(data, atEOF)
	if err != nil || tok != nil || len(data) < max {
		if len(tok) > max {
			tok = tok[:max]
		}
		return adv, tok, err
	}
	// No newline in max bytes: pass the first max as a line and skip
	// bytes up to the next newline as they come.
	return len(data), data[:max], nil
}
