package fscrypt

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// modeCiphers are, per mode, the kernel config options its ciphers need
// and the names the crypto API lists once they are instantiated.
var modeCiphers = map[Mode]struct {
	config []string
	names  []string
}{
	ModeAES:      {config: []string{"CONFIG_CRYPTO_AES", "CONFIG_CRYPTO_XTS", "CONFIG_CRYPTO_CTS"}, names: []string{"xts(aes)"}},
	ModeAdiantum: {config: []string{"CONFIG_CRYPTO_ADIANTUM"}, names: []string{"adiantum(xchacha12,aes)"}},
}

// ErrCipherMissing: the kernel lacks a cipher that a mode needs.
var ErrCipherMissing = errors.New("cipher not in the kernel")

// ProbeMode reports whether the running kernel has the ciphers of mode:
// nil when it has, ErrCipherMissing naming the config option when it has
// not. It is ProbeModeIn("/", mode).
func ProbeMode(ctx context.Context, mode Mode) error { return ProbeModeIn(ctx, "/", mode) }

// ProbeModeIn asks the files under root: the kernel's own config
// (proc/config.gz; a module counts, as fscrypt loads it on first use),
// else the crypto API's list (proc/crypto), else the AF_ALG socket, which
// instantiates the cipher if the kernel can. With none of them to ask, the
// error says the answer is unknown (and does not wrap ErrCipherMissing).
func ProbeModeIn(ctx context.Context, root string, mode Mode) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	mc, ok := modeCiphers[mode]
	if !ok {
		return fmt.Errorf("fscrypt mode %q: unknown", mode)
	}
	if cfg, err := ReadKernelConfig(filepath.Join(root, "proc/config.gz")); err == nil {
		for _, opt := range mc.config {
			if v := cfg[opt]; v != "y" && v != "m" {
				return fmt.Errorf("fscrypt %s: the kernel config has no %s: %w", mode, opt, ErrCipherMissing)
			}
		}
		return nil
	}
	if b, err := os.ReadFile(filepath.Join(root, "proc/crypto")); err == nil {
		for _, n := range mc.names {
			if cryptoListed(b, n) {
				return nil
			}
		}
	}
	if root == "/" {
		for _, n := range mc.names {
			switch err := algBind(n); {
			case err == nil:
				return nil
			case errors.Is(err, unix.ENOENT):
				return fmt.Errorf("fscrypt %s: the kernel's crypto API has no %s (%s): %w", mode, n, strings.Join(mc.config, ", "), ErrCipherMissing)
			}
		}
	}
	return fmt.Errorf("fscrypt %s: unknown whether the kernel has %s: no /proc/config.gz, /proc/crypto does not list it yet and AF_ALG is not in the kernel",
		mode, strings.Join(mc.names, ", "))
}

// ReadKernelConfig reads the kernel's config (CONFIG_IKCONFIG_PROC, at
// path: /proc/config.gz) as a map of option to value; "# X is not set"
// lines are absent.
func ReadKernelConfig(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(zr, 8<<20))
	if err != nil {
		return nil, err
	}
	return parseKernelConfig(b), nil
}

// parseKernelConfig reads a kernel .config's text into option -> value.
func parseKernelConfig(b []byte) map[string]string {
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok && strings.HasPrefix(k, "CONFIG_") {
			out[k] = strings.Trim(v, `"`)
		}
	}
	return out
}

// cryptoListed reports whether /proc/crypto names alg.
func cryptoListed(b []byte, alg string) bool {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "name" && strings.TrimSpace(v) == alg {
			return true
		}
	}
	return false
}

// algBind asks the crypto API for an skcipher through AF_ALG.
func algBind(name string) error {
	fd, err := unix.Socket(unix.AF_ALG, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Bind(fd, &unix.SockaddrALG{Type: "skcipher", Name: name})
}
