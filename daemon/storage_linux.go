package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/workcell/workcell/api"
	"github.com/workcell/workcell/images"
	"github.com/workcell/workcell/images/fscrypt"
	"github.com/workcell/workcell/sandbox"
)

// The encrypted storage of the profiles. Layout:
//
//	<state>/device.key                  the device key (FileProtector, 0600)
//	<state>/profiles/<name>/key.wrapped the profile key, wrapped
//	<state>/journal/wipe-<name>.json    a wipe under way (wipe_linux.go)
//	<state>/store/                      the store image's mount, if any
//	<data-root>/<name>/data/            fscrypt v2 policy; upper/ and work/
//	<run>/profiles/<name>/rootfs        the overlay the container runs on
//
// <data-root> is <state>/store with --store-image, else <state>/profiles.
// The kernel is the truth about whether a profile is unlocked: its key is
// in the filesystem keyring or not.
const (
	loopNodeDir    = "loop"
	deviceKeyFile  = "device.key"
	wrappedKeyFile = "key.wrapped"
	storeMountDir  = "store"
	dataDirName    = "data"
)

// storage is the daemon's storage configuration, fixed at start.
type storage struct {
	insecure bool
	// storeMount is where the store image is mounted ("" without one).
	storeMount string
	dataRoot   string
	keyRoot    string
	runRoot    string
	journalDir string
	prot       fscrypt.Protector
	// unusable says why profiles cannot run here (the filesystem cannot
	// encrypt and no way out was chosen); nil when they can.
	unusable error
	// mode is the fscrypt mode new profiles get, modeWhy why
	// (storage_platform_linux.go).
	mode    fscrypt.Mode
	modeWhy string
	// crashAt is a test-only crash injection point (see crashPoint).
	crashAt string
}

// profileStorage is one profile's storage state in memory.
type profileStorage struct {
	encrypted  bool
	passphrase bool
	// tries counts wrong passphrases (throttle.go), as on disk; throttle
	// is the daemon's policy.
	tries    passTries
	throttle PassphraseThrottle
	// key is kept while the profile is unlocked by this daemon, so a lock
	// that finds files busy can put the key back instead of leaving it
	// half removed.
	key *fscrypt.Key
}

func (s *storage) dataDir(name string) string { return filepath.Join(s.dataRoot, name, dataDirName) }

// logsDir is where a profile's console and audit logs go: inside its
// encrypted data folder, because what work writes there is work data (it
// is unreadable while locked and goes with a wipe); in the state folder
// only with insecure storage.
func (d *Daemon) logsDir(name string) string {
	if d.stor == nil || d.stor.insecure {
		return d.store.logs(name)
	}
	return filepath.Join(d.stor.dataDir(name), logsDir)
}
func (s *storage) keyFile(name string) string { return filepath.Join(s.keyRoot, name, wrappedKeyFile) }
func (s *storage) rootfs(name string) string  { return filepath.Join(s.runRoot, name, "rootfs") }

// triesFile is the profile's count of wrong passphrases (throttle.go).
func (s *storage) triesFile(name string) string {
	return filepath.Join(s.keyRoot, name, passTriesFile)
}

// retryAt is when the next passphrase may be tried, nil if now.
func (ps *profileStorage) retryAt() *time.Time {
	if t := ps.tries.retryAt(ps.throttle, time.Now()); !t.IsZero() {
		t = t.UTC().Truncate(time.Second).Add(time.Second) // never earlier than the truth
		return &t
	}
	return nil
}

// profileData is what to delete of a profile's data: its whole folder on
// the store, or data/ in its state folder (the rest goes with the record).
func (s *storage) profileData(name string) string {
	if s.storeMount != "" {
		return filepath.Join(s.dataRoot, name)
	}
	return s.dataDir(name)
}

