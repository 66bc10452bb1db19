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
	s := &Server{d: d, ln: ln, path: path}
	s.srv = &http.Server{
		Handler:           s.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, uidKey, peerUID(c))
		},
		ErrorLog: nil,
	}
	return s, nil
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
				s.d.log.Warn("request refused", "uid", uidOf(r), "path", r.URL.Path, "err", err)
				writeError(w, err)
				return
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
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if err := authorize(uidOf(r), s.d.cfg, roleOwner, ""); err != nil {
			writeError(w, err)
			return
		}
		writeError(w, api.Errorf(api.ErrNotFound, "no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	return mux
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
		if req.TimeoutMillis < 0 {
			return api.Errorf(api.ErrInvalidArgument, "timeout_ms %d: must not be negative", req.TimeoutMillis)
		}
		p, err = s.d.Stop(r.Context(), name, time.Duration(req.TimeoutMillis)*time.Millisecond)
	case "off":
		p, err = s.d.Off(r.Context(), name)
	case "on":
		p, err = s.d.On(r.Context(), name)
	case "exec":
		return s.exec(w, r, name)
	default:
		return api.Errorf(api.ErrNotFound, "no such action %q: want start, stop, off, on or exec", act)
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
		return api.Errorf(api.ErrInvalidArgument, "request body: content type %q: want application/json", ct)
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
	return strings.TrimPrefix(err.Error(), "json: ")
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, err error) {
	body, status := api.ToBody(err)
	_ = writeJSON(w, status, body)
}

func (s *Server) logs(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	p, err := s.d.Profile(r.Context(), name)
	if err != nil {
		return err
	}
	if p.State == api.StateLocked && p.Encrypted {
		return api.Errorf(api.ErrConflict, "profile %s is locked: its logs are encrypted with its data; unlock it first", name)
	}
	follow := r.URL.Query().Get("follow") == "true" || r.URL.Query().Get("follow") == "1"
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	rc := http.NewResponseController(w)
	w.WriteHeader(http.StatusOK)
	return copyLogs(r.Context(), s.d.logsDir(name), follow, w, func() { _ = rc.Flush() })
}

func (s *Server) events(w http.ResponseWriter, r *http.Request) error {
	ch, cancel := s.d.Events()
	defer cancel()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	enc := json.NewEncoder(w)
	for {
		select {
		case <-r.Context().Done():
			return nil
		case ev, ok := <-ch:
			if !ok {
				return nil
			}
			if err := enc.Encode(ev); err != nil {
				return nil
			}
			_ = rc.Flush()
		}
	}
}
