package fscrypt

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/crypto/argon2"
)

// Protector wraps and unwraps small secrets under a key it holds and never
// hands out (a root-only file here, the Android keystore on a phone).
// Unwrap must authenticate: a modified blob is an error, never garbage.
type Protector interface {
	Wrap(ctx context.Context, plaintext []byte) ([]byte, error)
	Unwrap(ctx context.Context, blob []byte) ([]byte, error)
}

// Wrapped-key file format, version 1, all integers big-endian:
//
//	magic   "wcfskey"  7 bytes
//	version 1          1 byte
//	flags              1 byte   bit 0: passphrase layer present
//	if passphrase:
//	  time             u32      argon2id passes
//	  memory           u32      argon2id memory in KiB
//	  threads          u8
//	  saltLen          u8       16..64
//	  salt             saltLen bytes
//	blobLen            u32      1..maxBlob
//	blob               blobLen bytes, from Protector.Wrap
//
// Everything before blobLen is the header. The protector wraps
// SHA-256(header) || payload, so any change to the header is caught after
// unwrapping; payload is the key itself, or with a passphrase
// nonce(12) || AES-256-GCM(argon2id(passphrase), key, aad=header).
// Device key outside, passphrase inside: guessing the passphrase needs the
// device key first, and a wrong passphrase is told apart from corruption.
const (
	magic          = "wcfskey"
	formatVersion  = 1
	flagPassphrase = 1 << 0

	minSalt    = 16
	maxSalt    = 64
	maxBlob    = 4096
	maxTime    = 100
	maxMemory  = 1 << 20 // KiB: 1 GiB, so a hostile file cannot ask for more
	maxThreads = 64
	gcmNonce   = 12
)

// Argon2Params are the argon2id parameters stored beside a passphrase-wrapped key.
type Argon2Params struct {
	Time      uint32 // passes
	MemoryKiB uint32
	Threads   uint8
	Salt      []byte // random, not secret
}

// DefaultArgon2 is RFC 9106's second recommended setting (t=3, 64 MiB, p=4).
var DefaultArgon2 = Argon2Params{Time: 3, MemoryKiB: 64 << 10, Threads: 4}

func (a *Argon2Params) validate() error {
	switch {
	case a.Time < 1 || a.Time > maxTime:
		return fmt.Errorf("argon2id time %d out of range 1..%d", a.Time, maxTime)
	case a.Threads < 1 || a.Threads > maxThreads:
		return fmt.Errorf("argon2id threads %d out of range 1..%d", a.Threads, maxThreads)
	case a.MemoryKiB < 8*uint32(a.Threads) || a.MemoryKiB > maxMemory:
		return fmt.Errorf("argon2id memory %d KiB out of range %d..%d", a.MemoryKiB, 8*uint32(a.Threads), maxMemory)
	case len(a.Salt) < minSalt || len(a.Salt) > maxSalt:
		return fmt.Errorf("argon2id salt of %d bytes, want %d..%d", len(a.Salt), minSalt, maxSalt)
	}
	return nil
}

// WrappedKey is a parsed wrapped-key file. It holds only ciphertext and
// public parameters.
type WrappedKey struct {
	Argon2 *Argon2Params // nil: no passphrase layer
	Blob   []byte        // the protector's output
}

// HasPassphrase reports whether opening the key needs a passphrase.
func (w *WrappedKey) HasPassphrase() bool { return w.Argon2 != nil }

func (w *WrappedKey) header() []byte {
	h := make([]byte, 0, 9+10+maxSalt)
	h = append(h, magic...)
	h = append(h, formatVersion)
	if w.Argon2 == nil {
		return append(h, 0)
	}
	h = append(h, flagPassphrase)
	h = binary.BigEndian.AppendUint32(h, w.Argon2.Time)
	h = binary.BigEndian.AppendUint32(h, w.Argon2.MemoryKiB)
	h = append(h, w.Argon2.Threads, byte(len(w.Argon2.Salt)))
	return append(h, w.Argon2.Salt...)
}

// Marshal encodes the file format described above.
func (w *WrappedKey) Marshal() []byte {
	b := w.header()
	b = binary.BigEndian.AppendUint32(b, uint32(len(w.Blob)))
	return append(b, w.Blob...)
}

// Parse decodes a wrapped-key file. It checks structure and bounds only
// (authentication happens in Open) and never panics, whatever the bytes.
func Parse(data []byte) (*WrappedKey, error) {
	r := reader{b: data}
	if m := r.next(len(magic)); !bytes.Equal(m, []byte(magic)) {
		return nil, fmt.Errorf("%w: bad magic", ErrCorrupt)
	}
	if v := r.u8(); v != formatVersion {
		if r.short {
			return nil, fmt.Errorf("%w: truncated", ErrCorrupt)
		}
		return nil, fmt.Errorf("%w: unknown format version %d", ErrCorrupt, v)
	}
	w := new(WrappedKey)
	switch flags := r.u8(); {
	case r.short:
		return nil, fmt.Errorf("%w: truncated", ErrCorrupt)
	case flags&^flagPassphrase != 0:
		return nil, fmt.Errorf("%w: unknown flags %#x", ErrCorrupt, flags)
	case flags&flagPassphrase != 0:
		a := &Argon2Params{Time: r.u32(), MemoryKiB: r.u32(), Threads: r.u8()}
		a.Salt = bytes.Clone(r.next(int(r.u8())))
		if r.short {
			return nil, fmt.Errorf("%w: truncated", ErrCorrupt)
		}
		if err := a.validate(); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
		}
		w.Argon2 = a
	}
	n := r.u32()
	if r.short {
		return nil, fmt.Errorf("%w: truncated", ErrCorrupt)
	}
	if n == 0 || n > maxBlob {
		return nil, fmt.Errorf("%w: wrapped blob of %d bytes, want 1..%d", ErrCorrupt, n, maxBlob)
	}
	start := r.off
	w.Blob = bytes.Clone(r.next(int(n)))
	if r.short {
		return nil, fmt.Errorf("%w: truncated: wrapped blob has %d of %d bytes", ErrCorrupt, len(data)-start, n)
	}
	if r.off != len(data) {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrCorrupt, len(data)-r.off)
	}
	return w, nil
}

