package fscrypt

import (
	"bufio"
	"bytes"
	"crypto/hkdf"
	"crypto/sha512"
	"fmt"
	"strings"
)

// Mode is the encryption a workcell directory's policy names. AES is
// AES-256-XTS for contents and AES-256-CTS for names, as Android uses on
// CPUs with AES instructions; Adiantum is Adiantum for both, as Android
// uses on CPUs without them (where AES in software is slow and, in the
// table-based form, leaks through cache timing).
type Mode string

const (
	ModeAES      Mode = "aes"
	ModeAdiantum Mode = "adiantum"
)

// ParseMode reads "aes" or "adiantum".
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeAES, ModeAdiantum:
		return m, nil
	}
	return "", fmt.Errorf("fscrypt mode %q: want \"aes\" or \"adiantum\"", s)
}

// ChooseMode turns the daemon's setting ("auto", "aes" or "adiantum") into
// a mode and says why. "auto" is Android's rule: AES where the CPU has AES
// instructions (cpuinfo, the text of /proc/cpuinfo, lists an "aes" flag on
// x86 or feature on arm64), Adiantum where it has not.
func ChooseMode(setting string, cpuinfo []byte) (Mode, string, error) {
	switch setting {
	case "", "auto":
		if CPUHasAES(cpuinfo) {
			return ModeAES, "auto: the CPU has AES instructions", nil
		}
		return ModeAdiantum, "auto: the CPU has no AES instructions (no \"aes\" in /proc/cpuinfo), so Adiantum, as Android chooses", nil
	case string(ModeAES), string(ModeAdiantum):
		return Mode(setting), "fscrypt_contents is " + setting + " in the config", nil
	}
	return "", "", fmt.Errorf("fscrypt_contents %q: want \"auto\", \"aes\" or \"adiantum\"", setting)
}

// CPUHasAES reports whether /proc/cpuinfo's text names AES instructions:
// the "flags" line on x86 and the "Features" line on arm64 both list
// "aes". Every CPU must have it (a big.LITTLE phone lists each core).
func CPUHasAES(cpuinfo []byte) bool {
	seen, all := false, true
	sc := bufio.NewScanner(bytes.NewReader(cpuinfo))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "flags", "Features":
			seen = true
			has := false
			for _, f := range strings.Fields(v) {
				if f == "aes" {
					has = true
					break
				}
			}
			all = all && has
		}
	}
	return seen && all
}

// hkdfContextKeyIdentifier is HKDF_CONTEXT_KEY_IDENTIFIER of the kernel's
// fs/crypto/fscrypt_private.h.
const hkdfContextKeyIdentifier = 1

// Identifier computes the key's v2 identifier as the kernel does
// (fs/crypto/hkdf.c: HKDF-SHA512 with an empty salt, info "fscrypt\0"
// followed by the context byte), so a profile can know which key is its
// own without asking the kernel.
func (k *Key) Identifier() (Identifier, error) {
	var id Identifier
	if k == nil {
		return id, fmt.Errorf("key identifier: nil key")
	}
	out, err := hkdf.Key(sha512.New, k.raw[:], nil, "fscrypt\x00"+string(rune(hkdfContextKeyIdentifier)), len(id))
	if err != nil {
		return id, fmt.Errorf("key identifier: %w", err)
	}
	copy(id[:], out)
	return id, nil
}

// ParseIdentifier reads an identifier written by Identifier.String.
func ParseIdentifier(s string) (Identifier, error) {
	var id Identifier
	if len(s) != 2*len(id) {
		return id, fmt.Errorf("key identifier %q: want %d hex digits", s, 2*len(id))
	}
	for i := range id {
		var b byte
		for _, c := range s[2*i : 2*i+2] {
			switch {
			case c >= '0' && c <= '9':
				b = b<<4 | byte(c-'0')
			case c >= 'a' && c <= 'f':
				b = b<<4 | byte(c-'a'+10)
			default:
				return Identifier{}, fmt.Errorf("key identifier %q: not lowercase hex", s)
			}
		}
		id[i] = b
	}
	return id, nil
}