// openStorage sets up the storage from the configuration: mounts the
// store image, or checks that the state folder can encrypt.
func (d *Daemon) openStorage(ctx context.Context) error {
	s := &storage{
		insecure:   d.cfg.InsecureUnencryptedStorage,
		keyRoot:    filepath.Join(d.cfg.StateDir, profilesDir),
		dataRoot:   filepath.Join(d.cfg.StateDir, profilesDir),
		runRoot:    filepath.Join(d.cfg.RunDir, profilesDir),
		journalDir: filepath.Join(d.cfg.StateDir, "journal"),
		prot:       fscrypt.NewFileProtector(filepath.Join(d.cfg.StateDir, deviceKeyFile)),
		crashAt:    os.Getenv(crashEnv),
	}
	for _, dir := range []string{s.journalDir, s.runRoot} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("storage: %w", err)
		}
	}
	cpuinfo, _ := os.ReadFile("/proc/cpuinfo")
	if err := s.chooseMode(ctx, d.cfg.FscryptContents, cpuinfo, fscrypt.ProbeMode); err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	if !s.insecure {
		d.log.Info("fscrypt mode of new profiles", "mode", s.mode, "why", s.modeWhy)
	}
	switch {
	case s.insecure:
		d.log.Warn("INSECURE: --insecure-unencrypted-storage: work data is kept UNENCRYPTED on disk; lock and wipe cannot make it unreadable",
			"data_root", s.dataRoot)
	case d.cfg.StoreImage != "":
		s.storeMount = filepath.Join(d.cfg.StateDir, storeMountDir)
		if err := images.EnsureStoreWith(ctx, d.cfg.StoreImage, d.cfg.StoreSize, s.storeMount,
			images.WithLoopNodeDir(filepath.Join(d.cfg.RunDir, loopNodeDir))); err != nil {
			return fmt.Errorf("storage: %w", err)
		}
		s.dataRoot = s.storeMount
		d.log.Info("profile store mounted", "image", d.cfg.StoreImage, "size", d.cfg.StoreSize, "mountpoint", s.storeMount)
	default:
		if err := s.checkParent(ctx); err != nil {
			s.unusable = err
			d.log.Error("profiles cannot start: the state folder is encrypted already", "err", err)
		} else if err := fscrypt.Supported(ctx, s.dataRoot); err != nil {
			s.unusable = api.Errorf(api.ErrConflict, "work data must be encrypted, but %v; start workcelld with "+
				"--store-image PATH --store-size SIZE (a loop-mounted ext4 image made with -O encrypt) "+
				"or, without encryption, --insecure-unencrypted-storage", err)
			d.log.Error("profiles cannot start: the state folder cannot encrypt", "err", err)
		}
	}
	d.stor = s
	return nil
}

// storageUsable refuses to run profiles where their data cannot be
// encrypted.
func (d *Daemon) storageUsable() error { return d.stor.unusable }

// storageRecover runs first at start: it opens the storage and finishes
// the wipes an earlier daemon left half done.
func (d *Daemon) storageRecover(ctx context.Context) error {
	if err := d.openStorage(ctx); err != nil {
		return err
	}
	return d.finishWipes(ctx)
}

// storageInstalled runs right after an install (the profile is locked):
// without a passphrase, which a new profile never has, it unlocks it.
func (d *Daemon) storageInstalled(ctx context.Context, p *profile) {
	p.stor.encrypted = !d.stor.insecure
	p.stor.throttle = d.cfg.Passphrase
	if err := d.unlockLocked(ctx, p, nil); err != nil {
		d.log.Error("unlock after install", "profile", p.rec.Name, "err", err)
	}
}