// reader reads big-endian fields; past the end it returns zeros and sets short.
type reader struct {
	b     []byte
	off   int
	short bool
}

func (r *reader) next(n int) []byte {
	if n < 0 || len(r.b)-r.off < n {
		r.short = true
		r.off = len(r.b)
		return nil
	}
	s := r.b[r.off : r.off+n]
	r.off += n
	return s
}

func (r *reader) u8() uint8 {
	if s := r.next(1); s != nil {
		return s[0]
	}
	return 0
}

func (r *reader) u32() uint32 {
	if s := r.next(4); s != nil {
		return binary.BigEndian.Uint32(s)
	}
	return 0
}

// SealOption adjusts Seal.
type SealOption func(*sealOptions) error

type sealOptions struct{ argon Argon2Params }

// WithArgon2 sets the argon2id cost used when a passphrase is given
// (default DefaultArgon2). The salt is always fresh and random.
func WithArgon2(time, memoryKiB uint32, threads uint8) SealOption {
	return func(o *sealOptions) error {
		o.argon = Argon2Params{Time: time, MemoryKiB: memoryKiB, Threads: threads, Salt: make([]byte, minSalt)}
		if err := o.argon.validate(); err != nil {
			return fmt.Errorf("WithArgon2: %w", err)
		}
		return nil
	}
}

// Seal wraps key under p and, if passphrase is not empty, also under the
// passphrase. The caller keeps ownership of key and passphrase.
func Seal(ctx context.Context, p Protector, key *Key, passphrase []byte, opts ...SealOption) (*WrappedKey, error) {
	if key == nil {
		return nil, errors.New("seal: nil key")
	}
	o := sealOptions{argon: DefaultArgon2}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	w := new(WrappedKey)
	var payload []byte
	if len(passphrase) > 0 {
		a := o.argon
		a.Salt = make([]byte, minSalt)
		if _, err := rand.Read(a.Salt); err != nil {
			return nil, fmt.Errorf("seal: salt: %w", err)
		}
		w.Argon2 = &a
		aead, err := passphraseAEAD(passphrase, &a)
		if err != nil {
			return nil, err
		}
		payload = make([]byte, gcmNonce, gcmNonce+KeySize+aead.Overhead())
		if _, err := rand.Read(payload); err != nil {
			return nil, fmt.Errorf("seal: nonce: %w", err)
		}
		payload = aead.Seal(payload, payload[:gcmNonce], key.raw[:], w.header())
	} else {
		payload = key.raw[:]
	}
	hdr := sha256.Sum256(w.header())
	plain := append(hdr[:], payload...)
	defer zero(plain)
	blob, err := p.Wrap(ctx, plain)
	if err != nil {
		return nil, fmt.Errorf("seal: protector: %w", err)
	}
	w.Blob = blob
	return w, nil
}

// Open unwraps the key. Errors: ErrCorrupt when the protector refuses the
// blob or the header was changed; ErrWrongPassphrase when only the
// passphrase layer fails (or a needed passphrase is empty). A passphrase
// given for a key without one is ignored.
func (w *WrappedKey) Open(ctx context.Context, p Protector, passphrase []byte) (*Key, error) {
	if w.Argon2 != nil {
		if err := w.Argon2.validate(); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
		}
		if len(passphrase) == 0 {
			return nil, fmt.Errorf("%w: a passphrase is required", ErrWrongPassphrase)
		}
	}
	plain, err := p.Unwrap(ctx, w.Blob)
	if err != nil {
		return nil, fmt.Errorf("open wrapped key: %w", err)
	}
	defer zero(plain)
	hdr := sha256.Sum256(w.header())
	if len(plain) < len(hdr) || subtle.ConstantTimeCompare(plain[:len(hdr)], hdr[:]) != 1 {
		return nil, fmt.Errorf("%w: header does not match its wrapped digest", ErrCorrupt)
	}
	payload := plain[len(hdr):]
	if w.Argon2 == nil {
		return keyFromBytes(payload)
	}
	aead, err := passphraseAEAD(passphrase, w.Argon2)
	if err != nil {
		return nil, err
	}
	if len(payload) < gcmNonce {
		return nil, fmt.Errorf("%w: passphrase layer truncated", ErrCorrupt)
	}
	raw, err := aead.Open(nil, payload[:gcmNonce], payload[gcmNonce:], w.header())
	if err != nil {
		// The device layer authenticated these bytes, so only the
		// passphrase can be wrong.
		return nil, ErrWrongPassphrase
	}
	defer zero(raw)
	return keyFromBytes(raw)
}

func passphraseAEAD(passphrase []byte, a *Argon2Params) (cipher.AEAD, error) {
	k := argon2.IDKey(passphrase, a.Salt, a.Time, a.MemoryKiB, a.Threads, 32)
	defer zero(k)
	return newGCM(k)
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("aes: %w", err)
	}
	return cipher.NewGCM(block)
}
