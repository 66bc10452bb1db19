package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/workcell/workcell/api"
)

type ctxKey int

const uidKey ctxKey = 0

// maxBody bounds a request body; every body of this API is small.
const maxBody = 1 << 20

// Server is the control server on the unix socket.
type Server struct {
	d    *Daemon
	srv  *http.Server
	ln   net.Listener
	path string
	// limits are the connection budgets (connlimit_linux.go).
	limits *connLimiter
	// refusals keeps refused requests to a few log lines.
	refusals logLimiter
}

// Listen opens the control socket. The socket is world-connectable on
// purpose: who may do what is decided per request from SO_PEERCRED. A
// stale socket is replaced; a live one (another daemon) is an error.
func (d *Daemon) Listen(ctx context.Context) (*Server, error) {
	path := d.cfg.Socket
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("make socket folder: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("socket %s: another workcelld is listening", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(true)
	if err := os.Chmod(path, 0o666); err != nil {
		ln.Close()
		return nil, fmt.Errorf("chmod socket %s: %w", path, err)
	}
	return d.ListenOn(ln, path), nil
}

// ListenOn serves the control API on ln, a unix socket listener someone
// else made: Android's init creates /dev/socket/workcelld (owner, mode and
// SELinux label from the .rc) and hands it over in ANDROID_SOCKET_workcelld.
// The daemon neither chmods nor unlinks such a socket: init owns its path.
// Authorization is still per request from SO_PEERCRED.
func (d *Daemon) ListenOn(ln net.Listener, path string) *Server {
	s := &Server{d: d, path: path, limits: newConnLimiter(d.cfg, d.log)}
	s.ln = &limitListener{Listener: ln, l: s.limits}
	lim := d.cfg.Server
	s.srv = &http.Server{
		Handler:           s.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		// ReadTimeout bounds the body too; each handler lifts it once
		// the body is read (liftReadDeadline), as it would otherwise
		// cancel any request that runs longer, a stop's grace or a stream.
		ReadTimeout:    time.Duration(lim.ReadTimeout),
		IdleTimeout:    time.Duration(lim.IdleTimeout),
		MaxHeaderBytes: 16 << 10,
		ConnContext:    s.limits.connContext,
		ConnState:      s.limits.connState,
		ErrorLog:       nil,
	}
	return s
}

// Serve answers requests until Close.
func (s *Server) Serve() error {
	err := s.srv.Serve(s.ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Close closes the socket and ends every open request, streams included.
func (s *Server) Close() error { return s.srv.Close() }

func peerUID(c net.Conn) int {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return -1
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return -1
	}
	uid := -1
	_ = raw.Control(func(fd uintptr) {
		cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if err == nil {
			uid = int(cred.Uid)
		}
	})
	return uid
}

func uidOf(r *http.Request) int {
	if uid, ok := r.Context().Value(uidKey).(int); ok {
		return uid
	}
	return -1
}

type handler func(w http.ResponseWriter, r *http.Request) error

// route registers a handler for a pattern, for callers with at least role
// need; what names the action in a refusal.
type route func(pattern string, need role, what string, fn handler)

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	v := "/" + api.Version
	h := func(pattern string, need role, what string, fn handler) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			if err := authorize(uidOf(r), s.d.cfg, need, what); err != nil {
				s.refused(w, r, err)
				return
			}
			liftReadDeadline(w, r)
			if t := ticketOf(r); t != nil {
				defer s.limits.releaseHijacked(t) // exec's connection is closed by now
			}
			if err := fn(w, r); err != nil {
				writeError(w, err)
			}
		})
	}
	h("GET "+v+"/version", roleOwner, "", func(w http.ResponseWriter, r *http.Request) error {
		return writeJSON(w, http.StatusOK, s.d.Version())
	})
	h("GET "+v+"/profiles", roleOwner, "", func(w http.ResponseWriter, r *http.Request) error {
		return writeJSON(w, http.StatusOK, s.d.Profiles(r.Context()))
	})
	h("POST "+v+"/profiles", roleAdmin, "install profiles", func(w http.ResponseWriter, r *http.Request) error {
		var req api.InstallRequest
		if err := decodeBody(r, &req, true); err != nil {
			return err
		}
		p, err := s.d.Install(r.Context(), req)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusCreated, p)
	})
	h("GET "+v+"/profiles/{name}", roleOwner, "", func(w http.ResponseWriter, r *http.Request) error {
		p, err := s.d.Profile(r.Context(), r.PathValue("name"))
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, p)
	})
	h("DELETE "+v+"/profiles/{name}", roleAdmin, "remove profiles", func(w http.ResponseWriter, r *http.Request) error {
		if err := s.d.Remove(r.Context(), r.PathValue("name")); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
	h("POST "+v+"/profiles/{name}/{action}", roleOwner, "", s.action)
	h("GET "+v+"/profiles/{name}/stats", roleOwner, "", func(w http.ResponseWriter, r *http.Request) error {
		st, err := s.d.Stats(r.Context(), r.PathValue("name"))
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, st)
	})
	h("GET "+v+"/profiles/{name}/logs", roleOwner, "", s.logs)
	h("GET "+v+"/events", roleOwner, "", s.events)
	// Each concern adds its endpoints from its own file.
	s.networkRoutes(h)
	s.storageRoutes(h)
	s.binderRoutes(h)
	s.doctorRoutes(h)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if err := authorize(uidOf(r), s.d.cfg, roleOwner, ""); err != nil {
			s.refused(w, r, err)
			return
		}
		writeError(w, api.Errorf(api.ErrNotFound, "no such endpoint: %s %s", clip(r.Method, 16), clip(r.URL.Path, clipMax)))
	})
	return mux
}

