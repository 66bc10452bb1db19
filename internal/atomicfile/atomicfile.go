// Package atomicfile replaces a file's content atomically: a temp file in
// the same folder, fsync, rename, fsync of the folder. Whatever step fails
// or wherever the process is killed, the file holds its old or its new
// content, never a mix, and no temp file is left by a failure.
package atomicfile

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Options tune Write; the zero value is a durable write with mode 0600.
type Options struct {
	// Perm is the file's mode (default 0600).
	Perm fs.FileMode
	// NoSync skips both fsyncs: still atomic against a killed process
	// (the page cache outlives it), not against a power loss.
	NoSync bool
	// Fault, set by tests, is called before each step ("create", "write",
	// "sync", "rename", "syncdir") and may fail it.
	Fault func(step string) error
}

func (o Options) step(name string) error {
	if o.Fault == nil {
		return nil
	}
	return o.Fault(name)
}

// Write replaces path with data.
func Write(path string, data []byte, o Options) (err error) {
	dir := filepath.Dir(path)
	if err := o.step("create"); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if o.Perm != 0 {
		if err := f.Chmod(o.Perm); err != nil {
			return fmt.Errorf("chmod %s: %w", tmp, err)
		}
	}
	if err := o.step("write"); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if !o.NoSync {
		if err := o.step("sync"); err != nil {
			return fmt.Errorf("sync %s: %w", tmp, err)
		}
		if err := f.Sync(); err != nil {
			return fmt.Errorf("sync %s: %w", tmp, err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if err := o.step("rename"); err != nil {
		return fmt.Errorf("rename %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s to %s: %w", tmp, path, err)
	}
	if o.NoSync {
		return nil
	}
	if err := o.step("syncdir"); err != nil {
		return fmt.Errorf("sync folder %s: %w", dir, err)
	}
	return SyncDir(dir)
}

// SyncDir fsyncs a folder, making a rename or unlink in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync folder %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync folder %s: %w", dir, err)
	}
	return nil
}
