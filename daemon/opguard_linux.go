package daemon

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/workcell/workcell/api"
)

// Operations on a profile serialise on p.mu, and a stop holds it through
// init's grace: an owner's stop with a long timeout would make root's wipe
// wait it out. And a reader of the profile's logs (logs -f, the binder
// audit) keeps files of its encrypted folder open, so a lock could not
// evict the key. opGuard is what lets an admin operation cut a grace short
// and a lock, wipe or removal end the readers; it has its own mutex, never
// held across a wait.
type opGuard struct {
	// adminWaiting counts admin operations waiting for p.mu: a stop that
	// begins while one waits gets no grace.
	adminWaiting atomic.Int32
	mu           sync.Mutex
	// cut ends the grace of the stop in progress.
	cut context.CancelFunc
	// readers of the profile's logs, each with its end.
	readers map[*logReader]struct{}
}

type logReader struct {
	cancel context.CancelCauseFunc
	done   chan struct{}
}

// errProfileLocked and errProfileGone end a log reader; they reach the
// client as the stream's end reason.
var (
	errProfileLocked = errors.New("the profile was locked")
	errProfileGone   = errors.New("the profile was wiped or removed")
)

// preempt tells the operations on a profile that an admin operation (a
// wipe, lock or removal by root or the system uid) waits: a stop in its
// grace kills init at once, as does one that starts before the admin
// operation gets the profile. Call the returned func once it has it.
func (d *Daemon) preempt(name string) (done func()) {
	p := d.get(name)
	if p == nil {
		return func() {}
	}
	g := &p.ops
	g.adminWaiting.Add(1)
	g.mu.Lock()
	if g.cut != nil {
		g.cut()
	}
	g.mu.Unlock()
	return func() { g.adminWaiting.Add(-1) }
}

// graceCut is the cut context for a stop of p (p.mu is held); end it
// when the stop is done.
func (g *opGuard) graceCut() (context.Context, func()) {
	cut, cancel := context.WithCancel(context.Background())
	g.mu.Lock()
	g.cut = cancel
	g.mu.Unlock()
	// After publishing cut: a preempt either sees it or is counted here.
	if g.adminWaiting.Load() > 0 {
		cancel()
	}
	return cut, func() {
		g.mu.Lock()
		g.cut = nil
		g.mu.Unlock()
		cancel()
	}
}

// readerWait bounds how long a lock waits for ended readers to close their
// files; they end at once unless the host is stuck.
const readerWait = 5 * time.Second

// endReaders ends every reader of p's logs and waits until they have
// closed their files (bounded by readerWait). p.mu is held, so no new one
// can begin meanwhile.
func (g *opGuard) endReaders(why error) {
	g.mu.Lock()
	rs := make([]*logReader, 0, len(g.readers))
	for r := range g.readers {
		r.cancel(why)
		rs = append(rs, r)
	}
	g.mu.Unlock()
	deadline := time.NewTimer(readerWait)
	defer deadline.Stop()
	for _, r := range rs {
		select {
		case <-r.done:
		case <-deadline.C:
			return
		}
	}
}

// readLogs registers a reader of a profile's logs. It is refused while
// the profile is locked (its logs are encrypted with its data); its ctx
// ends when the profile is locked, wiped or removed. Call done when the
// reader has closed its files.
func (d *Daemon) readLogs(ctx context.Context, name string) (context.Context, func(), error) {
	p, err := d.lookup(name)
	if err != nil {
		return nil, nil, err
	}
	defer p.mu.Unlock()
	if p.rec.State == api.StateLocked && p.stor.encrypted {
		return nil, nil, api.Errorf(api.ErrConflict, "profile %s is locked: its logs are encrypted with its data; unlock it first", name)
	}
	rctx, cancel := context.WithCancelCause(ctx)
	r := &logReader{cancel: cancel, done: make(chan struct{})}
	g := &p.ops
	g.mu.Lock()
	if g.readers == nil {
		g.readers = map[*logReader]struct{}{}
	}
	g.readers[r] = struct{}{}
	g.mu.Unlock()
	return rctx, func() {
		g.mu.Lock()
		delete(g.readers, r)
		g.mu.Unlock()
		cancel(nil)
		close(r.done)
	}, nil
}

// stream answers with a long-lived body: copy writes it until its ctx
// ends. The connection's read deadline (ReadTimeout) is lifted, since a
// stream outlives it (the client hanging up still ends it); a write the
// client does not take within WriteStallTimeout ends the stream, and so
// does ctx ending while a write is stuck. Why the daemon ended it goes in
// the api.StreamEndTrailer trailer.
func (s *Server) stream(ctx context.Context, w http.ResponseWriter, r *http.Request, contentType string, copy func(ctx context.Context, w io.Writer, flush func()) error) error {
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	sw := &stallWriter{w: w, rc: rc, stall: time.Duration(s.d.cfg.Server.WriteStallTimeout)}
	stop := context.AfterFunc(ctx, sw.end)
	defer stop()
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Trailer", api.StreamEndTrailer)
	// One stream per connection: the deadlines set here are not the next
	// request's.
	h.Set("Connection", "close")
	w.WriteHeader(http.StatusOK)
	_ = sw.flush()
	err := copy(ctx, sw, func() { _ = sw.flush() })
	// The status is sent: what ended the stream goes in the trailer.
	if cause := context.Cause(ctx); cause != nil && r.Context().Err() == nil {
		h.Set(api.StreamEndTrailer, cause.Error())
	} else if err != nil && !errors.Is(err, errStreamEnded) {
		h.Set(api.StreamEndTrailer, oneLine(err))
	}
	sw.end()
	return nil
}

// stallWriter gives each write WriteStallTimeout; after end, writes
// fail and the one in progress gets a second to finish.
type stallWriter struct {
	w     io.Writer
	rc    *http.ResponseController
	stall time.Duration
	mu    sync.Mutex
	done  bool
}

var errStreamEnded = errors.New("stream ended")

func (s *stallWriter) arm() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return errStreamEnded
	}
	return s.rc.SetWriteDeadline(time.Now().Add(s.stall))
}

func (s *stallWriter) Write(b []byte) (int, error) {
	if err := s.arm(); err != nil {
		return 0, err
	}
	return s.w.Write(b)
}

func (s *stallWriter) flush() error {
	if err := s.arm(); err != nil {
		return err
	}
	return s.rc.Flush()
}

func (s *stallWriter) end() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.done {
		s.done = true
		_ = s.rc.SetWriteDeadline(time.Now().Add(time.Second))
	}
}

// lookupPreempt is lookup for an admin operation: it cuts short the grace
// of a stop that holds the profile, or that would begin before it.
func (d *Daemon) lookupPreempt(name string) (*profile, error) {
	if err := api.ValidName(name); err != nil {
		return nil, err
	}
	done := d.preempt(name)
	defer done()
	return d.lookup(name)
}

// stopTimeout reads a stop request's timeout_ms: 0 is the daemon's
// default, more than stop_timeout_max is refused.
func (d *Daemon) stopTimeout(ms int64) (time.Duration, error) {
	max := time.Duration(d.cfg.StopTimeoutMax)
	switch {
	case ms < 0:
		return 0, api.Errorf(api.ErrInvalidArgument, "timeout_ms %d: must not be negative", ms)
	case ms > max.Milliseconds():
		return 0, api.Errorf(api.ErrInvalidArgument, "timeout_ms %d: above the maximum of %d (%s, the daemon's stop_timeout_max)", ms, max.Milliseconds(), max)
	}
	return time.Duration(ms) * time.Millisecond, nil
}