// refused answers a request its caller may not make. The log line is
// bounded (the path is the caller's, of any length) and, per uid, one in
// logEvery; a uid with no role at all gets its connection closed.
func (s *Server) refused(w http.ResponseWriter, r *http.Request, err error) {
	uid := uidOf(r)
	if roleOf(uid, s.d.cfg) == roleNone {
		w.Header().Set("Connection", "close")
	}
	if n, ok := s.refusals.allow(uid, time.Now()); ok {
		s.d.log.Warn("request refused", "uid", uid, "method", clip(r.Method, 16), "path", clip(r.URL.Path, clipMax),
			"err", err, "refused_since_last_line", n)
	}
	writeError(w, err)
}

// liftReadDeadline lifts the connection's read deadline (ReadTimeout)
// once the request's body has been read: past that point net/http would
// cancel the request's context when the deadline passes, and a handler
// may rightly run longer (a stop's grace, a stream). The client hanging
// up still cancels it.
func liftReadDeadline(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	if r.Body == nil || r.Body == http.NoBody {
		_ = rc.SetReadDeadline(time.Time{})
		return
	}
	r.Body = &liftOnEOF{ReadCloser: r.Body, rc: rc}
}

type liftOnEOF struct {
	io.ReadCloser
	rc *http.ResponseController
}

func (b *liftOnEOF) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

func (s *Server) action(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	var (
		p   api.Profile
		err error
	)
	switch act := r.PathValue("action"); act {
	case "start":
		var req api.StartRequest
		if err := decodeBody(r, &req, false); err != nil {
			return err
		}
		p, err = s.d.StartWith(r.Context(), name, req)
	case "stop":
		var req api.StopRequest
		if err := decodeBody(r, &req, false); err != nil {
			return err
		}
		timeout, terr := s.d.stopTimeout(req.TimeoutMillis)
		if terr != nil {
			return terr
		}
		p, err = s.d.Stop(r.Context(), name, timeout)
	case "off":
		p, err = s.d.Off(r.Context(), name)
	case "on":
		p, err = s.d.On(r.Context(), name)
	case "exec":
		return s.exec(w, r, name)
	default:
		return api.Errorf(api.ErrNotFound, "no such action %q: want start, stop, off, on or exec", clip(act, 32))
	}
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, p)
}

// decodeBody reads a JSON body strictly: unknown fields, wrong types and
// trailing data are errors naming what was wrong. An empty body is fine
// unless required.
func decodeBody(r *http.Request, v any, required bool) error {
	b, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxBody))
	if err != nil {
		return api.Errorf(api.ErrInvalidArgument, "request body: %w", err)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		if required {
			return api.Errorf(api.ErrInvalidArgument, "request body: a JSON object is required")
		}
		return nil
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return api.Errorf(api.ErrInvalidArgument, "request body: content type %q: want application/json", clip(ct, 64))
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return api.Errorf(api.ErrInvalidArgument, "request body: %s", describeJSONError(err))
	}
	if dec.More() {
		return api.Errorf(api.ErrInvalidArgument, "request body: unexpected data after the JSON object")
	}
	return nil
}

func describeJSONError(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("field %q: got a JSON %s, want %s", te.Field, te.Value, te.Type)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("invalid JSON at byte %d: %v", se.Offset, se)
	}
	// Unknown fields are named by the client: bounded.
	return clip(strings.TrimPrefix(err.Error(), "json: "), clipMax)
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, err error) {
	body, status := api.ToBody(err)
	if d, ok := api.RetryAfter(err); ok && d > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt(int64(roundUp(d)/time.Second), 10))
	}
	_ = writeJSON(w, status, body)
}

// logs streams a profile's console log. The reader is registered with
// the profile, so that a lock, wipe or removal ends it (and closes its
// files) instead of failing on them.
func (s *Server) logs(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	ctx, done, err := s.d.readLogs(r.Context(), name)
	if err != nil {
		return err
	}
	defer done()
	follow := r.URL.Query().Get("follow") == "true" || r.URL.Query().Get("follow") == "1"
	return s.stream(ctx, w, r, "text/plain; charset=utf-8", func(ctx context.Context, w io.Writer, flush func()) error {
		return copyLogs(ctx, s.d.logsDir(name), follow, w, flush)
	})
}

func (s *Server) events(w http.ResponseWriter, r *http.Request) error {
	ch, cancel := s.d.Events()
	defer cancel()
	return s.stream(r.Context(), w, r, "application/x-ndjson", func(ctx context.Context, w io.Writer, flush func()) error {
		enc := json.NewEncoder(w)
		for {
			select {
			case <-ctx.Done():
				return nil
			case ev, ok := <-ch:
				if !ok {
					return nil
				}
				if err := enc.Encode(ev); err != nil {
					return err
				}
				flush()
			}
		}
	})
}
