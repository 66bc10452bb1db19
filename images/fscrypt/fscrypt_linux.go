package fscrypt

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"unsafe"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// The policies a workcell directory gets, one per Mode: what Android's
// file-based encryption uses on hardware without inline crypto. Android
// sets Adiantum with DIRECT_KEY (the master key encrypts directly, the
// file's nonce in the IV); workcell does not: on the GKI-shaped 6.1 guest
// a DIRECT_KEY profile's key could not be removed at lock ("inodes still
// busy", the old overlay's upper still in use at the next start), while
// per-file keys (derived by HKDF, a little slower to open a file) lock
// cleanly, as TestDaemonOnGKIInVM checks.
type policyModes struct{ contents, filenames, flags uint8 }

var policies = map[Mode]policyModes{
	ModeAES:      {unix.FSCRYPT_MODE_AES_256_XTS, unix.FSCRYPT_MODE_AES_256_CTS, unix.FSCRYPT_POLICY_FLAGS_PAD_32},
	ModeAdiantum: {unix.FSCRYPT_MODE_ADIANTUM, unix.FSCRYPT_MODE_ADIANTUM, unix.FSCRYPT_POLICY_FLAGS_PAD_32},
}

// modeOf names the workcell mode of a v2 policy's modes and flags, or "".
func modeOf(contents, filenames, flags uint8) Mode {
	for m, p := range policies {
		if p == (policyModes{contents, filenames, flags}) {
			return m
		}
	}
	return ""
}

// Layout sizes from linux/fscrypt.h on x86-64 (and every other arch: the
// structs have no padding); TestUAPILayout keeps them honest.
const (
	sizeofPolicyV2     = 24
	sizeofPolicyV1     = 12
	sizeofAddKeyArg    = 80
	sizeofRemoveKeyArg = 64
	sizeofKeyStatusArg = 128
)

func openDir(path string) (int, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return fd, nil
}

func ioctl(fd int, req uint, arg unsafe.Pointer) error {
	for {
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), uintptr(arg))
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return errno
		}
		return nil
	}
}

func unsupported(err error) bool {
	return errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EOPNOTSUPP)
}

// SetPolicy gives the empty directory dir a v2 AES policy with the key
// id: SetPolicyMode with ModeAES.
func SetPolicy(ctx context.Context, dir string, id Identifier) error {
	return SetPolicyMode(ctx, dir, id, ModeAES)
}

// SetPolicyMode gives the empty directory dir a v2 policy of mode with the
// key id. Add the key first: the kernel refuses an absent key
// (ErrKeyAbsent) only to callers without CAP_FOWNER, so root could
// otherwise lock a folder with a key nobody has. Setting the same policy
// again is a no-op; a different one, or a directory under an encrypted
// parent (Android's /data/misc), is ErrPolicyMismatch.
func SetPolicyMode(ctx context.Context, dir string, id Identifier, mode Mode) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	pm, ok := policies[mode]
	if !ok {
		return fmt.Errorf("set encryption policy on %s: unknown mode %q", dir, mode)
	}
	fd, err := openDir(dir)
	if err != nil {
		return fmt.Errorf("set encryption policy: %w", err)
	}
	defer unix.Close(fd)
	p := unix.FscryptPolicyV2{
		Version:                   unix.FSCRYPT_POLICY_V2,
		Contents_encryption_mode:  pm.contents,
		Filenames_encryption_mode: pm.filenames,
		Flags:                     pm.flags,
		Master_key_identifier:     id,
	}
	err = ioctl(fd, unix.FS_IOC_SET_ENCRYPTION_POLICY, unsafe.Pointer(&p))
	runtime.KeepAlive(&p)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EEXIST):
		return fmt.Errorf("set encryption policy on %s: %w", dir, ErrPolicyMismatch)
	case errors.Is(err, unix.ENOTEMPTY):
		return fmt.Errorf("set encryption policy on %s: directory is not empty", dir)
	case errors.Is(err, unix.ENOKEY):
		return fmt.Errorf("set encryption policy on %s: key %s: %w", dir, id, ErrKeyAbsent)
	case unsupported(err):
		return fmt.Errorf("set encryption policy on %s: %w", dir, ErrUnsupported)
	case errors.Is(err, unix.EINVAL) && mode == ModeAdiantum:
		return fmt.Errorf("set encryption policy on %s: the kernel refuses Adiantum policies (%w): %w", dir, err, ErrUnsupported)
	}
	return fmt.Errorf("set encryption policy on %s: %w", dir, err)
}

