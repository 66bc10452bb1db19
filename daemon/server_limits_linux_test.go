package daemon

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/workcell/workcell/api"
)

func limiterConfig() Config {
	cfg := DefaultConfig()
	cfg.OwnerUID, cfg.SystemUID = 1000, 1001
	cfg.Server.ConnMax, cfg.Server.ConnMaxPerUID, cfg.Server.ConnMaxStranger, cfg.Server.ConnMaxAdmin = 4, 3, 2, 2
	cfg.Server.StrangerTimeout = Duration(time.Hour)
	return cfg
}

func pipe(t *testing.T) net.Conn {
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	return a
}

func TestConnectionBudgets(t *testing.T) {
	l := newConnLimiter(limiterConfig(), slog.New(slog.DiscardHandler))
	admit := func(uid int, wantOK bool, want string) net.Conn {
		t.Helper()
		c := pipe(t)
		_, err := l.admit(c, uid)
		if wantOK != (err == nil) || (err != nil && (!errors.Is(err, api.ErrThrottled) || !strings.Contains(err.Error(), want))) {
			t.Fatalf("admit uid %d: %v; want ok=%v or an error with %q", uid, err, wantOK, want)
		}
		return c
	}
	// Strangers: two together, whoever they are; the refusal names the uid.
	s1 := admit(54321, true, "")
	admit(54321, true, "")
	admit(54321, false, "uid 54321")
	admit(54322, false, "uid 54322")
	// The owner: what is left of conn_max (4).
	admit(1000, true, "")
	o2 := admit(1000, true, "")
	admit(1000, false, "at most 4")
	// Root and the system uid have their own budget, full or not.
	admit(0, true, "")
	r2 := admit(1001, true, "")
	admit(0, false, "uid 0")
	// Places come back.
	l.release(s1, false)
	admit(54322, true, "")
	l.release(o2, false)
	l.release(o2, false) // twice is once
	o3 := admit(1000, true, "")
	admit(1000, false, "uid 1000")
	// A hijacked connection (exec) keeps its place until its handler ends.
	t3 := l.ticket(o3)
	l.release(o3, true)
	admit(1000, false, "uid 1000")
	l.releaseHijacked(t3)
	admit(1000, true, "")
	l.release(r2, false)
	admit(1001, true, "")
}

func TestConnectionsPerUID(t *testing.T) {
	cfg := limiterConfig()
	cfg.Server.ConnMax = 10
	l := newConnLimiter(cfg, slog.New(slog.DiscardHandler))
	for i := 0; i < 3; i++ {
		if _, err := l.admit(pipe(t), 1000); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.admit(pipe(t), 1000); err == nil || !strings.Contains(err.Error(), "uid 1000") || !strings.Contains(err.Error(), "at most 3 per uid") {
		t.Fatalf("4th connection of the owner: %v", err)
	}
}

func TestStrangerConnectionsAreShort(t *testing.T) {
	cfg := limiterConfig()
	cfg.Server.StrangerTimeout = Duration(20 * time.Millisecond)
	l := newConnLimiter(cfg, slog.New(slog.DiscardHandler))
	a, b := net.Pipe()
	defer b.Close()
	if _, err := l.admit(a, 54321); err != nil {
		t.Fatal(err)
	}
	// Nothing is ever sent: the daemon closes it by itself.
	b.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := b.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read on an idle stranger's connection: %v, want EOF (closed by the daemon)", err)
	}
}

func TestRefusedConnectionIsAnswered429(t *testing.T) {
	l := newConnLimiter(limiterConfig(), slog.New(slog.DiscardHandler))
	a, b := net.Pipe()
	defer b.Close()
	go l.refuse(a, 54321, api.Errorf(api.ErrThrottled, "uid %d has too many connections", 54321))
	got, _ := io.ReadAll(b)
	if !bytes.HasPrefix(got, []byte("HTTP/1.1 429 Too Many Requests\r\n")) || !bytes.Contains(got, []byte("uid 54321")) {
		t.Fatalf("refusal: %q", got)
	}
}

