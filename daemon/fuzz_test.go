package daemon

import (
	"bytes"
	"errors"
	"net/http/httptest"
	"testing"

	"github.com/workcell/workcell/api"
)

// FuzzDecodeBody feeds arbitrary request bodies (they come from any local
// process) to the strict decoder: it must never panic, and every refusal
// must be an invalid-argument error.
func FuzzDecodeBody(f *testing.F) {
	f.Add([]byte(`{"name":"work","bundle":"/b","limits":{"pids":10}}`))
	f.Add([]byte(`{"name":"work","colour":"red"}`))
	f.Add([]byte(`{"limits":{"pids":"many"}}`))
	f.Add([]byte(`{} {}`))
	f.Add([]byte(`{"timeout_ms":-1}`))
	f.Add([]byte(`{"args":["sh","-c","true"],"env":["A=1"]}`))
	f.Add([]byte("\x00\xff{"))
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, v := range []any{&api.InstallRequest{}, &api.StopRequest{}, &api.ExecRequest{}} {
			r := httptest.NewRequest("POST", "/v1/profiles", bytes.NewReader(body))
			r.Header.Set("Content-Type", "application/json")
			if err := decodeBody(r, v, true); err != nil && !errors.Is(err, api.ErrInvalidArgument) {
				t.Fatalf("decodeBody(%q) = %v, not an invalid-argument error", body, err)
			}
		}
	})
}
