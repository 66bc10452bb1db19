package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/workcell/workcell/api"
	"github.com/workcell/workcell/images"
	"github.com/workcell/workcell/sandbox"
)

// A wipe is crypto-erase first: its intent is journaled, then the profile
// is stopped, its key evicted from the kernel and its wrapped key
// destroyed; only then are its files, network and records deleted. From
// the eviction on no byte of its data is readable. A daemon that dies
// part way finishes the wipe at its next start, before anything else.

// crashEnv names the test-only crash injection: WORKCELL_TEST_CRASH_AT=
// wipe:<step> makes the daemon SIGKILL itself right after that step of a
// wipe (journal, stop, evict, destroy, files, records). Tests use it to
// check that a new daemon completes the wipe; it has no other use.
const crashEnv = "WORKCELL_TEST_CRASH_AT"

// wipeSteps are the crash injection points, in order.
var wipeSteps = []string{"journal", "stop", "evict", "destroy", "files", "records"}

const wipePrefix = "wipe-"

// wipeJournal is the intent of one wipe, written before anything is
// destroyed. The paths are kept so that a daemon started with other
// settings still finds what to destroy.
type wipeJournal struct {
	Name    string    `json:"name"`
	DataDir string    `json:"data_dir"`
	Data    string    `json:"data"`
	KeyFile string    `json:"key_file"`
	Started time.Time `json:"started"`
}

func (d *Daemon) journalPath(name string) string {
	return filepath.Join(d.stor.journalDir, wipePrefix+name+".json")
}

// parseJournal reads a wipe journal. The file name is the authority on
// which profile is wiped: a journal whose content is damaged still wipes
// it, with the paths the current settings give.
func parseJournal(file string, data []byte) (wipeJournal, error) {
	base := filepath.Base(file)
	name, ok := strings.CutSuffix(strings.TrimPrefix(base, wipePrefix), ".json")
	if !strings.HasPrefix(base, wipePrefix) || !ok || api.ValidName(name) != nil {
		return wipeJournal{}, fmt.Errorf("wipe journal %s: not a journal file name", file)
	}
	var j wipeJournal
	if err := json.Unmarshal(data, &j); err != nil || j.Name != name {
		return wipeJournal{Name: name}, fmt.Errorf("wipe journal %s is damaged; wiping %s with the current settings' paths", file, name)
	}
	return j, nil
}

// fill completes a journal's paths from the current settings.
func (d *Daemon) fill(j wipeJournal) wipeJournal {
	if j.DataDir == "" {
		j.DataDir = d.stor.dataDir(j.Name)
	}
	if j.Data == "" {
		j.Data = d.stor.profileData(j.Name)
	}
	if j.KeyFile == "" {
		j.KeyFile = d.stor.keyFile(j.Name)
	}
	return j
}

// crashPoint kills the daemon after a wipe step when a test asked for it.
func (d *Daemon) crashPoint(step string) {
	if d.stor.crashAt == "wipe:"+step {
		d.log.Warn("test crash injection: SIGKILL", "at", d.stor.crashAt)
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	}
}

// Wipe crypto-erases a profile and deletes everything it had.
// It does not wait out a stop's grace or the readers of the logs.
func (d *Daemon) Wipe(ctx context.Context, name string) error {
	p, err := d.lookupPreempt(name)
	if err != nil {
		return err
	}
	defer p.mu.Unlock()
	j := d.fill(wipeJournal{Name: name, Started: time.Now().UTC()})
	b, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return err
	}
	if err := d.store.writeAtomic(d.journalPath(name), append(b, '\n')); err != nil {
		return fmt.Errorf("wipe %s: journal: %w", name, err)
	}
	d.log.Warn("wiping profile", "profile", name)
	d.crashPoint("journal")
	return d.runWipe(ctx, p, j, false)
}

