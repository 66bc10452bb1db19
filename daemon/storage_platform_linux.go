package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/workcell/workcell/api"
	"github.com/workcell/workcell/images"
	"github.com/workcell/workcell/images/fscrypt"
	"github.com/workcell/workcell/internal/atomicfile"
	"golang.org/x/sys/unix"
)

// Storage on phones. Three things differ from a Linux box:
//
//   - The state folder may already be encrypted: Android's /data/misc
//     carries the device's DE policy, and a folder under it inherits that
//     policy, so the profile's own cannot be set (EEXIST). That is found
//     at start; the profiles then need the store image.
//   - A policy found on a profile's data folder is not proof that it is
//     the profile's: an inherited one is Android's. Each profile records
//     its mode and its key's identifier (fscryptRecordFile), and no key
//     is removed from the kernel unless it is the recorded one.
//   - The contents mode follows the CPU, as Android's does: Adiantum where
//     there are no AES instructions. An existing profile keeps its mode.
const fscryptRecordFile = "fscrypt.json"

// fscryptRecord is a profile's encryption, as set when its data folder
// got its policy. The key identifier is not secret.
type fscryptRecord struct {
	Mode  fscrypt.Mode `json:"mode"`
	KeyID string       `json:"key_id"`
}

func (s *storage) recordFile(name string) string {
	return filepath.Join(s.keyRoot, name, fscryptRecordFile)
}

// loadFscryptRecord reads a profile's record; absent is (nil, nil).
func (s *storage) loadFscryptRecord(name string) (*fscryptRecord, error) {
	b, err := os.ReadFile(s.recordFile(name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("encryption record of %s: %w", name, err)
	}
	var r fscryptRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("encryption record %s is corrupt: %w", s.recordFile(name), err)
	}
	if _, err := fscrypt.ParseMode(string(r.Mode)); err != nil {
		return nil, fmt.Errorf("encryption record %s: %w", s.recordFile(name), err)
	}
	if _, err := fscrypt.ParseIdentifier(r.KeyID); err != nil {
		return nil, fmt.Errorf("encryption record %s: %w", s.recordFile(name), err)
	}
	return &r, nil
}

func (s *storage) saveFscryptRecord(name string, r fscryptRecord) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(s.recordFile(name), append(b, '\n'), atomicfile.Options{}); err != nil {
		return fmt.Errorf("encryption record of %s: %w", name, err)
	}
	return nil
}

// chooseMode fixes the mode new profiles get, from the config and the
// CPU; it runs once, at start. With "auto", a mode whose cipher the kernel
// lacks gives way to the other if the kernel has that one (probe is
// fscrypt.ProbeMode).
func (s *storage) chooseMode(ctx context.Context, setting string, cpuinfo []byte, probe func(context.Context, fscrypt.Mode) error) error {
	m, why, err := fscrypt.ChooseMode(setting, cpuinfo)
	if err != nil {
		return err
	}
	if setting == "auto" || setting == "" {
		other := fscrypt.ModeAES
		if m == fscrypt.ModeAES {
			other = fscrypt.ModeAdiantum
		}
		if perr := probe(ctx, m); errors.Is(perr, fscrypt.ErrCipherMissing) && probe(ctx, other) == nil {
			why = fmt.Sprintf("%s, but %v; so %s", why, perr, other)
			m = other
		}
	}
	s.mode, s.modeWhy = m, why
	return nil
}

// checkParent finds an encrypted state folder (Android's /data/misc):
// then profiles cannot run without the store image, and the error says so.
func (s *storage) checkParent(ctx context.Context) error {
	// The folder every profile's data/ goes under, asked for itself.
	err := images.EncryptedParent(ctx, filepath.Join(s.dataRoot, "profile"))
	if !errors.Is(err, fscrypt.ErrEncryptedParent) {
		return err
	}
	return api.Errorf(api.ErrConflict, "work data must be encrypted with each profile's own key, but %v "+
		"(as Android's /data/misc is, with the device's key): a folder under it cannot get a policy of its own; "+
		"start workcelld with --store-image PATH --store-size SIZE (a loop-mounted ext4 image made with -O encrypt); see workcell doctor", err)
}

