package vm

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf16"
)

// The interop proof with clients nobody here wrote: AOSP's own programs of
// Android 10, built from Debian's source package
// android-platform-frameworks-native by aosp/build.sh (cached under
// CacheDir()/aosp), run in the guest on the real binder driver.
//
// Only Android 10 is built: the build must get its sources from a package
// registry that CI reaches, and Debian serves frameworks/native as a
// source package only at 10.0.0+r36 (bookworm to experimental alike), so
// Android 11's libbinder (lineage-18.1), 12's and 13's cannot be had at CI
// time. (Debian's android-platform-tools 34.0.5 source, in trixie and sid,
// carries Android 14's frameworks/native with libs/binder, and its aidl
// 14.0.0+r75 package the compiler for IServiceManager.aidl: the way to an
// Android 14 interop test.) The later releases' wire formats are pinned
// byte for byte against their libbinder sources by binder's unit tests and
// exercised between processes on the real driver by TestBinderProxyInVM.

// aospBuild runs aosp/build.sh (cached: a matching build is reused at once)
// and returns the guest tree it made. A machine without the source package
// or the build dependencies fails the test saying so.
func aospBuild(t *testing.T) string {
	t.Helper()
	cache := filepath.Join(CacheDir(), "aosp")
	start := time.Now()
	cmd := exec.Command("bash", "aosp/build.sh", cache)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		hint := ""
		if strings.Contains(stderr.String(), "MISSING:") {
			hint = "\n(the AOSP source package or a build dependency could not be had: run hack/aosp-deps and hack/vm-deps as root; the source comes from the Debian mirror through apt-get source)"
		}
		t.Fatalf("aosp/build.sh %s: %v%s\n%s", cache, err, hint, tail(stderr.String(), 60))
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	dir := lines[len(lines)-1]
	t.Logf("AOSP build %s ready in %v: %s", dir, time.Since(start).Round(time.Millisecond), strings.TrimSpace(stderr.String()))
	if _, err := os.Stat(filepath.Join(dir, "root", "aosp", "bin", "service")); err != nil {
		t.Fatalf("aosp/build.sh left no service command: %v", err)
	}
	return filepath.Join(dir, "root")
}

// aospFiles maps every file of the build's guest tree to its guest path,
// plus the guest script as /aosp/interop.sh.
func aospFiles(t *testing.T, root string) map[string]string {
	t.Helper()
	files := map[string]string{"aosp/interop.sh": "aosp/guest-interop.sh"}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		files[filepath.ToSlash(rel)] = p
		return nil
	})
	if err != nil {
		t.Fatalf("AOSP guest tree %s: %v", root, err)
	}
	return files
}

// aospTimeout bounds a boot of the AOSP guests.
const aospTimeout = 4 * time.Minute

// TestAOSPServiceInteropInVM runs Android 10's servicemanager as the context
// manager of a binder device, registers workcell.interop (a libbinder
// BnInterface service, aosp/interop_service.cpp) with it, and drives both
// with AOSP's `service` command: list, check and calls whose reply parcels
// must carry the answers. It does so on /dev/binder and again on
// /dev/workbinder, bind-mounted over /dev/binder in a private mount
// namespace, as the profile's device will be in a container.
func TestAOSPServiceInteropInVM(t *testing.T) {
	root := aospBuild(t)
	// busybox runs the applet its argv[0] names: /workcell/bin/sh is sh and
	// /workcell/bin/ash is ash, the same shell under two program names.
	res := bootConfig(t, Config{
		Programs: []Program{
			{Name: "sh", Path: busybox, Args: []string{"/aosp/interop.sh", "/dev/binder"}},
			{Name: "ash", Path: busybox, Args: []string{"/aosp/interop.sh", "/dev/workbinder"}},
		},
		Files:   aospFiles(t, root),
		Timeout: aospTimeout,
	})
	for i, dev := range []string{"/dev/binder", "/dev/workbinder"} {
		t.Run(strings.TrimPrefix(dev, "/dev/"), func(t *testing.T) {
			checkInterop(t, dev, res.Programs[i].Output)
		})
	}
}

