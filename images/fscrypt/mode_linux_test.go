package fscrypt

import (
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCPUHasAES(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cpuinfo string
		want    bool
	}{
		{"x86 with aes", "processor\t: 0\nflags\t\t: fpu vme sse2 aes avx2\n", true},
		{"x86 without", "processor\t: 0\nflags\t\t: fpu vme sse2 avx2 aesni_like\n", false},
		{"arm64 with aes", "processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32\n", true},
		{"arm64 Cortex-A7 class, no crypto extensions", "processor\t: 0\nFeatures\t: fp asimd evtstrm crc32\n", false},
		{"big.LITTLE where one cluster lacks it", "Features\t: fp asimd aes\n\nFeatures\t: fp asimd\n", false},
		{"no cpuinfo", "", false},
	} {
		if got := CPUHasAES([]byte(tc.cpuinfo)); got != tc.want {
			t.Errorf("%s: CPUHasAES = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestChooseMode(t *testing.T) {
	aes := []byte("flags : sse2 aes\n")
	if m, why, err := ChooseMode("auto", aes); m != ModeAES || err != nil || why == "" {
		t.Errorf("auto with AES: %q %q %v", m, why, err)
	}
	if m, why, err := ChooseMode("", nil); m != ModeAdiantum || err != nil || !strings.Contains(why, "Adiantum") {
		t.Errorf("auto without AES: %q %q %v", m, why, err)
	}
	if m, _, err := ChooseMode("adiantum", aes); m != ModeAdiantum || err != nil {
		t.Errorf("adiantum set: %q %v", m, err)
	}
	if _, _, err := ChooseMode("xts", aes); err == nil || !strings.Contains(err.Error(), "fscrypt_contents") {
		t.Errorf("bad setting: %v", err)
	}
	if _, err := ParseIdentifier("ABCD"); err == nil {
		t.Error("ParseIdentifier accepted a short id")
	}
}

func TestProbeModeFromAFakeRoot(t *testing.T) {
	root := t.TempDir()
	if err := ProbeModeIn(t.Context(), root, ModeAdiantum); err == nil || strings.Contains(err.Error(), ErrCipherMissing.Error()) {
		t.Fatalf("nothing to ask: %v, want an unknown (not missing) answer", err)
	}
	os.MkdirAll(filepath.Join(root, "proc"), 0o755)
	os.WriteFile(filepath.Join(root, "proc/crypto"), []byte("name         : adiantum(xchacha12,aes)\ndriver       : adiantum(xchacha12-generic,aes-generic,nhpoly1305-generic)\n"), 0o644)
	if err := ProbeModeIn(t.Context(), root, ModeAdiantum); err != nil {
		t.Fatalf("listed in /proc/crypto: %v", err)
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write([]byte("CONFIG_CRYPTO_AES=y\nCONFIG_CRYPTO_XTS=m\nCONFIG_CRYPTO_CTS=y\n# CONFIG_CRYPTO_ADIANTUM is not set\n"))
	zw.Close()
	os.WriteFile(filepath.Join(root, "proc/config.gz"), buf.Bytes(), 0o644)
	if err := ProbeModeIn(t.Context(), root, ModeAdiantum); !errors.Is(err, ErrCipherMissing) || !strings.Contains(err.Error(), "CONFIG_CRYPTO_ADIANTUM") {
		t.Fatalf("config without Adiantum: %v", err)
	}
	if err := ProbeModeIn(t.Context(), root, ModeAES); err != nil {
		t.Fatalf("config with AES (XTS a module): %v", err)
	}
}
