package netns

import (
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestParseRule(t *testing.T) {
	tests := []struct {
		in      string
		want    Rule
		wantErr string // substring naming the bad value
	}{
		{in: "203.0.113.0/24", want: Rule{Prefix: netip.MustParsePrefix("203.0.113.0/24")}},
		{in: "198.51.100.7", want: Rule{Prefix: netip.MustParsePrefix("198.51.100.7/32")}},
		{in: "10.0.0.0/8/tcp:443", want: Rule{Prefix: netip.MustParsePrefix("10.0.0.0/8"), Proto: "tcp", Port: 443}},
		{in: "192.0.2.1/udp:53", want: Rule{Prefix: netip.MustParsePrefix("192.0.2.1/32"), Proto: "udp", Port: 53}},
		{in: "2001:db8::/32/tcp:443", want: Rule{Prefix: netip.MustParsePrefix("2001:db8::/32"), Proto: "tcp", Port: 443}},
		{in: "10.0.0.1/8", wantErr: "10.0.0.1/8 has host bits set"},
		{in: "10.0.0.0/33", wantErr: `bad CIDR "10.0.0.0/33"`},
		{in: "example.com", wantErr: `bad address "example.com"`},
		{in: "10.0.0.0/8/icmp:1", wantErr: `protocol "icmp"`},
		{in: "10.0.0.0/8/tcp:0", wantErr: `port "0"`},
		{in: "10.0.0.0/8/tcp:65536", wantErr: `port "65536"`},
		{in: "10.0.0.0/8/tcp:", wantErr: `port ""`},
		{in: "", wantErr: `allow rule ""`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseRule(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrInvalid) {
					t.Fatalf("ParseRule(%q) = %v, %v; want ErrInvalid naming %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseRule(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			}
			if back, err := ParseRule(got.String()); err != nil || back != got {
				t.Errorf("round trip through %q: %+v, %v", got.String(), back, err)
			}
		})
	}
}

func TestSettingsJSONUsesRuleText(t *testing.T) {
	s := Settings{Mode: ModeDirect, Allow: []Rule{mustRule("10.0.0.0/8/tcp:443")}, DNS: []netip.Addr{netip.MustParseAddr("192.0.2.53")}}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"allow":["10.0.0.0/8/tcp:443"]`) {
		t.Errorf("JSON %s", b)
	}
	var back Settings
	if err := json.Unmarshal(b, &back); err != nil || back.Allow[0] != s.Allow[0] || back.DNS[0] != s.DNS[0] {
		t.Errorf("round trip: %+v, %v", back, err)
	}
	if err := json.Unmarshal([]byte(`{"mode":"direct","allow":["10.0.0.1/8"]}`), &back); err == nil || !strings.Contains(err.Error(), "10.0.0.1/8") {
		t.Errorf("bad rule in JSON: %v", err)
	}
}

func TestValidateNamesTheBadField(t *testing.T) {
	ep := netip.MustParseAddrPort("203.0.113.1:51820")
	tests := []struct {
		name    string
		s       Settings
		wantErr string
	}{
		{name: "direct", s: Settings{Mode: ModeDirect}},
		{name: "offline", s: Settings{Mode: ModeOffline}},
		{name: "vpn", s: Settings{Mode: ModeVPNLockdown, VPNEndpoints: []netip.AddrPort{ep}}},
		{name: "vpn port 0", s: Settings{Mode: ModeVPNLockdown, VPNEndpoints: []netip.AddrPort{netip.MustParseAddrPort("203.0.113.1:0")}}},
		{name: "no mode", s: Settings{}, wantErr: `mode ""`},
		{name: "unknown mode", s: Settings{Mode: "online"}, wantErr: `mode "online"`},
		{name: "vpn without endpoint", s: Settings{Mode: ModeVPNLockdown}, wantErr: "vpn_endpoints"},
		{name: "IPv6 endpoint", s: Settings{Mode: ModeVPNLockdown, VPNEndpoints: []netip.AddrPort{netip.MustParseAddrPort("[2001:db8::1]:443")}}},
		{name: "link-local endpoint", s: Settings{Mode: ModeVPNLockdown, VPNEndpoints: []netip.AddrPort{netip.MustParseAddrPort("[fe80::1%eth0]:443")}}, wantErr: `vpn_endpoints[0] "[fe80::1%eth0]:443"`},
		{name: "IPv6 dns", s: Settings{Mode: ModeDirect, DNS: []netip.Addr{netip.MustParseAddr("2001:db8::53")}}},
		{name: "IPv6 loopback dns", s: Settings{Mode: ModeDirect, DNS: []netip.Addr{netip.MustParseAddr("2001:db8::53"), netip.MustParseAddr("::1")}}, wantErr: `dns[1] "::1"`},
		{name: "IPv4-mapped allow", s: Settings{Mode: ModeDirect, Allow: []Rule{{Prefix: netip.MustParsePrefix("::ffff:10.0.0.0/104")}}}, wantErr: `allow[0]: allow rule "::ffff:10.0.0.0/104"`},
		{name: "loopback endpoint", s: Settings{Mode: ModeVPNLockdown, VPNEndpoints: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:443")}}, wantErr: `vpn_endpoints[0] "127.0.0.1:443"`},
		{name: "IPv6 allow", s: Settings{Mode: ModeDirect, Allow: []Rule{mustRule("2001:db8::/32"), mustRule("2001:db8:1::1/udp:53")}}},
		{name: "port without proto", s: Settings{Mode: ModeDirect, Allow: []Rule{{Prefix: netip.MustParsePrefix("10.0.0.0/8"), Port: 80}}}, wantErr: "port 80 without protocol"},
		{name: "unmasked allow", s: Settings{Mode: ModeDirect, Allow: []Rule{mustRule("10.0.0.0/8"), {Prefix: netip.MustParsePrefix("10.0.0.1/8")}}}, wantErr: "allow[1]"},
		{name: "loopback dns", s: Settings{Mode: ModeDirect, DNS: []netip.Addr{netip.MustParseAddr("127.0.0.53")}}, wantErr: `dns[0] "127.0.0.53"`},
		{name: "bad uplink", s: Settings{Mode: ModeDirect, Uplinks: []string{"wlan0", "a/b"}}, wantErr: `uplinks[1] "a/b"`},
		{name: "long uplink", s: Settings{Mode: ModeDirect, Uplinks: []string{"abcdefghijklmnop"}}, wantErr: `uplinks[0] "abcdefghijklmnop"`},
		{name: "profile link as uplink", s: Settings{Mode: ModeDirect, Uplinks: []string{"wc-other"}}, wantErr: `uplinks[0] "wc-other"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.s.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate = %v; want ErrInvalid naming %q", err, tt.wantErr)
			}
		})
	}
}

func TestValidProfile(t *testing.T) {
	for _, ok := range []string{"work", "a", "corp-2", "x_y", strings.Repeat("a", 64)} {
		if err := ValidProfile(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "-a", "Work", "a:b", "a/b", "a b", strings.Repeat("a", 65)} {
		if err := ValidProfile(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("%q: %v, want ErrInvalid", bad, err)
		}
	}
}
