package netns

import (
	"encoding/json"
	"slices"
	"testing"
)

// FuzzSettings feeds network settings as they come from outside (the API's
// JSON, a policy) through parsing, validation and the rule builder: no
// panic, and whatever is accepted builds into sets the kernel would take
// (each element of its set's family, no overlaps: normalize is idempotent).
func FuzzSettings(f *testing.F) {
	for _, s := range []string{
		`{"mode":"direct"}`,
		`{"mode":"direct","allow":["203.0.113.0/24","2001:db8::/32/tcp:443","0.0.0.0/0/udp:53"],"dns":["9.9.9.9","2001:db8::53"]}`,
		`{"mode":"vpn-lockdown","vpn_endpoints":["203.0.113.1:51820","[2001:db8::1]:0"]}`,
		`{"mode":"offline","uplinks":["wlan0","rmnet0"]}`,
		`{"mode":"direct","allow":["::/0","0.0.0.0/0","255.255.255.255","ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128/udp:65535"]}`,
		`{"mode":"direct","allow":["10.0.0.1/8"]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var s Settings
		if json.Unmarshal(b, &s) != nil || s.Validate() != nil {
			return
		}
		for _, ref := range []profileRef{testRef, testRef6} {
			pr, err := buildProfile(ref, testPools, s, testHost)
			if err != nil {
				continue
			}
			for _, st := range slices.Concat(pr.Sets, pr.InnerSets) {
				for _, e := range st.Elems {
					if checkFamily(st, e) != nil {
						t.Fatalf("set %s holds %s of the other family", st.Name, e)
					}
				}
				if st.Kind != setIfname && !slices.Equal(normalize(st.Elems), st.Elems) {
					t.Fatalf("set %s is not normalized: %v", st.Name, st.Elems)
				}
			}
		}
	})
}
