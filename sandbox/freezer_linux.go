package sandbox

import (
	"bufio"
	"bytes"
	"context"

	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// freezeV2 freezes (or thaws) the cgroup v2 directory dir and returns once
// cgroup.events says so. The kernel signals every change of cgroup.events
// as IN_MODIFY, so the wait is a blocking inotify read in the netpoller:
// no polling interval, and ctx can interrupt it. A freeze interrupted by
// ctx is undone, so that no half-frozen cgroup is left behind.
func freezeV2(ctx context.Context, dir string, frozen bool) (retErr error) {
	want := byte('0')
	if frozen {
		want = '1'
	}
	events := filepath.Join(dir, "cgroup.events")
	in, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("inotify: %w", err)
	}
	f := os.NewFile(uintptr(in), "inotify")
	defer f.Close()
	// Watch before writing, so that no change is missed.
	if _, err := unix.InotifyAddWatch(in, events, unix.IN_MODIFY); err != nil {
		return fmt.Errorf("watch %s: %w", events, err)
	}
	freeze := filepath.Join(dir, "cgroup.freeze")
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
	stop := context.AfterFunc(ctx, func() { _ = f.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	buf := make([]byte, 4096)
	for {
		got, err := readFrozen(events)
		if err != nil {
			return err
		}
		if got == want {
			return nil
		}
		if _, err := f.Read(buf); err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("waiting for %s to report frozen %c: %w", events, want, ctx.Err())
			}
			return fmt.Errorf("inotify on %s: %w", events, err)
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
