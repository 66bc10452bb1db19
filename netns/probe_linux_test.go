package netns

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestChooseBackendByProbing(t *testing.T) {
	noNFT := errors.New("nf_tables: operation not supported")
	noIPT := errors.New("iptables-legacy: no iptables-legacy iptables-restore")
	for _, tt := range []struct {
		setting      string
		nft, ipt     error
		want         Backend
		whyHas       string
		errHas       []string
		errIsInvalid bool
	}{
		{setting: "auto", want: BackendNFTables, whyHas: "nf_tables"},
		{setting: "", want: BackendNFTables, whyHas: "auto"},
		{setting: "auto", nft: noNFT, want: BackendIPTables, whyHas: "operation not supported"},
		{setting: "auto", nft: noNFT, ipt: noIPT, errHas: []string{"neither", "operation not supported", "no iptables-legacy iptables-restore"}},
		{setting: "nftables", nft: noNFT, errHas: []string{`firewall "nftables"`, "operation not supported"}},
		{setting: "iptables-legacy", ipt: noIPT, errHas: []string{`firewall "iptables-legacy"`, "iptables-restore"}},
		{setting: "iptables-legacy", nft: noNFT, want: BackendIPTables, whyHas: "configured"},
		{setting: "pf", errHas: []string{`"pf"`}, errIsInvalid: true},
	} {
		t.Run(tt.setting+"/"+errString(tt.nft)+"/"+errString(tt.ipt), func(t *testing.T) {
			probeNFT = func(context.Context) error { return tt.nft }
			probeIPT = func(context.Context) error { return tt.ipt }
			t.Cleanup(func() { probeNFT, probeIPT = ProbeNFTables, ProbeIPTablesLegacy })
			b, why, err := ChooseBackend(context.Background(), tt.setting)
			if len(tt.errHas) > 0 {
				if err == nil {
					t.Fatalf("chose %s (%s), want an error", b, why)
				}
				for _, s := range tt.errHas {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not say %q", err, s)
					}
				}
				if tt.errIsInvalid != errors.Is(err, ErrInvalid) {
					t.Errorf("error %v: ErrInvalid %v, want %v", err, errors.Is(err, ErrInvalid), tt.errIsInvalid)
				}
				return
			}
			if err != nil || b != tt.want || !strings.Contains(why, tt.whyHas) {
				t.Errorf("ChooseBackend(%q) = %s, %q, %v; want %s because of %q", tt.setting, b, why, err, tt.want, tt.whyHas)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return "ok"
	}
	return "fails"
}

// Where only the nf_tables variant of iptables is installed (Debian's
// default "iptables"), the legacy backend is refused with the reason; the
// real probes pass on this machine.
func TestIPTablesProbeRefusesTheNFTablesVariant(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"iptables", "iptables-save", "iptables-restore", "ip6tables", "ip6tables-save", "ip6tables-restore"} {
		script := "#!/bin/sh\necho \"" + name + " v1.8.9 (nf_tables)\"\n"
		if err := os.WriteFile(filepath.Join(dir, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", dir)
	if _, err := os.Stat("/system/bin/iptables"); err == nil {
		t.Fatal("this test fakes a machine without /system/bin/iptables; this one has it")
	}
	err := ProbeIPTablesLegacy(context.Background())
	if err == nil || !strings.Contains(err.Error(), "nf_tables variant") {
		t.Errorf("probe with only the nf_tables variant: %v", err)
	}
	t.Setenv("PATH", t.TempDir())
	if err := ProbeIPTablesLegacy(context.Background()); err == nil || !strings.Contains(err.Error(), "not on PATH nor in /system/bin") {
		t.Errorf("probe without iptables: %v", err)
	}
}

func TestProbesPassOnThisMachine(t *testing.T) {
	requireRoot(t)
	for name, probe := range map[string]func(context.Context) error{"nftables": ProbeNFTables, "iptables-legacy": ProbeIPTablesLegacy} {
		if err := probe(context.Background()); err != nil {
			t.Errorf("%s probe on a kernel with both: %v (install iptables: hack/install-deps)", name, err)
		}
	}
}
