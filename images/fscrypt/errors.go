package fscrypt

import "errors"

// Error classes; errors returned by this package wrap one of them with
// context (what failed, on which path).
var (
	// ErrNotEncrypted: the directory has no encryption policy.
	ErrNotEncrypted = errors.New("not encrypted")
	// ErrUnsupported: the filesystem cannot encrypt (wrong type, or ext4
	// without the encrypt feature).
	ErrUnsupported = errors.New("filesystem does not support encryption")
	// ErrPolicyMismatch: the directory already has a different policy.
	ErrPolicyMismatch = errors.New("directory has a different encryption policy")
	// ErrEncryptedParent: the directory lies under a directory encrypted
	// with another policy (Android's /data/misc carries the device's DE
	// policy), so a policy of its own cannot be set: the kernel answers
	// EEXIST. A store image is the way out.
	ErrEncryptedParent = errors.New("parent directory is already encrypted with another policy")
	// ErrKeyAbsent: the key is not in the filesystem keyring.
	ErrKeyAbsent = errors.New("key not present")
	// ErrFilesBusy: the key was removed but files that use it are still
	// open; the kernel keeps it "incompletely removed" until they are
	// closed. Close them (or unmount), then remove it again.
	ErrFilesBusy = errors.New("key removal incomplete: files busy")
	// ErrOtherUsers: this user's claim on the key was dropped but other
	// users still hold it, so the key stays in the kernel.
	ErrOtherUsers = errors.New("key still added by other users")
	// ErrWrongPassphrase: the wrapped key opened under the device key but
	// not under the passphrase.
	ErrWrongPassphrase = errors.New("wrong passphrase")
	// ErrCorrupt: a wrapped-key or device-key file is malformed,
	// truncated or fails authentication.
	ErrCorrupt = errors.New("corrupt key file")
	// ErrInsecureFile: a device-key file is readable or writable by others.
	ErrInsecureFile = errors.New("insecure key file")
)
