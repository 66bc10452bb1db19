package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

const (
	consoleLog = "console.log"
	// consoleOld holds the older part after a rotation.
	consoleOld = "console.log.1"
)

// openConsole opens the profile's console log for the container's init:
// O_APPEND, so a truncation by the capper is picked up by the writer.
func openConsole(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("make logs folder %s: %w", dir, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, consoleLog), os.O_WRONLY|os.O_APPEND|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open console log: %w", err)
	}
	return f, nil
}

// inotify is a watch on one file or folder whose events arrive through
// Go's netpoller: waiting costs no thread and no timer.
type inotify struct{ f *os.File }

func newInotify(path string, mask uint32) (*inotify, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	if _, err := unix.InotifyAddWatch(fd, path, mask); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("inotify watch %s: %w", path, err)
	}
	return &inotify{f: os.NewFile(uintptr(fd), "inotify:"+path)}, nil
}

// wait blocks until at least one event arrived (and drains them), the
// watch is closed, or ctx ends.
func (w *inotify) wait(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { w.f.Close() })
	defer stop()
	var buf [4096]byte
	if _, err := w.f.Read(buf[:]); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	return nil
}

func (w *inotify) close() { w.f.Close() }

// logCapper keeps a running profile's console log under its cap: when it
// grows past max, the older half is cut from its head in place; where the
// filesystem cannot do that, the log is copied to console.log.1 and
// truncated (the writer appends, so it continues at the new end). It
// wakes only on writes to the log.
type logCapper struct {
	dir    string
	max    int64
	log    *slog.Logger
	cancel context.CancelFunc
	done   sync.WaitGroup
}

func newLogCapper(dir string, max int64, log *slog.Logger) *logCapper {
	ctx, cancel := context.WithCancel(context.Background())
	c := &logCapper{dir: dir, max: max, log: log, cancel: cancel}
	w, err := newInotify(filepath.Join(dir, consoleLog), unix.IN_MODIFY)
	if err != nil {
		log.Warn("console log is not capped", "dir", dir, "err", err)
		return c
	}
	c.done.Add(1)
	go func() {
		defer c.done.Done()
		defer w.close()
		for {
			c.check()
			if err := w.wait(ctx); err != nil {
				return
			}
		}
	}()
	return c
}

func (c *logCapper) check() {
	path := filepath.Join(c.dir, consoleLog)
	st, err := os.Stat(path)
	if err != nil || st.Size() <= c.max {
		return
	}
	err = collapse(path, st.Size()-c.max/2)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL) {
		err = rotate(path, filepath.Join(c.dir, consoleOld), c.max)
	}
	if err != nil {
		c.log.Warn("cap console log", "path", path, "err", err)
	}
}

// collapse drops about drop bytes (whole blocks) from the head of the log
// in place (FALLOC_FL_COLLAPSE_RANGE: ext4, f2fs, xfs). The kernel does it
// under the inode lock, so no append of the writer is lost.
func collapse(path string, drop int64) error {
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return err
	}
	blk := int64(st.Blksize)
	if blk <= 0 {
		blk = 4096
	}
	drop -= drop % blk
	if drop <= 0 {
		return nil
	}
	return unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_COLLAPSE_RANGE, 0, drop)
}

// rotate copies the last keep bytes of path to old, then truncates path.
// Writes landing between the copy and the truncation are lost; a cap is
// about bounding the disk, and this keeps the writer's fd untouched.
func rotate(path, old string, keep int64) error {
	src, err := os.Open(path)
	if err != nil {
		return err
	}
	defer src.Close()
	st, err := src.Stat()
	if err != nil {
		return err
	}
	off := max(st.Size()-keep, 0)
	tmp := old + ".tmp"
	dst, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, io.NewSectionReader(src, off, st.Size()-off)); err != nil {
		dst.Close()
		return err
	}
	if err := dst.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, old); err != nil {
		return err
	}
	return os.Truncate(path, 0)
}

func (c *logCapper) close() {
	c.cancel()
	c.done.Wait()
}

// copyLogs writes the console log (older part first) to w; with follow it
// then keeps writing what is appended until ctx ends.
func copyLogs(ctx context.Context, dir string, follow bool, w io.Writer, flush func()) error {
	return copyFollow(ctx, dir, consoleLog, consoleOld, follow, w, flush)
}

// copyFollow writes dir/older then dir/name to w; with follow it then
// keeps writing what is appended until ctx ends, across both ways a log is
// capped: cut or truncated in place (read again from the start) and
// renamed away for a new file (the old one is finished first).
func copyFollow(ctx context.Context, dir, name, older string, follow bool, w io.Writer, flush func()) error {
	if b, err := os.ReadFile(filepath.Join(dir, older)); err == nil {
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	path := filepath.Join(dir, name)
	var watch *inotify
	if follow {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("make logs folder %s: %w", dir, err)
		}
		var err error
		if watch, err = newInotify(dir, unix.IN_MODIFY|unix.IN_CREATE|unix.IN_MOVED_TO|unix.IN_MOVED_FROM); err != nil {
			return err
		}
		defer watch.close()
	}
	f, err := os.Open(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("open %s: %w", name, err)
	}
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	var off int64
	drain := func() error {
		if f == nil {
			return nil
		}
		if st, err := f.Stat(); err == nil && st.Size() < off {
			off = 0 // cut or truncated in place
		}
		n, err := io.Copy(w, io.NewSectionReader(f, off, 1<<62))
		off += n
		flush()
		return err
	}
	for {
		if err := drain(); err != nil {
			return err
		}
		if !follow {
			return nil
		}
		if err := watch.wait(ctx); err != nil {
			return nil
		}
		// Renamed away for a new file: finish the old one, go on with
		// the new.
		st, err := os.Stat(path)
		if err != nil {
			continue
		}
		if f != nil {
			if cur, err := f.Stat(); err == nil && os.SameFile(st, cur) {
				continue
			}
			if err := drain(); err != nil {
				return err
			}
			f.Close()
		}
		f, off = nil, 0
		f, _ = os.Open(path)
	}
}
