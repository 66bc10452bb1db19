package fscrypt

import (
	"crypto/rand"
	"fmt"
)

// KeySize is the size of a profile key: the largest fscrypt master key,
// as the kernel derives per-file keys from it with HKDF-SHA512.
const KeySize = 64

// Key is a profile's fscrypt master key. It never prints its bytes: %v,
// %s, %x and %#v all show a redacted placeholder. Call Wipe when done.
type Key struct {
	raw [KeySize]byte
}

// NewKey returns a fresh random key.
func NewKey() (*Key, error) {
	k := new(Key)
	if _, err := rand.Read(k.raw[:]); err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	return k, nil
}

func keyFromBytes(b []byte) (*Key, error) {
	if len(b) != KeySize {
		return nil, fmt.Errorf("%w: key is %d bytes, want %d", ErrCorrupt, len(b), KeySize)
	}
	k := new(Key)
	copy(k.raw[:], b)
	return k, nil
}

// Wipe zeroes the key in memory. A nil key is fine.
func (k *Key) Wipe() {
	if k != nil {
		clear(k.raw[:])
	}
}

// Equal reports whether two keys hold the same bytes (for tests and
// re-wrapping checks; not constant time).
func (k *Key) Equal(o *Key) bool { return k != nil && o != nil && k.raw == o.raw }

const redacted = "fscrypt.Key(REDACTED)"

// The formatting methods have value receivers so that a Key printed by
// value, or inside a struct, is redacted too.

// String redacts.
func (Key) String() string { return redacted }

// GoString redacts.
func (Key) GoString() string { return redacted }

// Format redacts for every verb.
func (Key) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// zero clears a byte slice holding secret material.
func zero(b []byte) { clear(b) }
