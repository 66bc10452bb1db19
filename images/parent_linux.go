package images

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/workcell/workcell/images/fscrypt"
)

// EncryptedParent refuses a directory to be made or given a policy under
// an encrypted ancestor: a new directory there inherits the ancestor's
// policy (Android's DE policy under /data/misc) and setting the profile's
// own fails with EEXIST. The nearest existing ancestor (or dir itself, if
// it exists and is not the profile's yet) is asked. It names the policy's
// key, so the error tells whose it is; the error wraps
// fscrypt.ErrEncryptedParent.
func EncryptedParent(ctx context.Context, dir string) error {
	p := filepath.Dir(filepath.Clean(dir))
	for {
		if _, err := os.Stat(p); err == nil {
			break
		}
		if p == filepath.Dir(p) {
			return nil
		}
		p = filepath.Dir(p)
	}
	pol, err := fscrypt.ReadPolicy(ctx, p)
	switch {
	case errors.Is(err, fscrypt.ErrNotEncrypted), errors.Is(err, fscrypt.ErrUnsupported):
		return nil
	case err != nil:
		return err
	}
	return fmt.Errorf("%s: %s is encrypted with a version %d policy of key %s (modes %d/%d): %w",
		dir, p, pol.Version, pol.Key(), pol.Contents, pol.Filenames, fscrypt.ErrEncryptedParent)
}
