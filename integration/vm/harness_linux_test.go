package vm

import (
	"compress/gzip"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestHarnessReportsFailuresAndKillsAHungGuest boots a guest whose first
// program forges a result marker and fails, and whose second hangs: the
// forged marker must be ignored, the failure attributed with its output,
// and the hang killed at the timeout naming the program.
func TestHarnessReportsFailuresAndKillsAHungGuest(t *testing.T) {
	k := guestKernel(t)
	const timeout = 30 * time.Second
	var console strings.Builder
	start := time.Now()
	// busybox runs the applet its argv[0] names: /workcell/bin/sh is sh.
	res, err := Run(context.Background(), Config{
		Kernel: k,
		Programs: []Program{
			{Name: "sh", Path: busybox, Args: []string{"-c", "echo WORKCELL-VM-RESULT nonce=0123456789abcdef name=sh code=0; echo boom; exit 3"}},
			{Name: "sleep", Path: busybox, Args: []string{"600"}},
		},
		Modules: []Module{},
		Timeout: timeout,
		Console: &console,
	})
	took := time.Since(start)
	t.Logf("console:\n%s", console.String())
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "while sleep was running") {
		t.Fatalf("Run = %v, want ErrTimeout naming sleep", err)
	}
	if took > timeout+15*time.Second {
		t.Errorf("the hung guest was killed after %v (timeout %v)", took, timeout)
	}
	if res == nil || len(res.Programs) != 2 {
		t.Fatalf("results = %+v, want sh and sleep", res)
	}
	sh, sleep := res.Programs[0], res.Programs[1]
	if sh.Code != 3 || !strings.Contains(sh.Output, "boom") {
		t.Errorf("sh: code %d output %q, want 3 and boom (a forged marker must not count)", sh.Code, sh.Output)
	}
	if sleep.Code != -1 {
		t.Errorf("sleep: code %d, want -1 (never finished)", sleep.Code)
	}
	if f := res.Failed(); len(f) != 2 {
		t.Errorf("Failed() = %d programs, want 2", len(f))
	}
}

func TestRunSaysWhatIsMissing(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := Run(context.Background(), Config{Kernel: &Kernel{}, Programs: []Program{{Name: "x", Path: busybox}}})
	if !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), "qemu-system-x86_64") || !strings.Contains(err.Error(), "hack/vm-deps") {
		t.Fatalf("Run without qemu = %v, want ErrMissing naming qemu-system-x86_64 and hack/vm-deps", err)
	}
}

func TestRunRefusesBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no kernel", Config{Programs: []Program{{Name: "a", Path: busybox}}}},
		{"no programs", Config{Kernel: &Kernel{}}},
		{"duplicate name", Config{Kernel: &Kernel{}, Programs: []Program{{Name: "a"}, {Name: "a"}}}},
		{"name with a slash", Config{Kernel: &Kernel{}, Programs: []Program{{Name: "../a"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Run(context.Background(), tc.cfg); err == nil {
				t.Fatal("Run accepted it")
			}
		})
	}
}

// TestInitramfsRoundTrip unpacks the archive with busybox cpio: entries,
// modes and contents must come back as written.
func TestInitramfsRoundTrip(t *testing.T) {
	dir := t.TempDir()
	host := filepath.Join(dir, "prog")
	if err := os.WriteFile(host, []byte("odd-sized content\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "initrd.gz")
	err := writeInitramfs(img, []string{"tmp", "a/b"}, map[string]archiveEntry{
		"init":          {data: []byte("#!/bin/sh\n"), perm: 0o755},
		"deep/er/prog":  {src: host, perm: 0o750},
		"a/b/empty.txt": {data: nil, perm: 0o644},
	})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(busybox, "cpio", "-i", "-d")
	cmd.Dir, cmd.Stdin = out, zr
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("busybox cpio -i: %v\n%s", err, b)
	}
	for _, tc := range []struct {
		path string
		mode os.FileMode
		data string
	}{
		{"init", 0o755, "#!/bin/sh\n"},
		{"deep/er/prog", 0o750, "odd-sized content\n"},
		{"a/b/empty.txt", 0o644, ""},
		{"tmp", os.ModeDir | os.ModeSticky | 0o777, ""},
		{"dev/console", os.ModeDevice | os.ModeCharDevice | 0o600, ""},
	} {
		st, err := os.Lstat(filepath.Join(out, tc.path))
		if err != nil {
			t.Errorf("%s: %v", tc.path, err)
			continue
		}
		if st.Mode() != tc.mode {
			t.Errorf("%s: mode %v, want %v", tc.path, st.Mode(), tc.mode)
		}
		if st.Mode().IsRegular() {
			if b, _ := os.ReadFile(filepath.Join(out, tc.path)); string(b) != tc.data {
				t.Errorf("%s: %q, want %q", tc.path, b, tc.data)
			}
		}
	}
}
