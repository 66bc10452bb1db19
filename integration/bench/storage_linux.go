package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/workcell/workcell/api"
	"github.com/workcell/workcell/images/fscrypt"
)

// The storage section: issue 4's budget for the encrypted overlay.
func init() {
	Register(Row{Section: "storage", Name: "wipe", Run: wipeRows})
	Register(Row{Section: "storage", Name: "throughput", Run: throughputRows})
	Register(Row{Section: "storage", Name: "lock-unlock", Run: lockUnlockRows})
}

// storeSize is the daemon's sparse store image: the 4 GB wipe row plus
// headroom.
const storeSize = "10G"

// plainStore is the peer: a plain ext4 image (no -O encrypt), loop-mounted.
func plainStore(ctx context.Context, b *Bench) (string, error) {
	v, err := b.Fixture("plain-ext4", func() (any, error) {
		img := filepath.Join(b.Dir, "plain.img")
		mnt := filepath.Join(b.Dir, "plain")
		if err := os.MkdirAll(mnt, 0o700); err != nil {
			return nil, err
		}
		for _, args := range [][]string{
			{"truncate", "-s", "8G", img},
			{"mkfs.ext4", "-q", "-F", "-E", "nodiscard", img},
			{"mount", "-o", "loop,nosuid,nodev", img, mnt},
		} {
			if out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput(); err != nil {
				return nil, fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, out)
			}
		}
		return mnt, nil
	})
	if err != nil {
		return "", err
	}
	return v.(string), nil
}

func (b *Bench) storeMount() string { return filepath.Join(b.Dir, "state", "store") }

// execSh runs a shell script inside a profile, output discarded.
func execSh(ctx context.Context, b *Bench, name, script string) error {
	code, err := b.Client.Exec(ctx, name, api.ExecRequest{Args: []string{"sh", "-c", script}}, api.ExecIO{})
	if err == nil && code != 0 {
		err = fmt.Errorf("exec %q in %s: exit %d", script, name, code)
	}
	return err
}

func sh(ctx context.Context, script string) error {
	if out, err := exec.CommandContext(ctx, "sh", "-c", script).CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %w: %s", script, err, out)
	}
	return nil
}

// wipeRows: time from the wipe request to the key's eviction (from then
// on nothing is readable) and to the profile being gone, with work data
// of each size written by one `dd if=/dev/urandom` inside, vs `rm -rf`
// of the same data on plain ext4.
func wipeRows(ctx context.Context, b *Bench) ([]Line, error) {
	bundle, err := b.Bundle("busybox")
	if err != nil {
		return nil, err
	}
	plain, err := plainStore(ctx, b)
	if err != nil {
		return nil, err
	}
	sizes := []int{10, 1024, 4096}
	if b.Quick {
		sizes = []int{10, 100}
	}
	var lines []Line
	for _, mb := range sizes {
		name := fmt.Sprintf("wipe-%d", mb)
		if _, err := b.Client.Install(ctx, api.InstallRequest{Name: name, Bundle: bundle}); err != nil {
			return lines, err
		}
		b.AtEnd("remove profile "+name, func(ctx context.Context) error {
			if err := b.Client.Remove(ctx, name); err != nil && !errors.Is(err, api.ErrNotFound) {
				return err
			}
			return nil
		})
		if _, err := b.Client.Start(ctx, name); err != nil {
			return lines, err
		}
		if err := execSh(ctx, b, name, fmt.Sprintf("mkdir -p /w && dd if=/dev/urandom of=/w/data bs=1M count=%d 2>/dev/null && sync", mb)); err != nil {
			return lines, err
		}
		id, err := fscrypt.GetPolicy(ctx, filepath.Join(b.storeMount(), name, "data"))
		if err != nil {
			return lines, err
		}
		// Work data at rest: written earlier, not in the page cache. The
		// kernel's key removal evicts every cached page of the profile, so
		// with a hot cache the time grows with what is cached (see README).
		dropCaches()
		t0 := time.Now()
		done := make(chan error, 1)
		go func() { done <- b.Client.Wipe(ctx, name) }()
		var unreadable, gone time.Duration
		for unreadable == 0 {
			st, err := fscrypt.GetKeyStatus(ctx, b.storeMount(), id)
			if err != nil {
				return lines, err
			}
			if st.State == fscrypt.KeyAbsent {
				unreadable = time.Since(t0)
			}
			select {
			case err := <-done:
				if err != nil {
					return lines, fmt.Errorf("wipe %s: %w", name, err)
				}
				gone = time.Since(t0)
				if unreadable == 0 {
					unreadable = gone
				}
			default:
				time.Sleep(200 * time.Microsecond)
			}
		}
		if gone == 0 {
			if err := <-done; err != nil {
				return lines, fmt.Errorf("wipe %s: %w", name, err)
			}
			gone = time.Since(t0)
		}
		dir := filepath.Join(plain, name)
		if err := sh(ctx, fmt.Sprintf("mkdir -p %s && dd if=/dev/urandom of=%s/data bs=1M count=%d 2>/dev/null && sync", dir, dir, mb)); err != nil {
			return lines, err
		}
		dropCaches()
		t1 := time.Now()
		if err := os.RemoveAll(dir); err != nil {
			return lines, err
		}
		rm := time.Since(t1)
		size := fmt.Sprintf("%d MB", mb)
		if mb >= 1024 {
			size = fmt.Sprintf("%d GB", mb/1024)
		}
		lines = append(lines,
			Line{Name: "wipe to unreadable, " + size, Workcell: Millis(unreadable), Peer: Millis(rm), PeerName: "rm -rf on plain ext4",
				Target: "<= 100 ms", Over: unreadable > 100*time.Millisecond, Note: "key evicted, data at rest (caches dropped first); stop of the running profile included"},
			Line{Name: "wipe to gone, " + size, Workcell: Millis(gone), Peer: Millis(rm), PeerName: "rm -rf on plain ext4",
				Note: "journal, stop, evict, destroy key, delete, network, records"},
		)
	}
	return lines, nil
}

