package sandbox

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// freezeSpin is how long freezeV2 re-reads cgroup.events before blocking on
// inotify. The kernel rate-limits cgroup file notifications to one per
// 10 ms per file (CGROUP_FILE_NOTIFY_MIN_INTV), so a freeze completing
// within 10 ms of the previous notification (a thaw) is reported late; a
// freeze of a few hundred tasks usually completes well within this budget.
const freezeSpin = 2 * time.Millisecond

// cgroupFreezer freezes and thaws one cgroup v2 directory. It writes
// cgroup.freeze and waits for cgroup.events to say the kernel is done. The
// kernel reports every change of cgroup.events as IN_MODIFY, so the wait is
// a blocking inotify read in the netpoller: no polling interval, and ctx
// can interrupt it. The inotify instance lives as long as the freezer
// because closing one costs an SRCU grace period (10-20 ms here).
type cgroupFreezer struct {
	mu     sync.Mutex
	dir    string
	events string
	f      *os.File // inotify, non-blocking, in the netpoller
}

func newCgroupFreezer(dir string) (*cgroupFreezer, error) {
	events := filepath.Join(dir, "cgroup.events")
	in, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	f := os.NewFile(uintptr(in), "inotify")
	if _, err := unix.InotifyAddWatch(in, events, unix.IN_MODIFY); err != nil {
		f.Close()
		return nil, fmt.Errorf("watch %s: %w", events, err)
	}
	return &cgroupFreezer{dir: dir, events: events, f: f}, nil
}

// Close releases the inotify instance; it may take a few milliseconds.
func (z *cgroupFreezer) Close() error {
	return z.f.Close()
}

// set freezes (or thaws) the cgroup and returns once cgroup.events reports
// it. A freeze interrupted by ctx is undone, so that no half-frozen cgroup
// is left behind.
func (z *cgroupFreezer) set(ctx context.Context, frozen bool) (retErr error) {
	z.mu.Lock()
	defer z.mu.Unlock()
	want := byte('0')
	if frozen {
		want = '1'
	}
	// Events left from earlier calls only cause one more look at the file.
	if err := z.f.SetReadDeadline(time.Time{}); err != nil {
		return fmt.Errorf("inotify not pollable: %w", err)
	}
	freeze := filepath.Join(z.dir, "cgroup.freeze")
	if err := writeFile(freeze, []byte{want}); err != nil {
		return err
	}
	if frozen {
		defer func() {
			if retErr != nil {
				_ = writeFile(freeze, []byte{'0'})
			}
		}()
	}
	stop := context.AfterFunc(ctx, func() { _ = z.f.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	buf := make([]byte, 4096)
	spinUntil := time.Now().Add(freezeSpin)
	for {
		got, err := readFrozen(z.events)
		if err != nil {
			return err
		}
		if got == want {
			return nil
		}
		if time.Now().Before(spinUntil) && ctx.Err() == nil {
			runtime.Gosched()
			continue
		}
		if _, err := z.f.Read(buf); err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("waiting for %s to report frozen %c: %w", z.events, want, ctx.Err())
			}
			return fmt.Errorf("inotify on %s: %w", z.events, err)
		}
	}
}

// readFrozen returns the value of the "frozen" key of cgroup.events.
func readFrozen(events string) (byte, error) {
	data, err := os.ReadFile(events)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", events, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if v, ok := bytes.CutPrefix(sc.Bytes(), []byte("frozen ")); ok && len(v) == 1 {
			return v[0], nil
		}
	}
	return 0, fmt.Errorf("read %s: no frozen key", events)
}

func writeFile(name string, data []byte) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}