// GetPolicy returns the key identifier of dir's v2 policy. An unencrypted
// directory is ErrNotEncrypted; a filesystem without encryption is
// ErrUnsupported; a policy other than workcell's (of either mode) is
// ErrPolicyMismatch, with the identifier when it is a v2 policy.
func GetPolicy(ctx context.Context, dir string) (Identifier, error) {
	id, _, err := GetPolicyMode(ctx, dir)
	return id, err
}

// GetPolicyMode is GetPolicy that also says the policy's mode.
func GetPolicyMode(ctx context.Context, dir string) (Identifier, Mode, error) {
	p, err := ReadPolicy(ctx, dir)
	if err != nil {
		return Identifier{}, "", err
	}
	if p.Version != unix.FSCRYPT_POLICY_V2 {
		return Identifier{}, "", fmt.Errorf("%s has a version %d policy: %w", dir, p.Version, ErrPolicyMismatch)
	}
	m := modeOf(p.Contents, p.Filenames, p.Flags)
	if m == "" {
		return p.Identifier, "", fmt.Errorf("%s has modes %d/%d flags %#x: %w", dir, p.Contents, p.Filenames, p.Flags, ErrPolicyMismatch)
	}
	return p.Identifier, m, nil
}

// Policy is a directory's encryption policy as the kernel reports it,
// whoever set it: workcell, or Android's vold (a v1 policy has a
// descriptor instead of an identifier).
type Policy struct {
	Version                    uint8
	Contents, Filenames, Flags uint8
	Identifier                 Identifier                             // v2
	Descriptor                 [unix.FSCRYPT_KEY_DESCRIPTOR_SIZE]byte // v1
}

// Key names the policy's key: the v2 identifier or the v1 descriptor.
func (p Policy) Key() string {
	if p.Version == unix.FSCRYPT_POLICY_V2 {
		return p.Identifier.String()
	}
	return fmt.Sprintf("%x (v1 descriptor)", p.Descriptor[:])
}

// Mode is the policy's workcell mode, or "" when it is no policy workcell
// sets.
func (p Policy) Mode() Mode {
	if p.Version != unix.FSCRYPT_POLICY_V2 {
		return ""
	}
	return modeOf(p.Contents, p.Filenames, p.Flags)
}

// ReadPolicy returns dir's policy (FS_IOC_GET_ENCRYPTION_POLICY_EX) of any
// version. An unencrypted directory is ErrNotEncrypted; a filesystem
// without encryption is ErrUnsupported.
func ReadPolicy(ctx context.Context, dir string) (Policy, error) {
	if err := ctx.Err(); err != nil {
		return Policy{}, err
	}
	fd, err := openDir(dir)
	if err != nil {
		return Policy{}, fmt.Errorf("get encryption policy: %w", err)
	}
	defer unix.Close(fd)
	var arg unix.FscryptGetPolicyExArg
	arg.Size = uint64(len(arg.Policy))
	err = ioctl(fd, unix.FS_IOC_GET_ENCRYPTION_POLICY_EX, unsafe.Pointer(&arg))
	runtime.KeepAlive(&arg)
	switch {
	case errors.Is(err, unix.ENODATA):
		return Policy{}, fmt.Errorf("%s: %w", dir, ErrNotEncrypted)
	case unsupported(err):
		return Policy{}, fmt.Errorf("get encryption policy on %s: %w", dir, ErrUnsupported)
	case err != nil:
		return Policy{}, fmt.Errorf("get encryption policy on %s: %w", dir, err)
	}
	switch v := arg.Policy[0]; {
	case v == unix.FSCRYPT_POLICY_V2 && arg.Size == sizeofPolicyV2:
		p := (*unix.FscryptPolicyV2)(unsafe.Pointer(&arg.Policy))
		return Policy{Version: v, Contents: p.Contents_encryption_mode, Filenames: p.Filenames_encryption_mode, Flags: p.Flags,
			Identifier: Identifier(p.Master_key_identifier)}, nil
	case v == unix.FSCRYPT_POLICY_V1 && arg.Size == sizeofPolicyV1:
		p := (*unix.FscryptPolicyV1)(unsafe.Pointer(&arg.Policy))
		return Policy{Version: v, Contents: p.Contents_encryption_mode, Filenames: p.Filenames_encryption_mode, Flags: p.Flags,
			Descriptor: p.Master_key_descriptor}, nil
	}
	return Policy{}, fmt.Errorf("%s has an encryption policy of version %d (%d bytes) this program does not know: %w", dir, arg.Policy[0], arg.Size, ErrPolicyMismatch)
}

