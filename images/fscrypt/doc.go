// Package fscrypt is the small part of Linux file-based encryption that
// workcell needs: v2 policies in two modes (AES-256-XTS contents with
// AES-256-CTS names, or Adiantum for both where the CPU has no AES
// instructions, as Android chooses; 32-byte name padding), adding, removing and querying keys in the
// filesystem keyring, and keeping a profile key wrapped at rest.
//
// The ioctls are written against golang.org/x/sys/unix and the kernel UAPI
// (linux/fscrypt.h) because google/fscrypt is not available here; the
// layouts are checked against the C header by TestUAPILayout.
//
// Key wrapping is portable: a profile [Key] is sealed with AES-256-GCM under
// a device key held by a [Protector] and, optionally, also under a key
// derived from a passphrase with argon2id. No function of this package puts
// key bytes or passphrases in an error, and [Key] prints as redacted.
package fscrypt