// storageUp mounts the profile's overlay (the bundle's rootfs under the
// encrypted upper layer) and makes it the container's root.
func (d *Daemon) storageUp(ctx context.Context, p *profile, h *sandbox.HardenOptions) error {
	if err := d.storageUsable(); err != nil {
		return err
	}
	name := p.rec.Name
	spec, err := sandbox.LoadBundle(d.store.bundle(name))
	if err != nil {
		return err
	}
	lower := "rootfs"
	if spec.Root != nil && spec.Root.Path != "" {
		lower = spec.Root.Path
	}
	if !filepath.IsAbs(lower) {
		lower = filepath.Join(d.store.bundle(name), lower)
	}
	data := d.stor.dataDir(name)
	if d.stor.insecure {
		if err := mkdirs(filepath.Join(data, "upper"), filepath.Join(data, "work")); err != nil {
			return err
		}
	} else if err := d.keyPresent(ctx, name); err != nil {
		return err
	}
	target := d.stor.rootfs(name)
	if err := os.MkdirAll(target, 0o700); err != nil {
		return fmt.Errorf("overlay mountpoint: %w", err)
	}
	if err := images.Unmount(ctx, target); err != nil { // a stale one
		return err
	}
	if err := d.identityRootfs(h, filepath.Join(data, "upper"), target); err != nil {
		return err
	}
	if err := images.MountOverlay(ctx, []string{lower}, filepath.Join(data, "upper"), filepath.Join(data, "work"), target); err != nil {
		return err
	}
	h.Rootfs = target
	return nil
}

func mkdirs(dirs ...string) error {
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("data folder: %w", err)
		}
	}
	return nil
}

// keyPresent checks that the profile's key is in the kernel.
func (d *Daemon) keyPresent(ctx context.Context, name string) error {
	data := d.stor.dataDir(name)
	id, err := d.ownKey(ctx, name, nil)
	if err != nil {
		return api.Errorf(api.ErrConflict, "profile %s has no unlocked data folder (%v): unlock it first", name, err)
	}
	st, err := fscrypt.GetKeyStatus(ctx, data, id)
	if err != nil {
		return err
	}
	if st.State != fscrypt.KeyPresent {
		return api.Errorf(api.ErrConflict, "profile %s is locked (key %s): unlock it first", name, st.State)
	}
	return nil
}

// storageDown unmounts the overlay once the container is gone.
func (d *Daemon) storageDown(ctx context.Context, p *profile) {
	if err := images.Unmount(ctx, d.stor.rootfs(p.rec.Name)); err != nil {
		d.log.Error("unmount profile root", "profile", p.rec.Name, "err", err)
	}
}

// storageRemove crypto-erases a removed profile's storage: the key leaves
// the kernel, the wrapped key is destroyed, then the files are deleted.
// Each step is idempotent, so a cut-short removal or wipe runs it again.
func (d *Daemon) storageRemove(ctx context.Context, p *profile) error {
	name := p.rec.Name
	if err := images.Unmount(ctx, d.stor.rootfs(name)); err != nil {
		return err
	}
	os.Remove(d.stor.rootfs(name))
	os.Remove(filepath.Dir(d.stor.rootfs(name)))
	if err := d.evictKey(ctx, name, nil, true); err != nil {
		return err
	}
	p.stor.key.Wipe()
	p.stor.key = nil
	if err := destroyKeyFiles(ctx, d.stor.keyFile(name)); err != nil {
		return err
	}
	if err := os.RemoveAll(d.stor.profileData(name)); err != nil {
		return fmt.Errorf("delete data of %s: %w", name, err)
	}
	return nil
}