// AddKey adds key to the keyring of the filesystem that holds path and
// returns the identifier the kernel computed. The ioctl buffer is zeroed
// before returning. Adding a key that is present is a no-op.
func AddKey(ctx context.Context, path string, key *Key) (Identifier, error) {
	if err := ctx.Err(); err != nil {
		return Identifier{}, err
	}
	if key == nil {
		return Identifier{}, errors.New("add encryption key: nil key")
	}
	fd, err := openDir(path)
	if err != nil {
		return Identifier{}, fmt.Errorf("add encryption key: %w", err)
	}
	defer unix.Close(fd)
	// struct fscrypt_add_key_arg is followed by the raw key (a flexible array).
	var buf [sizeofAddKeyArg + KeySize]byte
	defer clear(buf[:])
	arg := (*unix.FscryptAddKeyArg)(unsafe.Pointer(&buf[0]))
	arg.Key_spec.Type = unix.FSCRYPT_KEY_SPEC_TYPE_IDENTIFIER
	arg.Raw_size = KeySize
	copy(buf[sizeofAddKeyArg:], key.raw[:])
	err = ioctl(fd, unix.FS_IOC_ADD_ENCRYPTION_KEY, unsafe.Pointer(&buf[0]))
	runtime.KeepAlive(&buf)
	if err != nil {
		if unsupported(err) {
			err = ErrUnsupported
		}
		return Identifier{}, fmt.Errorf("add encryption key on %s: %w", path, err)
	}
	var id Identifier
	copy(id[:], arg.Key_spec.U[:len(id)])
	return id, nil
}

// RemoveKey drops this user's claim on the key id from the filesystem that
// holds path. The status is returned also with an error: ErrFilesBusy
// (files still open; unmount or close them and call again, which completes
// the removal) or ErrOtherUsers (the key stays for other users). A key that
// is not there is ErrKeyAbsent.
func RemoveKey(ctx context.Context, path string, id Identifier) (RemovalStatus, error) {
	return removeKey(ctx, path, id, unix.FS_IOC_REMOVE_ENCRYPTION_KEY)
}

// RemoveKeyAllUsers is RemoveKey for every user's claim at once (needs
// CAP_SYS_ADMIN); it never reports OtherUsers.
func RemoveKeyAllUsers(ctx context.Context, path string, id Identifier) (RemovalStatus, error) {
	return removeKey(ctx, path, id, unix.FS_IOC_REMOVE_ENCRYPTION_KEY_ALL_USERS)
}

func removeKey(ctx context.Context, path string, id Identifier, req uint) (RemovalStatus, error) {
	if err := ctx.Err(); err != nil {
		return RemovalStatus{}, err
	}
	fd, err := openDir(path)
	if err != nil {
		return RemovalStatus{}, fmt.Errorf("remove encryption key %s: %w", id, err)
	}
	defer unix.Close(fd)
	var arg unix.FscryptRemoveKeyArg
	arg.Key_spec.Type = unix.FSCRYPT_KEY_SPEC_TYPE_IDENTIFIER
	copy(arg.Key_spec.U[:], id[:])
	err = ioctl(fd, req, unsafe.Pointer(&arg))
	runtime.KeepAlive(&arg)
	switch {
	case errors.Is(err, unix.ENOKEY):
		return RemovalStatus{}, fmt.Errorf("remove encryption key %s on %s: %w", id, path, ErrKeyAbsent)
	case unsupported(err):
		return RemovalStatus{}, fmt.Errorf("remove encryption key %s on %s: %w", id, path, ErrUnsupported)
	case err != nil:
		return RemovalStatus{}, fmt.Errorf("remove encryption key %s on %s: %w", id, path, err)
	}
	st := RemovalStatus{
		FilesBusy:  arg.Removal_status_flags&unix.FSCRYPT_KEY_REMOVAL_STATUS_FLAG_FILES_BUSY != 0,
		OtherUsers: arg.Removal_status_flags&unix.FSCRYPT_KEY_REMOVAL_STATUS_FLAG_OTHER_USERS != 0,
	}
	switch {
	case st.FilesBusy:
		return st, fmt.Errorf("remove encryption key %s on %s: %w", id, path, ErrFilesBusy)
	case st.OtherUsers:
		return st, fmt.Errorf("remove encryption key %s on %s: %w", id, path, ErrOtherUsers)
	}
	return st, nil
}

