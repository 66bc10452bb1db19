package fscrypt

import "encoding/hex"

// Identifier names a v2 key: the kernel derives it from the key with
// HKDF-SHA512, so it is not secret and may be logged or stored.
type Identifier [16]byte

// String is the identifier in hex, as the kernel and fscrypt tools print it.
func (id Identifier) String() string { return hex.EncodeToString(id[:]) }

// KeyState is the kernel's view of a key (FSCRYPT_KEY_STATUS_*).
type KeyState uint32

const (
	KeyAbsent              KeyState = 1
	KeyPresent             KeyState = 2
	KeyIncompletelyRemoved KeyState = 3 // removed, but files still use it
)

func (s KeyState) String() string {
	switch s {
	case KeyAbsent:
		return "absent"
	case KeyPresent:
		return "present"
	case KeyIncompletelyRemoved:
		return "incompletely removed"
	}
	return "unknown"
}

// KeyStatus is what FS_IOC_GET_ENCRYPTION_KEY_STATUS reports.
type KeyStatus struct {
	State       KeyState
	AddedBySelf bool   // this user added it
	Users       uint32 // how many users added it
}

// RemovalStatus reports FS_IOC_REMOVE_ENCRYPTION_KEY's status flags.
type RemovalStatus struct {
	FilesBusy  bool // the key is gone but open files still use it: close them (unmount) and remove again
	OtherUsers bool // only this user's claim was dropped; the key stays for the others
}