// destroyKeyFiles crypto-erases the wrapped key and any temp copy an
// interrupted write left beside it.
func destroyKeyFiles(ctx context.Context, path string) error {
	copies, _ := filepath.Glob(filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*"))
	var errs []error
	for _, f := range append(copies, path) {
		errs = append(errs, fscrypt.Destroy(ctx, f))
	}
	return errors.Join(errs...)
}

// evictKey removes the profile's key from the kernel (every user's claim).
// Files still in use (FILES_BUSY) leave the key incompletely removed; then,
// unless force, the key is put back (or, without a copy in memory, the
// removal retried) so the profile is either locked or unlocked, and the
// error names the processes that hold the files. With force (wipe,
// remove) the secret is gone already and only the holders' open files stay
// readable until closed: that is logged.
func (d *Daemon) evictKey(ctx context.Context, name string, key *fscrypt.Key, force bool) error {
	if d.stor.insecure {
		return nil
	}
	data := d.stor.dataDir(name)
	// Only the profile's own key is ever removed: a policy inherited from
	// an encrypted folder above (Android's) is the phone's, not work's.
	id, err := d.ownKey(ctx, name, key)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fscrypt.ErrNotEncrypted) {
		return nil // never unlocked: nothing in the kernel
	}
	if errors.Is(err, errForeignKey) && force {
		d.log.Error("no key removed: the data folder's key is not the profile's", "profile", name, "err", err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("evict key of %s: %w", name, err)
	}
	// A container's mount namespace can outlive its last process by a
	// moment, and with it the overlay's hold on the upper layer's inodes:
	// while no process holds files, removing again completes the eviction.
	var who string
	for attempt := 1; ; attempt++ {
		// Asked on data/'s parent: an fd on data/ itself would keep one of
		// the key's inodes busy.
		_, err = fscrypt.RemoveKeyAllUsers(ctx, filepath.Dir(data), id)
		if err == nil || errors.Is(err, fscrypt.ErrKeyAbsent) {
			return nil
		}
		if !errors.Is(err, fscrypt.ErrFilesBusy) {
			return fmt.Errorf("evict key of %s: %w", name, err)
		}
		if who = d.holders(ctx, data); who != "" || attempt == 20 {
			break
		}
		time.Sleep(time.Duration(attempt) * 5 * time.Millisecond)
	}
	if who == "" {
		who = "unknown processes"
	}
	if force {
		d.log.Warn("key evicted, but files of the profile are still open; they stay readable to their holders until closed",
			"profile", name, "holders", who)
		return nil
	}
	if key != nil {
		if _, aerr := fscrypt.AddKey(ctx, data, key); aerr == nil {
			return api.Errorf(api.ErrConflict, "cannot lock profile %s: its files are in use by %s; it stays unlocked: close them and lock again", name, who)
		}
	}
	if _, err = fscrypt.RemoveKeyAllUsers(ctx, filepath.Dir(data), id); err == nil || errors.Is(err, fscrypt.ErrKeyAbsent) {
		return nil
	}
	return api.Errorf(api.ErrConflict, "cannot lock profile %s: its files are in use by %s: no file can be opened any more, "+
		"those open stay readable; close them and lock again to finish", name, who)
}

// holders names the processes that keep files under dir open.
func (d *Daemon) holders(ctx context.Context, dir string) string {
	hs, err := images.Holders(ctx, dir)
	if (err != nil || len(hs) == 0) && d.stor.storeMount != "" {
		hs, err = images.Holders(ctx, d.stor.storeMount)
	}
	if err != nil || len(hs) == 0 {
		return ""
	}
	s := make([]string, len(hs))
	for i, h := range hs {
		s[i] = fmt.Sprintf("pid %d (%s)", h.PID, h.Comm)
	}
	return strings.Join(s, ", ")
}

// loadKey unwraps the profile key. A profile that has neither a wrapped
// key nor data yet (a fresh install, or one cut short before its key was
// written) gets a new key.
func (d *Daemon) loadKey(ctx context.Context, p *profile, passphrase []byte) (*fscrypt.Key, error) {
	name := p.rec.Name
	path := d.stor.keyFile(name)
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		if ents, _ := os.ReadDir(d.stor.dataDir(name)); len(ents) > 0 {
			return nil, fmt.Errorf("profile %s: its wrapped key %s is missing but %s holds data: cannot unlock (restore the key file)",
				name, path, d.stor.dataDir(name))
		}
		key, err := fscrypt.NewKey()
		if err != nil {
			return nil, err
		}
		if err := fscrypt.StoreKey(ctx, path, d.stor.prot, key, nil); err != nil {
			key.Wipe()
			return nil, fmt.Errorf("profile %s: %w", name, err)
		}
		d.log.Info("profile key made", "profile", name)
		return key, nil
	}
	var key *fscrypt.Key
	w, err := fscrypt.ReadWrappedKey(path)
	if err == nil && w.HasPassphrase() {
		if len(passphrase) == 0 {
			return nil, api.Errorf(api.ErrPermission, "profile %s needs its passphrase", name)
		}
		// Throttled before anything is checked; counted before the check,
		// so that no way of cutting the check short saves a try.
		if err := d.countTry(p); err != nil {
			return nil, err
		}
	}
	if err == nil {
		if key, err = w.Open(ctx, d.stor.prot, passphrase); err != nil {
			err = fmt.Errorf("wrapped key %s: %w", path, err)
		}
	}
	switch {
	case errors.Is(err, fscrypt.ErrWrongPassphrase):
		n := p.stor.tries.Failures
		d.log.Warn("wrong passphrase", "profile", name, "failed_tries", n)
		msg := fmt.Sprintf("wrong passphrase for profile %s (%d wrong in a row)", name, n)
		if wait := p.stor.tries.wait(p.stor.throttle, time.Now()); wait > 0 {
			msg += fmt.Sprintf("; the next try is allowed in %s", roundUp(wait))
		} else if left := p.stor.throttle.FreeTries - n; left > 0 {
			msg += fmt.Sprintf("; %d more before tries are delayed", left)
		}
		return nil, api.Errorf(api.ErrPermission, "%s", msg)
	case errors.Is(err, fscrypt.ErrCorrupt):
		return nil, fmt.Errorf("profile %s cannot be unlocked: %w; the file is kept as it is for recovery", name, err)
	case err != nil:
		return nil, fmt.Errorf("profile %s: %w", name, err)
	}
	if w.HasPassphrase() {
		d.resetTries(p)
	}
	return key, nil
}

