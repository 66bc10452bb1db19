package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/workcell/workcell/internal/testbundle"
)

// editConfig rewrites a bundle's config.json through fn.
func editConfig(t *testing.T, bundle string, fn func(cfg map[string]any)) {
	t.Helper()
	path := filepath.Join(bundle, "config.json")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	fn(cfg)
	b, _ = json.Marshal(cfg)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func section(cfg map[string]any, key string) map[string]any {
	m, _ := cfg[key].(map[string]any)
	if m == nil {
		m = map[string]any{}
		cfg[key] = m
	}
	return m
}

func TestInstallRefusesBadBundles(t *testing.T) {
	d := newDaemon(t)
	for _, tc := range []struct {
		name  string
		edit  func(t *testing.T, bundle string)
		field string
	}{
		{"missing config.json", func(t *testing.T, b string) { os.Remove(filepath.Join(b, "config.json")) }, "config.json"},
		{"broken JSON", func(t *testing.T, b string) {
			os.WriteFile(filepath.Join(b, "config.json"), []byte(`{"process": {`), 0o644)
		}, "config.json"},
		{"missing rootfs", func(t *testing.T, b string) { os.RemoveAll(filepath.Join(b, "rootfs")) }, "root.path"},
		{"root path escapes the bundle", func(t *testing.T, b string) {
			editConfig(t, b, func(c map[string]any) { c["root"] = map[string]any{"path": "/"} })
		}, "root.path"},
		{"host network namespace", func(t *testing.T, b string) {
			editConfig(t, b, func(c map[string]any) {
				l := section(c, "linux")
				l["namespaces"] = []any{map[string]any{"type": "pid"}, map[string]any{"type": "network", "path": "/proc/1/ns/net"}}
			})
		}, "linux.namespaces[1].path"},
		{"extra capability", func(t *testing.T, b string) {
			editConfig(t, b, func(c map[string]any) {
				p := section(c, "process")
				p["capabilities"] = map[string]any{"bounding": []any{"CAP_CHOWN", "CAP_SYS_ADMIN"}}
			})
		}, "process.capabilities.bounding"},
		{"host device", func(t *testing.T, b string) {
			editConfig(t, b, func(c map[string]any) {
				l := section(c, "linux")
				l["devices"] = []any{map[string]any{"path": "/dev/sda", "type": "b", "major": 8, "minor": 0}}
			})
		}, "linux.devices[0]"},
		{"bind mount of a host path", func(t *testing.T, b string) {
			editConfig(t, b, func(c map[string]any) {
				ms, _ := c["mounts"].([]any)
				c["mounts"] = append(ms, map[string]any{"destination": "/host", "type": "bind", "source": "/etc", "options": []any{"rbind"}})
			})
		}, "mounts["},
		{"hooks run on the host", func(t *testing.T, b string) {
			editConfig(t, b, func(c map[string]any) {
				c["hooks"] = map[string]any{"prestart": []any{map[string]any{"path": "/bin/sh"}}}
			})
		}, "hooks"},
		{"custom seccomp", func(t *testing.T, b string) {
			editConfig(t, b, func(c map[string]any) {
				section(c, "linux")["seccomp"] = map[string]any{"defaultAction": "SCMP_ACT_ALLOW"}
			})
		}, "linux.seccomp"},
		{"device cgroup allow-all (privileged)", func(t *testing.T, b string) {
			editConfig(t, b, func(c map[string]any) {
				section(section(c, "linux"), "resources")["devices"] = []any{map[string]any{"allow": true, "access": "rwm"}}
			})
		}, "linux.resources.devices[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bundle := testbundle.Busybox(t)
			tc.edit(t, bundle)
			d := d.with(t)
			d.fails(2, tc.field, "install", "work", bundle)
			d.fails(3, "does not exist", "status", "work")
			ents, _ := os.ReadDir(filepath.Join(d.state, "profiles"))
			if len(ents) != 0 {
				t.Fatalf("left in the store after a refused install: %v", ents)
			}
		})
	}
}

func TestBadRequests(t *testing.T) {
	d := newDaemon(t)
	bundle := d.install("work")
	d.fails(2, `profile name "Work!" is invalid`, "install", "Work!", bundle)
	d.fails(2, "no such file", "install", "other", filepath.Join(t.TempDir(), "missing"))
	d.fails(5, "profile work already exists", "install", "work", bundle)
	d.fails(3, "profile nope does not exist", "start", "nope")
	d.fails(2, "invalid", "start", "BAD_NAME")
	d.fails(5, "cannot stop profile work: it is stopped", "stop", "work")
	d.fails(5, "cannot off profile work: it is stopped", "off", "work")
	d.fails(5, "it is stopped", "exec", "work", "--", "true")
	d.fails(2, "--memory", "install", "--memory", "lots", "other", bundle)
	d.ok("start", "work")
	d.fails(5, "profile work is already running", "start", "work")
	d.fails(2, "want [NAME] -- CMD", "exec", "work", "--")

	// Raw API bodies: unknown fields and wrong types are named.
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		msg                      string
	}{
		{"unknown field", "POST", "/v1/profiles", `{"name":"x","bundle":"/tmp","colour":"red"}`, 400, `unknown field "colour"`},
		{"wrong type", "POST", "/v1/profiles", `{"name":"x","bundle":"/tmp","limits":{"pids":"many"}}`, 400, `limits.pids`},
		{"not JSON", "POST", "/v1/profiles", `name=x`, 400, "invalid JSON"},
		{"trailing data", "POST", "/v1/profiles/work/stop", `{} {}`, 400, "after the JSON object"},
		{"negative timeout", "POST", "/v1/profiles/work/stop", `{"timeout_ms":-1}`, 400, "timeout_ms -1"},
		{"negative limit", "POST", "/v1/profiles", fmt.Sprintf(`{"name":"x","bundle":%q,"limits":{"pids":-1}}`, bundle), 400, "limits.pids -1"},
		{"unknown action", "POST", "/v1/profiles/work/explode", ``, 404, "no such action"},
		{"unknown path", "GET", "/v2/everything", ``, 404, "no such endpoint"},
		{"exec without upgrade", "POST", "/v1/profiles/work/exec", `{"args":["true"]}`, 400, "upgrade"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, code, msg := rawRequest(t, d.socket, tc.method, tc.path, tc.body)
			if status != tc.status || !strings.Contains(msg, tc.msg) || code == "" {
				t.Fatalf("%s %s: %d %s %q, want %d with %q", tc.method, tc.path, status, code, msg, tc.status, tc.msg)
			}
		})
	}
	// None of it disturbed the running profile or left a record.
	if p := d.status("work"); p.State != "running" {
		t.Fatalf("work after bad requests: %+v", p)
	}
	ents, _ := os.ReadDir(filepath.Join(d.state, "profiles"))
	if len(ents) != 1 {
		t.Fatalf("store after bad requests: %v", ents)
	}
}

// rawRequest speaks HTTP to the socket the way curl --unix-socket does.
func rawRequest(t *testing.T, socket, method, path, body string) (int, string, string) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{Dial: func(_, _ string) (net.Conn, error) { return net.Dial("unix", socket) }}}
	req, _ := http.NewRequest(method, "http://workcelld"+path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var eb struct{ Code, Message string }
	if err := json.Unmarshal(b, &eb); err != nil {
		t.Fatalf("%s %s: answer is not a JSON error: %q", method, path, b)
	}
	return resp.StatusCode, eb.Code, eb.Message
}
