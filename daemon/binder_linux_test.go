package daemon

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/workcell/workcell/api"
	"github.com/workcell/workcell/binder"
	"github.com/workcell/workcell/sandbox"
)

func TestBinderPolicyFromTheWire(t *testing.T) {
	echo := func(codes ...string) api.BinderService {
		return api.BinderService{Name: "workcell.echo", Descriptor: "workcell.IEcho", Codes: codes}
	}
	for _, tc := range []struct {
		name    string
		in      api.BinderPolicy
		want    []binder.CodeRange // of the first service, when valid
		wantErr string
	}{
		{name: "empty", in: api.BinderPolicy{}},
		{name: "one code", in: api.BinderPolicy{Services: []api.BinderService{echo("1")}}, want: []binder.CodeRange{{First: 1, Last: 1}}},
		{name: "codes and ranges", in: api.BinderPolicy{Services: []api.BinderService{echo("1", "3-5", "0x10")}},
			want: []binder.CodeRange{{First: 1, Last: 1}, {First: 3, Last: 5}, {First: 16, Last: 16}}},
		{name: "last user code", in: api.BinderPolicy{Services: []api.BinderService{echo("16777215")}}, want: []binder.CodeRange{{First: 16777215, Last: 16777215}}},
		{name: "objects", in: api.BinderPolicy{Services: []api.BinderService{{Name: "s", Descriptor: "d", Codes: []string{"1"}, AllowFDs: true,
			Objects: []api.BinderInterface{{Descriptor: "d.ISession", Codes: []string{"1-2"}}}}}}, want: []binder.CodeRange{{First: 1, Last: 1}}},
		{name: "no codes", in: api.BinderPolicy{Services: []api.BinderService{echo()}}, wantErr: "services[0] (workcell.echo).codes: at least one"},
		{name: "code zero", in: api.BinderPolicy{Services: []api.BinderService{echo("0")}}, wantErr: "0 outside 1-16777215"},
		{name: "meta code", in: api.BinderPolicy{Services: []api.BinderService{echo("1598968902")}}, wantErr: "1598968902 outside"},
		{name: "not a number", in: api.BinderPolicy{Services: []api.BinderService{echo("one")}}, wantErr: `"one" is not a number`},
		{name: "backwards range", in: api.BinderPolicy{Services: []api.BinderService{echo("5-3")}}, wantErr: `"5-3" runs backwards`},
		{name: "no name", in: api.BinderPolicy{Services: []api.BinderService{{Descriptor: "d", Codes: []string{"1"}}}}, wantErr: "services[0].name: required"},
		{name: "bad name", in: api.BinderPolicy{Services: []api.BinderService{{Name: "a b", Descriptor: "d", Codes: []string{"1"}}}}, wantErr: `invalid name "a b"`},
		{name: "no descriptor", in: api.BinderPolicy{Services: []api.BinderService{{Name: "s", Codes: []string{"1"}}}}, wantErr: "descriptor: required"},
		{name: "twice", in: api.BinderPolicy{Services: []api.BinderService{echo("1"), echo("2")}}, wantErr: `"workcell.echo" listed twice`},
		{name: "object without descriptor", in: api.BinderPolicy{Services: []api.BinderService{{Name: "s", Descriptor: "d", Codes: []string{"1"},
			Objects: []api.BinderInterface{{Codes: []string{"1"}}}}}}, wantErr: "objects[0].descriptor: required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pol, err := binderFromWire(tc.in)
			if tc.wantErr != "" {
				if !errors.Is(err, api.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("binderFromWire: err = %v, want an invalid argument naming %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("binderFromWire: %v", err)
			}
			if len(pol.Services) != len(tc.in.Services) {
				t.Fatalf("%d services, want %d", len(pol.Services), len(tc.in.Services))
			}
			if len(pol.Services) > 0 && !reflect.DeepEqual(pol.Services[0].Codes, tc.want) {
				t.Errorf("codes %v, want %v", pol.Services[0].Codes, tc.want)
			}
		})
	}
}

// binderDaemon is a daemon with a store and a binder concern, without any
// binder driver.
func binderDaemon(t *testing.T, cfg Config, log *slog.Logger) *Daemon {
	t.Helper()
	cfg.StateDir, cfg.RunDir = t.TempDir(), t.TempDir()
	st, err := newStore(cfg.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	d := &Daemon{cfg: cfg, log: log, store: st, profiles: map[string]*profile{}, ctx: ctx, cancel: cancel}
	d.profiles["work"] = &profile{rec: record{Name: "work", State: api.StateStopped}}
	if err := os.MkdirAll(st.dir("work"), 0o700); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestBinderPolicyFile(t *testing.T) {
	d := binderDaemon(t, DefaultConfig(), slog.New(slog.DiscardHandler))
	w, pol, err := d.loadBinder("work")
	if err != nil || len(w.Services) != 0 || len(pol.Services) != 0 {
		t.Fatalf("no file: %+v %+v %v, want an empty policy", w, pol, err)
	}
	in := api.BinderPolicy{Services: []api.BinderService{{Name: "workcell.echo", Descriptor: "workcell.IEcho", Codes: []string{"1", "3-4"}, AllowFDs: true}}}
	if err := d.saveBinder("work", in); err != nil {
		t.Fatal(err)
	}
	w, pol, err = d.loadBinder("work")
	if err != nil || !reflect.DeepEqual(w, in) || len(pol.Services) != 1 || !pol.Services[0].AllowFDs {
		t.Fatalf("round trip: %+v %+v %v, want %+v", w, pol, err, in)
	}
	for name, content := range map[string]string{
		"corrupt":       "{",
		"unknown field": `{"services": [], "allow_all": true}`,
		"invalid code":  `{"services": [{"name": "s", "descriptor": "d", "codes": ["0"]}]}`,
	} {
		if err := os.WriteFile(d.binderPath("work"), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, _, err := d.loadBinder("work"); err == nil || !strings.Contains(err.Error(), d.binderPath("work")) {
			t.Errorf("%s: loadBinder = %v, want an error naming the file", name, err)
		}
	}
}

// syncBuffer is a log sink tests read while the daemon writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestBinderWithoutDriverSaysSoOnceAndStarts(t *testing.T) {
	if binder.BinderfsSupported() {
		t.Skip("this kernel has binderfs: the daemon would use it")
	}
	var logs syncBuffer
	cfg := DefaultConfig()
	cfg.BinderDevices = []string{"/dev/workcell-test-no-such-binder"}
	d := binderDaemon(t, cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	ctx := context.Background()
	if err := d.binderReconcile(ctx); err != nil {
		t.Fatal(err)
	}
	p := d.profiles["work"]
	for range 3 {
		var h sandbox.HardenOptions
		if err := d.binderUp(ctx, p, &h); err != nil {
			t.Fatalf("binderUp without a driver: %v", err)
		}
		if len(h.Devices) != 0 {
			t.Fatalf("binderUp without a driver added devices %+v", h.Devices)
		}
		d.binderDown(ctx, p)
	}
	if n := strings.Count(logs.String(), "profiles run without binder"); n != 1 {
		t.Errorf("the missing driver was logged %d times, want once:\n%s", n, logs.String())
	}
	b, err := d.Binder(ctx, "work")
	if err != nil {
		t.Fatal(err)
	}
	if b.Active || !strings.Contains(b.Note, "no binder driver") {
		t.Errorf("Binder = %+v, want inactive with a note on the driver", b)
	}
	// The policy can be set all the same, for when a driver appears.
	b, err = d.SetBinderPolicy(ctx, "work", api.BinderPolicy{Services: []api.BinderService{{Name: "workcell.echo", Descriptor: "workcell.IEcho", Codes: []string{"1"}}}})
	if err != nil || len(b.Host) != 1 || b.Host[0].Name != "workcell.echo" || b.Host[0].Present != nil {
		t.Fatalf("SetBinderPolicy = %+v, %v", b, err)
	}
	if _, err := d.SetBinderPolicy(ctx, "work", api.BinderPolicy{Services: []api.BinderService{{Name: "x", Descriptor: "d", Codes: []string{"0"}}}}); !errors.Is(err, api.ErrInvalidArgument) {
		t.Errorf("SetBinderPolicy with code 0 = %v, want invalid argument", err)
	}
	if w, _, _ := d.loadBinder("work"); len(w.Services) != 1 || w.Services[0].Name != "workcell.echo" {
		t.Errorf("a refused policy replaced the stored one: %+v", w)
	}
}

func TestConfigBinder(t *testing.T) {
	for _, tc := range []struct {
		name string
		mut  func(*Config)
		want string
	}{
		{"relative device", func(c *Config) { c.BinderDevices = []string{"workbinder"} }, "binder_devices[0]"},
		{"host device as profile device", func(c *Config) { c.BinderDevices = []string{"/dev/binder"} }, "binder_host_device"},
		{"twice", func(c *Config) { c.BinderDevices = []string{"/dev/a", "/dev/a"} }, "listed twice"},
		{"no host device", func(c *Config) { c.BinderHostDevice = "" }, "binder_host_device"},
		{"unknown release", func(c *Config) { c.BinderRelease = "android15" }, "binder_release"},
	} {
		c := DefaultConfig()
		tc.mut(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Validate = %v, want an error with %q", tc.name, err, tc.want)
		}
	}
	c := DefaultConfig()
	c.BinderDevices, c.BinderRelease = []string{"/dev/workbinder", "/dev/workbinder2"}, "android10"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, rel := range []string{"android11", "android12", "android13", "android14", "12", "13"} {
		c.BinderRelease = rel
		if err := c.Validate(); err != nil {
			t.Errorf("binder_release %q: %v", rel, err)
		}
	}
}

// TestBinderAuditIsCappedAndFollowed writes more records than the cap
// holds while a follower reads: the follower sees every record, across
// the rotation, and the files stay near the cap.
func TestBinderAuditIsCappedAndFollowed(t *testing.T) {
	dir := t.TempDir()
	const max = 4096
	a, err := openAuditFile(dir, max)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var got syncBuffer
	done := make(chan error, 1)
	go func() { done <- copyAudit(ctx, dir, true, &got, func() {}) }()
	log := binder.NewAuditLog(a)
	const n = 60 // about 10 KiB of records
	for i := range n {
		if err := log.Write(binder.AuditRecord{Profile: "work", Service: "workcell.echo", Descriptor: "workcell.IEcho", Code: uint32(i + 1), Verdict: binder.VerdictDeny, Reason: "code not allowed"}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	deadline := time.Now().Add(5 * time.Second)
	for strings.Count(got.String(), "\n") < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if c := strings.Count(got.String(), `"verdict":"deny"`); c != n {
		t.Errorf("follower saw %d records, want %d", c, n)
	}
	for _, f := range []string{binderAuditLog, binderAuditOld} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if st.Size() > max {
			t.Errorf("%s has %d bytes, over the cap of %d", f, st.Size(), max)
		}
	}
	// Without follow, the kept records come back, older file first.
	var once bytes.Buffer
	if err := copyAudit(context.Background(), dir, false, &once, func() {}); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(once.String(), `"code":60,"verdict":"deny","reason":"code not allowed","sender_pid":0}`+"\n") {
		t.Errorf("the last kept record is not the last written:\n%s", once.String())
	}
}
