package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/workcell/workcell/api"
	"github.com/workcell/workcell/internal/atomicfile"
	"github.com/workcell/workcell/sandbox"
)

// record is what the daemon keeps on disk about one profile. The kernel
// is the truth about whether its container runs; the record says what
// the daemon last knew and asked for.
type record struct {
	Name      string     `json:"name"`
	State     api.State  `json:"state"`
	Pid       int        `json:"pid,omitempty"`
	Limits    api.Limits `json:"limits"`
	NoStandby bool       `json:"no_standby,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	StartedAt *time.Time `json:"started_at,omitempty"`
	// IDs is the profile's host id range (identity_linux.go); a record
	// from before ranges has none until its next start.
	IDs *idRange `json:"ids,omitempty"`
}

// The layout of the state directory:
//
//	profiles/<name>/profile.json     the record
//	profiles/<name>/bundle/          config.json and rootfs, imported at install
//	profiles/<name>/logs/console.log the init's stdout and stderr (+ .1)
//	profiles/.install-<name>-*       an install under way (rolled back at start)
//	profiles/.remove-<name>-*        a removal under way (finished at start)
const (
	profilesDir   = "profiles"
	recordFile    = "profile.json"
	bundleDir     = "bundle"
	logsDir       = "logs"
	installPrefix = ".install-"
	removePrefix  = ".remove-"
)

// store reads and writes profile records atomically.
type store struct {
	root string
	// fault, when set by a test, is called before each step of an atomic
	// write and may fail it ("create", "write", "sync", "rename", "syncdir").
	fault func(step string) error
}

func newStore(stateDir string) (*store, error) {
	s := &store{root: filepath.Join(stateDir, profilesDir)}
	if err := os.MkdirAll(s.root, 0o700); err != nil {
		return nil, fmt.Errorf("make profile store %s: %w", s.root, err)
	}
	return s, nil
}

func (s *store) dir(name string) string    { return filepath.Join(s.root, name) }
func (s *store) bundle(name string) string { return filepath.Join(s.root, name, bundleDir) }
func (s *store) logs(name string) string   { return filepath.Join(s.root, name, logsDir) }

func (s *store) step(name string) error {
	if s.fault == nil {
		return nil
	}
	return s.fault(name)
}

// writeAtomic replaces path with data: a temp file in the same folder,
// fsync, rename, fsync of the folder. Whatever step fails, path holds
// either its old or its new content, never a mix.
func (s *store) writeAtomic(path string, data []byte) error {
	return s.write(path, data, true)
}

// write is writeAtomic; without durable it skips the two fsyncs. The
// rename still makes it atomic against a daemon killed at any moment
// (the page cache outlives the process); only a power loss could undo it,
// and after a power loss no container runs and reconcile corrects the
// state anyway.
func (s *store) write(path string, data []byte, durable bool) error {
	return atomicfile.Write(path, data, atomicfile.Options{NoSync: !durable, Fault: s.fault})
}

func syncDir(dir string) error { return atomicfile.SyncDir(dir) }

// save writes rec as the profile's record, durably.
func (s *store) save(rec record) error { return s.saveRecord(rec, true) }

// saveState writes a record whose change is only a runtime state (the
// kernel is the truth about those): atomic, not fsynced.
func (s *store) saveState(rec record) error { return s.saveRecord(rec, false) }

func (s *store) saveRecord(rec record, durable bool) error {
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return fmt.Errorf("encode record of %s: %w", rec.Name, err)
	}
	return s.write(filepath.Join(s.dir(rec.Name), recordFile), append(b, '\n'), durable)
}

// load reads one profile's record.
func (s *store) load(name string) (record, error) {
	path := filepath.Join(s.dir(name), recordFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return record{}, fmt.Errorf("read record: %w", err)
	}
	var rec record
	if err := json.Unmarshal(b, &rec); err != nil {
		return record{}, fmt.Errorf("record %s is corrupt: %w", path, err)
	}
	if rec.Name != name {
		return record{}, fmt.Errorf("record %s names profile %q, not %q", path, rec.Name, name)
	}
	return rec, nil
}

// list returns the names of the installed profiles, skipping the
// folders of installs and removals under way.
func (s *store) list() ([]string, error) {
	ents, err := os.ReadDir(s.root)
	if err != nil {
		return nil, fmt.Errorf("list profiles in %s: %w", s.root, err)
	}
	var names []string
	for _, e := range ents {
		if e.IsDir() && api.ValidName(e.Name()) == nil {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names, nil
}

// cleanPartial rolls back installs and finishes removals that an earlier
// daemon left half done. It returns what it cleaned, for the log.
func (s *store) cleanPartial() ([]string, error) {
	ents, err := os.ReadDir(s.root)
	if err != nil {
		return nil, fmt.Errorf("list profiles in %s: %w", s.root, err)
	}
	var cleaned []string
	var errs []error
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, installPrefix) || strings.HasPrefix(n, removePrefix) {
			if err := os.RemoveAll(filepath.Join(s.root, n)); err != nil {
				errs = append(errs, fmt.Errorf("remove %s: %w", n, err))
				continue
			}
			cleaned = append(cleaned, n)
		}
	}
	// A temp record left by a crash between write and rename.
	names, _ := s.list()
	for _, name := range names {
		tmps, _ := filepath.Glob(filepath.Join(s.dir(name), "."+recordFile+".tmp-*"))
		for _, t := range tmps {
			if os.Remove(t) == nil {
				cleaned = append(cleaned, t)
			}
		}
	}
	if len(cleaned) > 0 {
		_ = syncDir(s.root)
	}
	return cleaned, errors.Join(errs...)
}

// install imports a bundle as profile rec.Name; with shift, the copy's
// owners are shifted into that id range. check runs on the copied
// bundle (so what is validated is what runs). Nothing of the profile is
// visible until the final rename; on any error nothing is left.
func (s *store) install(rec record, src string, shift *sandbox.IDMap, check func(bundle string) error) (err error) {
	tmp, err := os.MkdirTemp(s.root, installPrefix+rec.Name+"-")
	if err != nil {
		return fmt.Errorf("make install folder: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	if err := copyTree(src, filepath.Join(tmp, bundleDir), shift); err != nil {
		return err
	}
	if err := check(filepath.Join(tmp, bundleDir)); err != nil {
		return err
	}
	if err := os.Mkdir(filepath.Join(tmp, logsDir), 0o700); err != nil {
		return fmt.Errorf("make logs folder: %w", err)
	}
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return fmt.Errorf("encode record of %s: %w", rec.Name, err)
	}
	if err := s.writeAtomic(filepath.Join(tmp, recordFile), append(b, '\n')); err != nil {
		return err
	}
	if err := s.step("install-rename"); err != nil {
		return fmt.Errorf("install %s: %w", rec.Name, err)
	}
	if err := os.Rename(tmp, s.dir(rec.Name)); err != nil {
		if errors.Is(err, fs.ErrExist) || errors.Is(err, syscall.ENOTEMPTY) {
			return api.Errorf(api.ErrConflict, "profile %s already exists", rec.Name)
		}
		return fmt.Errorf("install %s: %w", rec.Name, err)
	}
	return syncDir(s.root)
}

// remove deletes a profile's folder: first renamed out of sight (one
// atomic step), then deleted; a cut-short delete is finished at start.
func (s *store) remove(name string) error {
	tmp := filepath.Join(s.root, fmt.Sprintf("%s%s-%d", removePrefix, name, time.Now().UnixNano()))
	if err := os.Rename(s.dir(name), tmp); err != nil {
		return fmt.Errorf("remove profile %s: %w", name, err)
	}
	if err := syncDir(s.root); err != nil {
		return err
	}
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("delete files of profile %s: %w", name, err)
	}
	return nil
}

// copyTree copies a bundle: folders, regular files and symlinks, with
// modes and owners (with shift, owners shifted into its range). Device
// nodes, sockets and fifos are refused: a bundle brings files, not access
// to host devices.
func copyTree(src, dst string, shift *sandbox.IDMap) error {
	st, err := os.Stat(src)
	if err != nil {
		return api.Errorf(api.ErrInvalidArgument, "bundle %s: %w", src, err)
	}
	if !st.IsDir() {
		return api.Errorf(api.ErrInvalidArgument, "bundle %s: not a folder", src)
	}
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return api.Errorf(api.ErrInvalidArgument, "bundle: read %s: %w", path, err)
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return api.Errorf(api.ErrInvalidArgument, "bundle: stat %s: %w", path, err)
		}
		mode := info.Mode()
		switch {
		case mode.IsDir():
			if err := os.Mkdir(target, mode.Perm()|0o700); err != nil {
				return fmt.Errorf("copy bundle: %w", err)
			}
		case mode&fs.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return api.Errorf(api.ErrInvalidArgument, "bundle: read link %s: %w", path, err)
			}
			if err := os.Symlink(link, target); err != nil {
				return fmt.Errorf("copy bundle: %w", err)
			}
		case mode.IsRegular():
			if err := copyFile(path, target, mode); err != nil {
				return err
			}
		default:
			return api.Errorf(api.ErrInvalidArgument, "bundle: %s is a %s: only folders, files and symlinks are allowed", path, fileKind(mode))
		}
		if sys, ok := info.Sys().(*syscall.Stat_t); ok {
			uid, gid := sys.Uid, sys.Gid
			if shift != nil {
				uid, gid = shift.Shift(uid), shift.Shift(gid)
			}
			if err := os.Lchown(target, int(uid), int(gid)); err != nil {
				return fmt.Errorf("copy bundle: chown %s: %w", target, err)
			}
		}
		if mode&fs.ModeSymlink == 0 {
			// The exact mode after the chown, which cleared setuid and
			// setgid, and after Mkdir, which the umask trimmed.
			return os.Chmod(target, mode.Perm()|mode&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky))
		}
		return nil
	})
}

func copyFile(src, dst string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return api.Errorf(api.ErrInvalidArgument, "bundle: open %s: %w", src, err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode.Perm())
	if err != nil {
		return fmt.Errorf("copy bundle: %w", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy bundle: %s: %w", src, err)
	}
	if err := out.Chmod(mode.Perm() | mode&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
		out.Close()
		return fmt.Errorf("copy bundle: chmod %s: %w", dst, err)
	}
	return out.Close()
}

func fileKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeDevice != 0:
		return "device node"
	case m&fs.ModeNamedPipe != 0:
		return "fifo"
	case m&fs.ModeSocket != 0:
		return "socket"
	}
	return "special file"
}