// GetKeyStatus asks the kernel about key id on the filesystem that holds path.
func GetKeyStatus(ctx context.Context, path string, id Identifier) (KeyStatus, error) {
	if err := ctx.Err(); err != nil {
		return KeyStatus{}, err
	}
	fd, err := openDir(path)
	if err != nil {
		return KeyStatus{}, fmt.Errorf("encryption key status %s: %w", id, err)
	}
	defer unix.Close(fd)
	var arg unix.FscryptGetKeyStatusArg
	arg.Key_spec.Type = unix.FSCRYPT_KEY_SPEC_TYPE_IDENTIFIER
	copy(arg.Key_spec.U[:], id[:])
	err = ioctl(fd, unix.FS_IOC_GET_ENCRYPTION_KEY_STATUS, unsafe.Pointer(&arg))
	runtime.KeepAlive(&arg)
	if err != nil {
		if unsupported(err) {
			err = ErrUnsupported
		}
		return KeyStatus{}, fmt.Errorf("encryption key status %s on %s: %w", id, path, err)
	}
	return KeyStatus{
		State:       KeyState(arg.Status),
		AddedBySelf: arg.Status_flags&unix.FSCRYPT_KEY_STATUS_FLAG_ADDED_BY_SELF != 0,
		Users:       arg.User_count,
	}, nil
}

// Supported reports whether the filesystem holding dir can store encrypted
// directories. The error names the filesystem type and its mountpoint, and
// what to do about it.
func Supported(ctx context.Context, dir string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	fd, err := openDir(dir)
	if err != nil {
		return fmt.Errorf("check encryption support: %w", err)
	}
	defer unix.Close(fd)
	var arg unix.FscryptGetPolicyExArg
	arg.Size = uint64(len(arg.Policy))
	err = ioctl(fd, unix.FS_IOC_GET_ENCRYPTION_POLICY_EX, unsafe.Pointer(&arg))
	runtime.KeepAlive(&arg)
	if err == nil || errors.Is(err, unix.ENODATA) {
		return nil // encrypted, or could be
	}
	fstype, mnt := describeFS(dir)
	if !unsupported(err) {
		return fmt.Errorf("check encryption support of %s (%s at %s): %w", dir, fstype, mnt, err)
	}
	hint := ""
	if fstype == "ext4" {
		hint = " (ext4 without the encrypt feature: mkfs.ext4 -O encrypt, or tune2fs -O encrypt while unmounted)"
	}
	return fmt.Errorf("%s: filesystem %s at %s cannot encrypt%s: %w", dir, fstype, mnt, hint, ErrUnsupported)
}

// describeFS names the filesystem type and mountpoint holding path, from
// the longest mountpoint in /proc/self/mountinfo that contains it.
func describeFS(path string) (fstype, mountpoint string) {
	fstype, mountpoint = "unknown", "unknown"
	abs, err := filepath.Abs(path)
	if err != nil {
		return
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		abs = r
	}
	mounts, err := mountinfo.GetMounts(nil)
	if err != nil {
		return
	}
	best := -1
	for _, m := range mounts {
		if (abs == m.Mountpoint || m.Mountpoint == "/" || strings.HasPrefix(abs, m.Mountpoint+"/")) && len(m.Mountpoint) >= best {
			best = len(m.Mountpoint)
			fstype, mountpoint = m.FSType, m.Mountpoint
		}
	}
	return
}
