package daemon

import (
	"fmt"
	"sync"
	"time"
	"unicode/utf8"
)

// Log lines and error messages that carry what a client sent (a path, a
// name, a header, a JSON key) carry at most clipMax bytes of it: a
// refused caller must not be able to write megabytes into the log.
const clipMax = 128

// clip cuts s to n bytes (at a rune boundary) and says how much was cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s...(%d more bytes)", s[:cut], len(s)-cut)
}

// logLimiter lets one line per uid per logEvery through, counting the
// rest, so that a flood of refused connections or requests is a few lines
// of the log, not one line each.
type logLimiter struct {
	mu   sync.Mutex
	last map[int]logSlot
}

type logSlot struct {
	at         time.Time
	suppressed int
}

const (
	logEvery = 10 * time.Second
	// logUIDs bounds the map: past it, it starts over (at worst a line
	// more per uid).
	logUIDs = 1024
)

// allow says whether a line for uid may be written at now, and how many
// were held back since the last one.
func (l *logLimiter) allow(uid int, now time.Time) (int, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil || len(l.last) >= logUIDs {
		l.last = map[int]logSlot{}
	}
	s, ok := l.last[uid]
	if ok && now.Sub(s.at) < logEvery {
		s.suppressed++
		l.last[uid] = s
		return 0, false
	}
	l.last[uid] = logSlot{at: now}
	return s.suppressed, true
}
