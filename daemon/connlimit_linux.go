package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/workcell/workcell/api"
)

// The control socket is world-connectable (a refusal names the uid), so
// what connections may cost is bounded when they are accepted, by the
// peer's uid as the kernel reports it (SO_PEERCRED):
//
//   - root and the system uid have a budget of their own (ConnMaxAdmin):
//     no one else's connections count against it;
//   - every other uid has at most ConnMaxPerUID, and all of them together
//     ConnMax;
//   - uids with no role (every request of theirs is refused) have at most
//     ConnMaxStranger together, and each connection is closed after
//     StrangerTimeout, answered or not.
//
// A connection over its budget is answered 429 naming the uid and closed
// at once: it costs the daemon no goroutine and no lasting descriptor.
type connLimiter struct {
	lim ServerLimits
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	perUID   map[int]int
	admin    int
	others   int
	stranger int
	tickets  map[net.Conn]*connTicket
	refusals logLimiter
	// lingering bounds the refused connections that are read to their
	// end before closing (see refuse).
	lingering chan struct{}
}

// maxLingering refused connections at a time wait for their client's
// request before closing, so that the client reads the 429 instead of a
// broken pipe; past it they are closed at once.
const maxLingering = 16

// connTicket is one admitted connection's place in the budgets.
type connTicket struct {
	uid      int
	role     role
	timer    *time.Timer
	hijacked bool
	released bool
}

func newConnLimiter(cfg Config, log *slog.Logger) *connLimiter {
	return &connLimiter{lim: cfg.Server, cfg: cfg, log: log, perUID: map[int]int{}, tickets: map[net.Conn]*connTicket{},
		lingering: make(chan struct{}, maxLingering)}
}

// admit takes a place for c from uid's budgets, or says why there is none.
func (l *connLimiter) admit(c net.Conn, uid int) (*connTicket, error) {
	r := roleOf(uid, l.cfg)
	l.mu.Lock()
	defer l.mu.Unlock()
	t := &connTicket{uid: uid, role: r}
	if r == roleAdmin {
		if l.admin >= l.lim.ConnMaxAdmin {
			return nil, api.Errorf(api.ErrThrottled, "uid %d has too many connections to workcelld open (root and the system uid may have %d together): close some", uid, l.lim.ConnMaxAdmin)
		}
		l.admin++
		l.tickets[c] = t
		return t, nil
	}
	switch {
	case r == roleNone && l.stranger >= l.lim.ConnMaxStranger:
		return nil, api.Errorf(api.ErrThrottled, "uid %d is not allowed to use workcelld, and too many such connections are open (at most %d)", uid, l.lim.ConnMaxStranger)
	case l.perUID[uid] >= l.lim.ConnMaxPerUID:
		return nil, api.Errorf(api.ErrThrottled, "uid %d has too many connections to workcelld open (at most %d per uid): close some", uid, l.lim.ConnMaxPerUID)
	case l.others >= l.lim.ConnMax:
		return nil, api.Errorf(api.ErrThrottled, "workcelld has too many connections open (at most %d, not counting root's): uid %d refused; try again later", l.lim.ConnMax, uid)
	}
	l.perUID[uid]++
	l.others++
	if r == roleNone {
		l.stranger++
		t.timer = time.AfterFunc(time.Duration(l.lim.StrangerTimeout), func() { c.Close() })
	}
	l.tickets[c] = t
	return t, nil
}

// ticket is c's ticket (nil if c was not admitted here).
func (l *connLimiter) ticket(c net.Conn) *connTicket {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.tickets[c]
}

// release gives c's place back; a hijacked connection (exec) keeps it
// until its handler is done (releaseHijacked).
func (l *connLimiter) release(c net.Conn, hijacked bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	t := l.tickets[c]
	if t == nil {
		return
	}
	if hijacked {
		t.hijacked = true
		delete(l.tickets, c) // the server forgets it; the handler's ticket stays
		return
	}
	delete(l.tickets, c)
	l.releaseLocked(t)
}

// releaseHijacked gives back the place of a connection hijacked by the
// handler that has now returned (and closed it).
func (l *connLimiter) releaseHijacked(t *connTicket) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if t.hijacked {
		l.releaseLocked(t)
	}
}

func (l *connLimiter) releaseLocked(t *connTicket) {
	if t.released {
		return
	}
	t.released = true
	if t.timer != nil {
		t.timer.Stop()
	}
	if t.role == roleAdmin {
		l.admin--
		return
	}
	l.others--
	if l.perUID[t.uid]--; l.perUID[t.uid] <= 0 {
		delete(l.perUID, t.uid)
	}
	if t.role == roleNone {
		l.stranger--
	}
}

// refuse answers a connection over its budget and closes it. The answer
// fits the socket's buffer, and the write may take 100 ms at most: the
// accept loop never waits on a client.
func (l *connLimiter) refuse(c net.Conn, uid int, err error) {
	body, status := api.ToBody(err)
	b, _ := json.Marshal(body)
	_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	_, _ = fmt.Fprintf(c, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s\n",
		status, http.StatusText(status), len(b)+1, b)
	select {
	case l.lingering <- struct{}{}:
		go func() {
			defer func() { <-l.lingering }()
			if uc, ok := c.(*net.UnixConn); ok {
				_ = uc.CloseWrite()
			}
			_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			_, _ = io.Copy(io.Discard, io.LimitReader(c, 64<<10))
			_ = c.Close()
		}()
	default:
		_ = c.Close()
	}
	if n, ok := l.refusals.allow(uid, time.Now()); ok {
		l.log.Warn("connection refused", "uid", uid, "err", err, "refused_since_last_line", n)
	}
}

// limitListener admits each accepted connection through a connLimiter.
type limitListener struct {
	net.Listener
	l *connLimiter
}

func (ll *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := ll.Listener.Accept()
		if err != nil {
			return nil, err
		}
		uid := peerUID(c)
		if _, err := ll.l.admit(c, uid); err != nil {
			ll.l.refuse(c, uid, err)
			continue
		}
		return c, nil
	}
}

// connState releases a connection's place when the server is done with it.
func (l *connLimiter) connState(c net.Conn, st http.ConnState) {
	switch st {
	case http.StateClosed:
		l.release(c, false)
	case http.StateHijacked:
		l.release(c, true)
	}
}

type ticketKey struct{}

// connContext puts the connection's uid and ticket in its requests'
// context.
func (l *connLimiter) connContext(ctx context.Context, c net.Conn) context.Context {
	t := l.ticket(c)
	uid := -1
	if t != nil {
		uid = t.uid
	} else {
		uid = peerUID(c)
	}
	return context.WithValue(context.WithValue(ctx, uidKey, uid), ticketKey{}, t)
}

func ticketOf(r *http.Request) *connTicket {
	t, _ := r.Context().Value(ticketKey{}).(*connTicket)
	return t
}