// countTry refuses a passphrase try that comes before the next allowed
// time, else records it as failed (durably) until it proves right.
func (d *Daemon) countTry(p *profile) error {
	name := p.rec.Name
	now := time.Now()
	if wait := p.stor.tries.wait(p.stor.throttle, now); wait > 0 {
		return api.Throttledf(wait, "profile %s: too many wrong passphrases (%d in a row): the next try is allowed in %s, at %s",
			name, p.stor.tries.Failures, roundUp(wait), now.Add(wait).UTC().Format(time.RFC3339))
	}
	next := passTries{Failures: p.stor.tries.Failures + 1, Last: now.UTC()}
	if err := savePassTries(d.stor.triesFile(name), next); err != nil {
		return fmt.Errorf("profile %s: cannot record the passphrase try, so none is made: %w", name, err)
	}
	p.stor.tries = next
	return nil
}

// reconcileTries reads the profile's count of wrong passphrases back.
func (d *Daemon) reconcileTries(p *profile) {
	p.stor.throttle = d.cfg.Passphrase
	tries, err := loadPassTries(d.stor.triesFile(p.rec.Name), d.cfg.Passphrase)
	if err != nil {
		d.log.Error("passphrase tries", "profile", p.rec.Name, "err", err)
	}
	p.stor.tries = tries
}

// resetTries clears the count after a right passphrase.
func (d *Daemon) resetTries(p *profile) {
	p.stor.tries = passTries{}
	if err := savePassTries(d.stor.triesFile(p.rec.Name), passTries{}); err != nil {
		d.log.Error("reset passphrase tries", "profile", p.rec.Name, "err", err)
	}
}

// roundUp shows a wait in whole seconds, never less than it is.
func roundUp(d time.Duration) time.Duration {
	return (d + time.Second - 1).Truncate(time.Second)
}

// unlockLocked unwraps the key and adds it to the kernel: locked becomes
// stopped. p.mu is held.
func (d *Daemon) unlockLocked(ctx context.Context, p *profile, passphrase []byte) error {
	name := p.rec.Name
	if err := d.storageUsable(); err != nil {
		return err
	}
	if _, err := next(name, p.rec.State, actUnlock); err != nil {
		return err
	}
	if p.rec.State != api.StateLocked {
		return nil
	}
	data := d.stor.dataDir(name)
	if d.stor.insecure {
		if err := mkdirs(filepath.Join(data, "upper"), filepath.Join(data, "work")); err != nil {
			return err
		}
		return d.setState(p, api.StateStopped, 0, "unlocked")
	}
	t := time.Now()
	key, err := d.loadKey(ctx, p, passphrase)
	if err != nil {
		return err
	}
	if err := d.prepareData(ctx, name, key); err != nil {
		key.Wipe()
		return fmt.Errorf("unlock profile %s: %w", name, err)
	}
	p.stor.key.Wipe()
	p.stor.key = key
	d.log.Info("profile unlocked", "profile", name, "took", time.Since(t).Round(time.Microsecond))
	return d.setState(p, api.StateStopped, 0, "unlocked")
}