// profileMode is the mode a profile's data folder gets: its recorded one,
// else the one its folder already has (a profile from before the record),
// else the daemon's choice for new profiles.
func (d *Daemon) profileMode(ctx context.Context, name string) (fscrypt.Mode, error) {
	r, err := d.stor.loadFscryptRecord(name)
	if err != nil {
		return "", err
	}
	if r != nil {
		return r.Mode, nil
	}
	if _, m, err := fscrypt.GetPolicyMode(ctx, d.stor.dataDir(name)); err == nil && d.ownShape(ctx, name) {
		return m, nil
	}
	return d.stor.mode, nil
}

// prepareData gives the profile's data folder its policy (in its mode) and
// records mode and key identifier, unless they are recorded already.
func (d *Daemon) prepareData(ctx context.Context, name string, key *fscrypt.Key) error {
	mode, err := d.profileMode(ctx, name)
	if err != nil {
		return err
	}
	dd, err := images.PrepareDataDirMode(ctx, d.stor.dataDir(name), key, mode)
	switch {
	case errors.Is(err, fscrypt.ErrEncryptedParent):
		return api.Errorf(api.ErrConflict, "profile %s: %v: start workcelld with --store-image (see workcell doctor)", name, err)
	case errors.Is(err, unix.ENOPKG) || errors.Is(err, fscrypt.ErrUnsupported) && mode == fscrypt.ModeAdiantum:
		// A file of the folder could not get its key: the cipher is missing.
		return api.Errorf(api.ErrConflict, "profile %s: its data is encrypted with %s, which this kernel cannot do: %v%s", name, mode, err, doctorHint)
	case err != nil:
		return err
	}
	r, err := d.stor.loadFscryptRecord(name)
	if err != nil {
		return err
	}
	want := fscryptRecord{Mode: mode, KeyID: dd.Key.String()}
	if r != nil && *r == want {
		return nil
	}
	if r != nil && r.KeyID != want.KeyID {
		return fmt.Errorf("profile %s: its key %s is not the recorded %s (%s)", name, want.KeyID, r.KeyID, d.stor.recordFile(name))
	}
	return d.stor.saveFscryptRecord(name, want)
}

// ownShape reports whether a profile without a record has a data folder
// whose policy can only be its own: the folder above it is not encrypted,
// so the policy was set on data/ itself, not inherited.
func (d *Daemon) ownShape(ctx context.Context, name string) bool {
	_, err := fscrypt.ReadPolicy(ctx, filepath.Dir(d.stor.dataDir(name)))
	return errors.Is(err, fscrypt.ErrNotEncrypted)
}

// ownKey returns the identifier of the key the profile's data folder is
// under, if and only if that key is the profile's own: the recorded one,
// else the one computed from key, else (a profile from before the record)
// a workcell policy set on data/ itself. Anything else is an error that
// wraps errForeignKey, and no key may be removed.
func (d *Daemon) ownKey(ctx context.Context, name string, key *fscrypt.Key) (fscrypt.Identifier, error) {
	data := d.stor.dataDir(name)
	pol, err := fscrypt.ReadPolicy(ctx, data)
	if err != nil {
		return fscrypt.Identifier{}, err
	}
	var want *fscrypt.Identifier
	r, rerr := d.stor.loadFscryptRecord(name)
	switch {
	case r != nil:
		id, _ := fscrypt.ParseIdentifier(r.KeyID)
		want = &id
	case key != nil:
		if id, err := key.Identifier(); err == nil {
			want = &id
		}
	}
	switch {
	case want != nil && pol.Version == 2 && pol.Identifier == *want:
		return pol.Identifier, nil
	case want != nil:
		return fscrypt.Identifier{}, fmt.Errorf("%w: %s is under key %s, but profile %s's key is %s", errForeignKey, data, pol.Key(), name, want)
	case rerr != nil:
		return fscrypt.Identifier{}, fmt.Errorf("%w: %v", errForeignKey, rerr)
	case pol.Mode() != "" && d.ownShape(ctx, name):
		return pol.Identifier, nil
	}
	return fscrypt.Identifier{}, fmt.Errorf("%w: %s is under key %s, inherited from an encrypted folder above it, and profile %s has no record of its own key",
		errForeignKey, data, pol.Key(), name)
}

// errForeignKey: a data folder's policy is not the profile's own (Android's
// DE policy, inherited): its key must never be removed.
var errForeignKey = errors.New("encryption key is not the profile's own")