func checkInterop(t *testing.T, dev, out string) {
	steps := interopSteps(out)
	list := steps["/aosp/bin/service list"]
	if !regexp.MustCompile(`(?m)^Found [1-9][0-9]* services:`).MatchString(list) ||
		!regexp.MustCompile(`(?m)^[0-9]+\s+workcell\.interop: \[workcell\.IInterop\]$`).MatchString(list) {
		t.Errorf("service list does not show workcell.interop with its interface:\n%s", list)
	}
	if got := steps["/aosp/bin/service check workcell.interop"]; !strings.Contains(got, "Service workcell.interop: found") {
		t.Errorf("service check workcell.interop = %q, want found", got)
	}
	if got := steps["/aosp/bin/service check workcell.absent"]; !strings.Contains(got, "Service workcell.absent: not found") {
		t.Errorf("service check workcell.absent = %q, want not found", got)
	}

	call := steps["/aosp/bin/service call workcell.interop 1 s16 hello"]
	p, err := parcelFromDump(call)
	if err != nil {
		t.Errorf("service call workcell.interop 1 s16 hello: %v\n%s", err, call)
	} else if ex, s, err := readEcho(p); err != nil || ex != 0 || s != "hello" {
		t.Errorf("service call workcell.interop 1 s16 hello: reply exception %d string %q (%v), want 0 and \"hello\"\n%s", ex, s, err, call)
	}

	who := steps["/aosp/bin/service call workcell.interop 2"]
	if p, err := parcelFromDump(who); err != nil || len(p) != 12 || binary.LittleEndian.Uint32(p) != 0 ||
		binary.LittleEndian.Uint32(p[4:]) == 0 || binary.LittleEndian.Uint32(p[8:]) != 0 {
		t.Errorf("service call workcell.interop 2: want no exception, the caller's pid and uid 0; got %x (%v)\n%s", p, err, who)
	}
	self := "/aosp/bin/interop_service -d " + dev + " -c hello-from-libbinder"
	if got := steps[self]; !strings.Contains(got, `workcell.interop echoed "hello-from-libbinder"`) {
		t.Errorf("libbinder's own proxy (BpInterop) did not get the echo:\n%s", got)
	}
	if t.Failed() {
		t.Logf("guest output on %s:\n%s", dev, out)
	}
}

// interopSteps splits the guest script's output at its "== step" lines.
func interopSteps(out string) map[string]string {
	steps := map[string]string{}
	var cur string
	var b strings.Builder
	for _, line := range strings.Split(out, "\n") {
		if name, ok := strings.CutPrefix(line, "== "); ok {
			if cur != "" {
				steps[cur] = b.String()
			}
			cur = name
			b.Reset()
			continue
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	if cur != "" {
		steps[cur] = b.String()
	}
	return steps
}

// hexWord is one 32-bit word of libbinder's HexDump, which prints words in
// host (little-endian) order; offsets ("0x00000010:") and the ASCII column
// are not words.
var hexWord = regexp.MustCompile(`^[0-9a-f]{8}$`)

// parcelFromDump rebuilds the reply bytes from `service call`'s
// "Result: Parcel(...)" dump.
func parcelFromDump(out string) ([]byte, error) {
	i := strings.Index(out, "Result: Parcel(")
	if i < 0 {
		return nil, fmt.Errorf("no \"Result: Parcel(\" in the output")
	}
	dump := out[i+len("Result: Parcel("):]
	if j := strings.LastIndex(dump, ")"); j >= 0 {
		dump = dump[:j]
	}
	if strings.Contains(dump, "Error") || strings.Contains(dump, "NULL") {
		return nil, fmt.Errorf("the reply is %q", strings.TrimSpace(dump))
	}
	var p []byte
	for _, line := range strings.Split(dump, "\n") {
		if k := strings.IndexByte(line, '\''); k >= 0 {
			line = line[:k] // the ASCII column
		}
		if k := strings.Index(line, ": "); k >= 0 && strings.Contains(line[:k], "0x") {
			line = line[k+1:] // the offset
		}
		for _, f := range strings.Fields(line) {
			if !hexWord.MatchString(f) {
				return nil, fmt.Errorf("unexpected token %q in the parcel dump", f)
			}
			var w uint32
			if _, err := fmt.Sscanf(f, "%08x", &w); err != nil {
				return nil, err
			}
			p = binary.LittleEndian.AppendUint32(p, w)
		}
	}
	if len(p) == 0 {
		return nil, fmt.Errorf("an empty reply")
	}
	return p, nil
}

// readEcho decodes an echo reply: int32 exception code, then a String16
// (int32 length in UTF-16 units, the units, a 0 terminator, padded to 4).
func readEcho(p []byte) (int32, string, error) {
	if len(p) < 8 {
		return 0, "", fmt.Errorf("reply of %d bytes", len(p))
	}
	ex := int32(binary.LittleEndian.Uint32(p))
	n := int32(binary.LittleEndian.Uint32(p[4:]))
	if n < 0 || 8+2*int(n)+2 > len(p) {
		return ex, "", fmt.Errorf("String16 length %d does not fit the %d-byte reply", n, len(p))
	}
	u := make([]uint16, n)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(p[8+2*i:])
	}
	return ex, string(utf16.Decode(u)), nil
}