// lockLocked stops the profile if it runs, unmounts its overlay and
// evicts its key. p.mu is held.
func (d *Daemon) lockLocked(ctx context.Context, p *profile, reason string) error {
	name := p.rec.Name
	if _, err := next(name, p.rec.State, actLock); err != nil {
		return err
	}
	if p.rec.State == api.StateLocked {
		return nil
	}
	if p.ctr != nil || p.rec.State == api.StateRunning || p.rec.State == api.StatePaused {
		if err := d.stopLocked(ctx, p, time.Duration(d.cfg.StopTimeout), reason); err != nil {
			return err
		}
	}
	// Readers of the logs hold files of the encrypted folder open.
	p.ops.endReaders(errProfileLocked)
	d.dropStandby(ctx, p)
	if err := images.Unmount(ctx, d.stor.rootfs(name)); err != nil {
		return api.Errorf(api.ErrConflict, "cannot lock profile %s: %w", name, err)
	}
	if err := d.evictKey(ctx, name, p.stor.key, false); err != nil {
		return err
	}
	p.stor.key.Wipe()
	p.stor.key = nil
	d.log.Info("profile locked", "profile", name)
	return d.setState(p, api.StateLocked, 0, reason)
}

// Unlock unlocks a locked profile with its passphrase (nil if none).
func (d *Daemon) Unlock(ctx context.Context, name string, passphrase []byte) (api.Profile, error) {
	p, err := d.lookup(name)
	if err != nil {
		return api.Profile{}, err
	}
	defer p.mu.Unlock()
	if err := d.unlockLocked(ctx, p, passphrase); err != nil {
		return api.Profile{}, err
	}
	d.kickStandby(p)
	return p.status(), nil
}

// Lock locks a profile: stopped, unmounted, key evicted.
func (d *Daemon) Lock(ctx context.Context, name string) (api.Profile, error) {
	return d.lockAs(ctx, name, false)
}

// lockAs is Lock; an admin's does not wait out a stop's grace.
func (d *Daemon) lockAs(ctx context.Context, name string, admin bool) (api.Profile, error) {
	lookup := d.lookup
	if admin {
		lookup = d.lookupPreempt
	}
	p, err := lookup(name)
	if err != nil {
		return api.Profile{}, err
	}
	defer p.mu.Unlock()
	if err := d.lockLocked(ctx, p, "locked"); err != nil {
		return api.Profile{}, err
	}
	return p.status(), nil
}

// SetPassphrase re-wraps the profile key: under the device key and
// newPass, or (empty newPass) the device key alone. oldPass must open the
// current wrapping. A corrupt key file is refused and never overwritten.
func (d *Daemon) SetPassphrase(ctx context.Context, name string, oldPass, newPass []byte) (api.Profile, error) {
	p, err := d.lookup(name)
	if err != nil {
		return api.Profile{}, err
	}
	defer p.mu.Unlock()
	if d.stor.insecure {
		return api.Profile{}, api.Errorf(api.ErrConflict, "profile %s is stored unencrypted (--insecure-unencrypted-storage): a passphrase would protect nothing", name)
	}
	if err := d.storageUsable(); err != nil {
		return api.Profile{}, err
	}
	key, err := d.loadKey(ctx, p, oldPass)
	if err != nil {
		return api.Profile{}, err
	}
	defer key.Wipe()
	if err := fscrypt.StoreKey(ctx, d.stor.keyFile(name), d.stor.prot, key, newPass); err != nil {
		return api.Profile{}, fmt.Errorf("profile %s: %w", name, err)
	}
	p.stor.passphrase = len(newPass) > 0
	d.log.Info("passphrase changed", "profile", name, "set", p.stor.passphrase)
	return p.status(), nil
}