// finishWipes completes every journaled wipe (at start).
func (d *Daemon) finishWipes(ctx context.Context) error {
	files, err := filepath.Glob(filepath.Join(d.stor.journalDir, wipePrefix+"*.json"))
	if err != nil {
		return err
	}
	var errs []error
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		j, err := parseJournal(f, data)
		if j.Name == "" {
			errs = append(errs, err)
			continue
		}
		if err != nil {
			d.log.Error("wipe journal", "err", err)
		}
		d.log.Warn("finishing a wipe cut short", "profile", j.Name, "started", j.Started)
		if err := d.runWipe(ctx, &profile{rec: record{Name: j.Name}}, d.fill(j), true); err != nil {
			errs = append(errs, fmt.Errorf("finish wipe of %s: %w", j.Name, err))
		}
	}
	return errors.Join(errs...)
}

// runWipe does the steps of a wipe; each is idempotent. p.mu is held (or
// p is not yet known to anyone, atStart).
func (d *Daemon) runWipe(ctx context.Context, p *profile, j wipeJournal, atStart bool) error {
	name := j.Name
	// 1. stop: what runs could still read the data; so could the daemon's
	// own readers of the logs.
	p.ops.endReaders(errProfileGone)
	d.dropStandby(ctx, p)
	if p.ctr != nil {
		if err := d.stopLocked(ctx, p, 0, "wiped"); err != nil {
			return fmt.Errorf("wipe %s: %w", name, err)
		}
	} else if c, err := d.rt.Load(ctx, name); err == nil {
		if st, _ := c.State(ctx); st != sandbox.Stopped {
			if err := c.Stop(ctx, 0); err != nil {
				c.Close()
				return fmt.Errorf("wipe %s: stop: %w", name, err)
			}
		}
		c.Close()
	}
	if err := d.rt.Remove(ctx, name); err != nil && !errors.Is(err, sandbox.ErrNotExist) {
		return fmt.Errorf("wipe %s: %w", name, err)
	}
	if err := images.Unmount(ctx, d.stor.rootfs(name)); err != nil {
		return fmt.Errorf("wipe %s: %w", name, err)
	}
	d.crashPoint("stop")
	// 2. evict the key: from here on the data is unreadable.
	if err := d.evictKey(ctx, name, nil, true); err != nil {
		return fmt.Errorf("wipe %s: %w", name, err)
	}
	p.stor.key.Wipe()
	p.stor.key = nil
	d.log.Info("wipe: key evicted", "profile", name)
	d.crashPoint("evict")
	// 3. destroy the wrapped key and its copies: nothing can bring the key back.
	if err := destroyKeyFiles(ctx, j.KeyFile); err != nil {
		return fmt.Errorf("wipe %s: %w", name, err)
	}
	d.crashPoint("destroy")
	// 4. the files, ciphertext only by now.
	if err := os.RemoveAll(j.Data); err != nil {
		return fmt.Errorf("wipe %s: delete data: %w", name, err)
	}
	d.crashPoint("files")
	// 5. network, the rest of storage, logs and records.
	if p.logs != nil {
		p.logs.close()
		p.logs = nil
	}
	// At start the network concern is not open yet: its reconcile, later,
	// deletes the networks of profiles that no longer exist.
	purge := d.purge
	if atStart {
		purge = d.storageRemove
	}
	if err := purge(ctx, p); err != nil {
		return fmt.Errorf("wipe %s: %w", name, err)
	}
	if _, err := os.Stat(d.store.dir(name)); err == nil {
		if err := d.store.remove(name); err != nil {
			return fmt.Errorf("wipe %s: %w", name, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("wipe %s: %w", name, err)
	}
	d.mu.Lock()
	if d.profiles[name] == p {
		delete(d.profiles, name)
		delete(d.ids, name) // its files are gone: the range is free
	}
	d.mu.Unlock()
	d.crashPoint("records")
	// 6. the journal, last.
	if err := os.Remove(d.journalPath(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("wipe %s: remove journal: %w", name, err)
	}
	if err := syncDir(d.stor.journalDir); err != nil {
		return err
	}
	d.log.Warn("profile wiped", "profile", name)
	d.bus.publish(api.Event{Time: time.Now().UTC(), Profile: name, State: api.StateAbsent, Reason: "wiped"})
	return nil
}
