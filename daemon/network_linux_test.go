package daemon

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/workcell/workcell/api"
)

func TestNetworkSettingsFromTheWire(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      api.NetworkSettings
		wantErr string // empty: valid, and it must come back unchanged
	}{
		{name: "direct", in: api.NetworkSettings{Mode: "direct"}},
		{name: "direct with allow-list and resolver", in: api.NetworkSettings{Mode: "direct", Allow: []string{"203.0.113.0/24", "198.51.100.7", "10.0.0.0/8/tcp:443"}, DNS: []string{"203.0.113.53"}}},
		{name: "vpn endpoints with and without port", in: api.NetworkSettings{Mode: "vpn-lockdown", VPNEndpoints: []string{"203.0.113.20:51820", "203.0.113.21"}}},
		{name: "offline with uplink", in: api.NetworkSettings{Mode: "offline", Uplinks: []string{"wlan0"}}},
		{name: "no mode", in: api.NetworkSettings{}, wantErr: "mode: required"},
		{name: "unknown mode", in: api.NetworkSettings{Mode: "sideways"}, wantErr: `"sideways"`},
		{name: "bad CIDR", in: api.NetworkSettings{Mode: "direct", Allow: []string{"300.1.1.1/8"}}, wantErr: "300.1.1.1/8"},
		{name: "host bits", in: api.NetworkSettings{Mode: "direct", Allow: []string{"203.0.113.1/24"}}, wantErr: "host bits"},
		{name: "bad port", in: api.NetworkSettings{Mode: "direct", Allow: []string{"203.0.113.0/24/tcp:0"}}, wantErr: `"0"`},
		{name: "bad endpoint", in: api.NetworkSettings{Mode: "vpn-lockdown", VPNEndpoints: []string{"vpn.example.com:443"}}, wantErr: "vpn.example.com:443"},
		{name: "lockdown without endpoint", in: api.NetworkSettings{Mode: "vpn-lockdown"}, wantErr: "vpn_endpoints"},
		{name: "loopback resolver", in: api.NetworkSettings{Mode: "direct", DNS: []string{"127.0.0.53"}}, wantErr: "127.0.0.53"},
		{name: "bad resolver", in: api.NetworkSettings{Mode: "direct", DNS: []string{"dns"}}, wantErr: `"dns"`},
		{name: "profile interface as uplink", in: api.NetworkSettings{Mode: "direct", Uplinks: []string{"wc-other"}}, wantErr: "wc-other"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := fromWire(tc.in)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("fromWire: %v", err)
				}
				if got := toWire(s); !reflect.DeepEqual(got, tc.in) {
					t.Errorf("round trip: got %+v, want %+v", got, tc.in)
				}
				return
			}
			if !errors.Is(err, api.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("fromWire: err = %v, want an invalid argument naming %s", err, tc.wantErr)
			}
			if strings.HasSuffix(err.Error(), ": invalid argument") {
				t.Errorf("error repeats its class: %v", err)
			}
		})
	}
}