// The attack: a refused uid sends requests with paths of 100 KB, many
// times, to fill the daemon's log.
func TestRefusedRequestLogIsBounded(t *testing.T) {
	var logs bytes.Buffer
	cfg := limiterConfig()
	s := &Server{d: &Daemon{cfg: cfg, log: slog.New(slog.NewTextHandler(&logs, nil))}}
	h := s.routes()
	long := "/v1/profiles/" + strings.Repeat("a", 100_000) + "/start"
	do := func(uid int) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, long, nil)
		req = req.WithContext(context.WithValue(req.Context(), uidKey, uid))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	for i := 0; i < 100; i++ {
		rec := do(54321)
		if rec.Code != http.StatusForbidden || rec.Header().Get("Connection") != "close" || rec.Body.Len() > 512 {
			t.Fatalf("refused request: %d %v %d bytes", rec.Code, rec.Header(), rec.Body.Len())
		}
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 1 || len(lines[0]) > 512 || !strings.Contains(lines[0], "more bytes") || !strings.Contains(lines[0], "uid=54321") {
		t.Fatalf("100 refusals logged %d lines, the first %d bytes: %.300q", len(lines), len(lines[0]), lines[0])
	}
	// The owner's invalid name is answered with a bounded message.
	if rec := do(1000); rec.Code != http.StatusBadRequest || rec.Body.Len() > 512 {
		t.Fatalf("owner with a long name: %d, %d bytes", rec.Code, rec.Body.Len())
	}
}

func TestClip(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"short", "short"},
		{strings.Repeat("x", 10), strings.Repeat("x", 10)},
		{strings.Repeat("x", 12), "xxxxxxxxxx...(2 more bytes)"},
		{"ééééé€", "ééééé...(3 more bytes)"}, // never half a rune
	} {
		if got := clip(tc.in, 10); got != tc.want {
			t.Errorf("clip(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestStopTimeoutIsBounded(t *testing.T) {
	d := &Daemon{cfg: DefaultConfig()}
	if _, err := d.stopTimeout(10 * 3600 * 1000); !errors.Is(err, api.ErrInvalidArgument) || !strings.Contains(err.Error(), "timeout_ms 36000000") || !strings.Contains(err.Error(), "300000") {
		t.Fatalf("10 h: %v", err)
	}
	if got, err := d.stopTimeout(300000); err != nil || got != 5*time.Minute {
		t.Fatalf("5 min: %v %v", got, err)
	}
	if _, err := d.stopTimeout(-1); !errors.Is(err, api.ErrInvalidArgument) {
		t.Fatalf("negative: %v", err)
	}
}

// FuzzRefusedRequestLog sends requests with any path and method as a
// refused uid: the log line and the error answer stay bounded whatever the
// client put in them. (A path that is not clean is redirected by the mux,
// which echoes it to its own sender only; net/http bounds it at
// MaxHeaderBytes.)
func FuzzRefusedRequestLog(f *testing.F) {
	f.Add("GET", "/v1/profiles/"+strings.Repeat("a", 5000))
	f.Add("POST", "/v1/profiles/work/"+strings.Repeat("\x00\xff", 3000))
	f.Add(strings.Repeat("X", 1000), "/"+strings.Repeat("é", 2000))
	f.Fuzz(func(t *testing.T, method, path string) {
		var logs bytes.Buffer
		s := &Server{d: &Daemon{cfg: limiterConfig(), log: slog.New(slog.NewTextHandler(&logs, nil))}}
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Method, req.URL.Path = method, path
		req = req.WithContext(context.WithValue(req.Context(), uidKey, 54321))
		rec := httptest.NewRecorder()
		s.routes().ServeHTTP(rec, req)
		if strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") && rec.Body.Len() > 1024 {
			t.Fatalf("error answer of %d bytes", rec.Body.Len())
		}
		for _, line := range strings.Split(logs.String(), "\n") {
			if len(line) > 2048 {
				t.Fatalf("log line of %d bytes", len(line))
			}
		}
	})
}