// storageReconcile runs at start after adoption: the kernel says which
// profiles are unlocked; those without a passphrase are unlocked; stale
// overlays of profiles that do not run are unmounted.
func (d *Daemon) storageReconcile(ctx context.Context) error {
	for _, name := range d.names() {
		p, err := d.lookup(name)
		if err != nil {
			continue
		}
		d.reconcileProfileStorage(ctx, p)
		p.mu.Unlock()
	}
	return nil
}

func (d *Daemon) reconcileProfileStorage(ctx context.Context, p *profile) {
	name := p.rec.Name
	p.stor.encrypted = !d.stor.insecure
	d.reconcileTries(p)
	if w, err := fscrypt.ReadWrappedKey(d.stor.keyFile(name)); err == nil {
		p.stor.passphrase = w.HasPassphrase()
	} else if !errors.Is(err, fs.ErrNotExist) {
		d.log.Error("profile key unreadable", "profile", name, "err", err)
	}
	if p.ctr != nil {
		return // running on its overlay: unlocked
	}
	if err := images.Unmount(ctx, d.stor.rootfs(name)); err != nil {
		d.log.Error("unmount stale profile root", "profile", name, "err", err)
	}
	unlocked := d.stor.insecure && d.stor.unusable == nil
	if !d.stor.insecure && d.stor.unusable == nil {
		unlocked = d.keyPresent(ctx, name) == nil
	}
	switch {
	case unlocked && p.rec.State == api.StateLocked:
		if err := d.setState(p, api.StateStopped, 0, "key present in the kernel"); err != nil {
			d.log.Error("record state", "profile", name, "err", err)
		}
	case !unlocked && p.rec.State != api.StateLocked:
		if err := d.setState(p, api.StateLocked, 0, "key not in the kernel"); err != nil {
			d.log.Error("record state", "profile", name, "err", err)
		}
	}
	if p.rec.State == api.StateLocked && !p.stor.passphrase && d.stor.unusable == nil {
		if err := d.unlockLocked(ctx, p, nil); err != nil {
			d.log.Error("unlock at start", "profile", name, "err", err)
		}
	}
}

// storageRoutes adds the storage endpoints: unlock, lock and passphrase
// for the owner; wipe for root and the system uid only (IT's remote wipe
// arrives through the system side, and an employee who wants the data
// gone can lock; removing work data for good is not theirs to decide).
func (s *Server) storageRoutes(h route) {
	v := "/" + api.Version
	h("POST "+v+"/profiles/{name}/unlock", roleOwner, "", func(w http.ResponseWriter, r *http.Request) error {
		var req api.UnlockRequest
		if err := decodeBody(r, &req, false); err != nil {
			return err
		}
		pass := []byte(req.Passphrase)
		defer clear(pass)
		p, err := s.d.Unlock(r.Context(), r.PathValue("name"), pass)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, p)
	})
	h("POST "+v+"/profiles/{name}/lock", roleOwner, "", func(w http.ResponseWriter, r *http.Request) error {
		if err := decodeBody(r, &struct{}{}, false); err != nil {
			return err
		}
		// Root's lock does not wait out the owner's stop.
		admin := roleOf(uidOf(r), s.d.cfg) == roleAdmin
		p, err := s.d.lockAs(r.Context(), r.PathValue("name"), admin)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, p)
	})
	h("POST "+v+"/profiles/{name}/passphrase", roleOwner, "", func(w http.ResponseWriter, r *http.Request) error {
		var req api.PassphraseRequest
		if err := decodeBody(r, &req, true); err != nil {
			return err
		}
		oldPass, newPass := []byte(req.Old), []byte(req.New)
		defer clear(oldPass)
		defer clear(newPass)
		p, err := s.d.SetPassphrase(r.Context(), r.PathValue("name"), oldPass, newPass)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, p)
	})
	h("POST "+v+"/profiles/{name}/wipe", roleAdmin, "wipe profiles", func(w http.ResponseWriter, r *http.Request) error {
		if err := decodeBody(r, &struct{}{}, false); err != nil {
			return err
		}
		// A client that hangs up does not cut the wipe short.
		if err := s.d.Wipe(context.WithoutCancel(r.Context()), r.PathValue("name")); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
}
