package vm

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"syscall"
)

// cpioWriter writes the "newc" cpio format the kernel unpacks an initramfs
// from (Documentation/driver-api/early-userspace/buffer-format.rst). Every
// entry is owned by root, whoever builds it.
type cpioWriter struct {
	w   *bufio.Writer
	ino uint32
	n   int64 // bytes written, for the 4-byte alignment
}

func (c *cpioWriter) write(p []byte) error {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return err
}

func (c *cpioWriter) pad() error {
	if r := c.n % 4; r != 0 {
		return c.write(make([]byte, 4-r))
	}
	return nil
}

func (c *cpioWriter) header(name string, mode uint32, size int64, rmajor, rminor uint32) error {
	c.ino++
	nlink := 1
	if mode&syscall.S_IFMT == syscall.S_IFDIR {
		nlink = 2
	}
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, 0, size, 0, 0, rmajor, rminor, len(name)+1, 0)
	if err := c.write([]byte(hdr + name + "\x00")); err != nil {
		return err
	}
	return c.pad()
}

func (c *cpioWriter) dir(name string, perm uint32) error {
	return c.header(name, syscall.S_IFDIR|perm, 0, 0, 0)
}

func (c *cpioWriter) chardev(name string, perm, major, minor uint32) error {
	return c.header(name, syscall.S_IFCHR|perm, 0, major, minor)
}

func (c *cpioWriter) symlink(name, target string) error {
	if err := c.header(name, syscall.S_IFLNK|0o777, int64(len(target)), 0, 0); err != nil {
		return err
	}
	if err := c.write([]byte(target)); err != nil {
		return err
	}
	return c.pad()
}

func (c *cpioWriter) file(name string, perm uint32, r io.Reader, size int64) error {
	if err := c.header(name, syscall.S_IFREG|perm, size, 0, 0); err != nil {
		return err
	}
	n, err := io.Copy(c.w, io.LimitReader(r, size))
	c.n += n
	if err != nil {
		return err
	}
	if n != size {
		return fmt.Errorf("%s: short read (%d of %d bytes)", name, n, size)
	}
	return c.pad()
}

func (c *cpioWriter) close() error {
	if err := c.header("TRAILER!!!", 0, 0, 0, 0); err != nil {
		return err
	}
	return c.w.Flush()
}

// archiveEntry is one file of the initramfs: from a host file, or from
// bytes.
type archiveEntry struct {
	src  string // host file, or
	data []byte
	perm uint32
}

// writeInitramfs writes a gzip-compressed newc archive with dirs (and their
// parents), /dev/console, and files (archive path -> entry) to dst.
func writeInitramfs(dst string, dirs []string, files map[string]archiveEntry) (err error) {
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	// Speed over size: the archive is rebuilt for every boot and the
	// kernel decompresses it under TCG either way.
	zw, _ := gzip.NewWriterLevel(f, gzip.BestSpeed)
	c := &cpioWriter{w: bufio.NewWriterSize(zw, 1<<20)}

	// Parents first: the kernel creates entries in archive order.
	all := map[string]bool{"dev": true}
	addParents := func(p string) {
		for d := path.Dir(p); d != "." && d != "/"; d = path.Dir(d) {
			all[d] = true
		}
	}
	for _, d := range dirs {
		all[d] = true
		addParents(d + "/x")
	}
	for p := range files {
		addParents(p)
	}
	sorted := make([]string, 0, len(all))
	for d := range all {
		sorted = append(sorted, d)
	}
	sort.Strings(sorted)
	for _, d := range sorted {
		perm := uint32(0o755)
		if d == "tmp" {
			perm = 0o1777
		}
		if err := c.dir(d, perm); err != nil {
			return err
		}
	}
	// The kernel opens /dev/console for /init's stdio before /init runs.
	if err := c.chardev("dev/console", 0o600, 5, 1); err != nil {
		return err
	}
	names := make([]string, 0, len(files))
	for p := range files {
		names = append(names, p)
	}
	sort.Strings(names)
	for _, p := range names {
		e := files[p]
		if e.src == "" {
			if err := c.file(p, e.perm, strings.NewReader(string(e.data)), int64(len(e.data))); err != nil {
				return err
			}
			continue
		}
		if err := copyInto(c, p, e); err != nil {
			return err
		}
	}
	if err := c.close(); err != nil {
		return err
	}
	return zw.Close()
}

func copyInto(c *cpioWriter, p string, e archiveEntry) error {
	in, err := os.Open(e.src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", e.src)
	}
	return c.file(p, e.perm, in, st.Size())
}