func mbps(bytes int64, d time.Duration) Figure {
	return Figure{Value: float64(bytes) / (1 << 20) / d.Seconds(), Unit: "MB/s", Set: true}
}

func dropCaches() { syscall.Sync(); _ = os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0) }

// throughputRows: sequential write (dd, fsync at the end) and read (cold
// cache) inside a profile, through the overlay onto the encrypted upper,
// vs the same dd on a plain ext4 folder on the host.
func throughputRows(ctx context.Context, b *Bench) ([]Line, error) {
	bundle, err := b.Bundle("busybox")
	if err != nil {
		return nil, err
	}
	plain, err := plainStore(ctx, b)
	if err != nil {
		return nil, err
	}
	const name = "io"
	if err := b.Profile(ctx, name, bundle); err != nil {
		return nil, err
	}
	if _, err := b.Client.Start(ctx, name); err != nil {
		return nil, err
	}
	mb := int64(b.N(512, 64))
	n := b.N(3, 1)
	var wW, wP, rW, rP Samples
	write := fmt.Sprintf("dd if=/dev/zero of=%%s bs=1M count=%d conv=fsync 2>/dev/null", mb)
	read := "dd if=%s of=/dev/null bs=1M 2>/dev/null"
	for i := 0; i < n; i++ {
		if err := wW.timed(func() error { return execSh(ctx, b, name, fmt.Sprintf(write, "/seq")) }); err != nil {
			return nil, err
		}
		if err := wP.timed(func() error { return sh(ctx, fmt.Sprintf(write, plain+"/seq")) }); err != nil {
			return nil, err
		}
		dropCaches()
		if err := rW.timed(func() error { return execSh(ctx, b, name, fmt.Sprintf(read, "/seq")) }); err != nil {
			return nil, err
		}
		dropCaches()
		if err := rP.timed(func() error { return sh(ctx, fmt.Sprintf(read, plain+"/seq")) }); err != nil {
			return nil, err
		}
	}
	os.Remove(plain + "/seq")
	bytes := mb << 20
	note := fmt.Sprintf("%d MiB, n=%d; workcell: overlay on fscrypt (AES-256-XTS) ext4 in a loop image, exec included", mb, n)
	return []Line{
		{Name: "sequential write", Workcell: mbps(bytes, time.Duration(wW.Median().Value*float64(time.Millisecond))),
			Peer: mbps(bytes, time.Duration(wP.Median().Value*float64(time.Millisecond))), PeerName: "dd on plain ext4 (loop image)", Target: "ratio near 1", Note: note},
		{Name: "sequential read (cold)", Workcell: mbps(bytes, time.Duration(rW.Median().Value*float64(time.Millisecond))),
			Peer: mbps(bytes, time.Duration(rP.Median().Value*float64(time.Millisecond))), PeerName: "dd on plain ext4 (loop image)", Target: "ratio near 1", Note: note},
	}, nil
}

// lockUnlockRows: API lock (stopped profile: unmount, evict key) and
// unlock (unwrap under the device key, add the key) latency.
func lockUnlockRows(ctx context.Context, b *Bench) ([]Line, error) {
	bundle, err := b.Bundle("busybox")
	if err != nil {
		return nil, err
	}
	const name = "locker"
	if err := b.Profile(ctx, name, bundle); err != nil {
		return nil, err
	}
	if _, err := b.Client.Start(ctx, name); err != nil {
		return nil, err
	}
	if err := execSh(ctx, b, name, "mkdir -p /d && for i in $(seq 200); do echo $i > /d/f$i; done"); err != nil {
		return nil, err
	}
	if _, err := b.Client.Stop(ctx, name, api.StopRequest{TimeoutMillis: 500}); err != nil {
		return nil, err
	}
	var locks, unlocks Samples
	for i := 0; i < b.N(20, 3); i++ {
		if err := locks.timed(func() error { _, err := b.Client.Lock(ctx, name); return err }); err != nil {
			return nil, err
		}
		if err := unlocks.timed(func() error { _, err := b.Client.Unlock(ctx, name, api.UnlockRequest{}); return err }); err != nil {
			return nil, err
		}
	}
	return []Line{
		{Name: "lock (stopped profile)", Workcell: locks.Median(), WorkcellP99: locks.Quantile(0.99), Note: fmt.Sprintf("n=%d; 200 files in the upper layer", len(locks))},
		{Name: "unlock (no passphrase)", Workcell: unlocks.Median(), WorkcellP99: unlocks.Quantile(0.99), Note: fmt.Sprintf("n=%d", len(unlocks))},
	}, nil
}

// releaseMounts unmounts what the run mounted under dir (the daemon's
// store, the plain peer image), deepest first.
func releaseMounts(dir string) []error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return []error{err}
	}
	defer f.Close()
	var ms []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fs := strings.Fields(sc.Text()); len(fs) > 4 && strings.HasPrefix(fs[4], dir+"/") {
			ms = append(ms, fs[4])
		}
	}
	sort.Slice(ms, func(i, j int) bool { return len(ms[i]) > len(ms[j]) })
	var errs []error
	for _, m := range ms {
		if err := syscall.Unmount(m, 0); err != nil {
			errs = append(errs, fmt.Errorf("unmount %s: %w", m, err))
		}
	}
	return errs
}
