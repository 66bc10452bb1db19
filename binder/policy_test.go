package binder

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

var echoPolicy = ServicePolicy{
	Name:       "test.echo",
	Descriptor: "workcell.test.IEcho",
	Codes:      []CodeRange{{1, 3}, Code(5)},
	Objects:    []InterfacePolicy{{Descriptor: "workcell.test.ISession", Codes: []CodeRange{Code(1)}}},
}

func TestPolicyValidateRejectsWhatCannotBeEnforced(t *testing.T) {
	for _, tc := range []struct {
		name string
		pol  ProxyPolicy
		want string // "" for valid
	}{
		{"valid", ProxyPolicy{Services: []ServicePolicy{echoPolicy}}, ""},
		{"empty", ProxyPolicy{}, ""},
		{"duplicate name", ProxyPolicy{Services: []ServicePolicy{echoPolicy, echoPolicy}}, "twice"},
		{"bad name", ProxyPolicy{Services: []ServicePolicy{{Name: "a b", Descriptor: "x"}}}, "invalid name"},
		{"no descriptor", ProxyPolicy{Services: []ServicePolicy{{Name: "a"}}}, "empty interface descriptor"},
		{"meta code", ProxyPolicy{Services: []ServicePolicy{{Name: "a", Descriptor: "x", Codes: []CodeRange{Code(DumpTransaction)}}}}, "outside"},
		{"code zero", ProxyPolicy{Services: []ServicePolicy{{Name: "a", Descriptor: "x", Codes: []CodeRange{Code(0)}}}}, "outside"},
		{"inverted range", ProxyPolicy{Services: []ServicePolicy{{Name: "a", Descriptor: "x", Codes: []CodeRange{{5, 2}}}}}, "outside"},
		{"object without descriptor", ProxyPolicy{Services: []ServicePolicy{{Name: "a", Descriptor: "x", Objects: []InterfacePolicy{{}}}}}, "empty interface descriptor"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.pol.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestPolicyDecidesByDescriptorAndCodeDefaultDeny(t *testing.T) {
	for _, tc := range []struct {
		name       string
		descriptor string
		code       uint32
		root       bool
		allow      bool
		reason     string
	}{
		{"allowed code", "workcell.test.IEcho", 1, true, true, ""},
		{"range end", "workcell.test.IEcho", 3, true, true, ""},
		{"gap in ranges", "workcell.test.IEcho", 4, true, false, "code not allowed"},
		{"single code", "workcell.test.IEcho", 5, true, true, ""},
		{"past the ranges", "workcell.test.IEcho", 6, true, false, "code not allowed"},
		{"wrong descriptor", "android.os.IServiceManager", 1, true, false, "is not the service's"},
		{"empty descriptor", "", 1, true, false, "is not the service's"},
		{"dump", "workcell.test.IEcho", DumpTransaction, true, false, "meta transaction"},
		{"shell command", "workcell.test.IEcho", ShellCommandTransaction, true, false, "meta transaction"},
		{"code zero", "workcell.test.IEcho", 0, true, false, "meta transaction"},
		{"handed-out object", "workcell.test.ISession", 1, false, true, ""},
		{"handed-out object, other code", "workcell.test.ISession", 2, false, false, "code not allowed"},
		{"session interface on the service itself", "workcell.test.ISession", 1, true, false, "is not the service's"},
		{"service interface on a handed-out object", "workcell.test.IEcho", 1, false, false, "not allowed on objects"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			allow, reason := echoPolicy.decide(tc.descriptor, tc.code, tc.root)
			if allow != tc.allow || !strings.Contains(reason, tc.reason) {
				t.Fatalf("decide = %v %q, want %v %q", allow, reason, tc.allow, tc.reason)
			}
		})
	}
}

// TestRewriteObjectsReplacesOnlyObjects checks parcel rewriting as data:
// every object is handed to the function and replaced in place, the bytes
// around them (token, stability words, strings) are kept, the source is not
// touched, and fds written out become owned (closed once sent).
func TestRewriteObjectsReplacesOnlyObjects(t *testing.T) {
	for _, rel := range Releases() {
		t.Run(rel.String(), func(t *testing.T) {
			src := NewParcel(rel)
			src.WriteInterfaceToken("workcell.test.IEcho")
			src.WriteHandle(7)
			src.WriteString16("between")
			src.WriteLocalBinder(0x10, 0x10)
			src.WriteFD(5, false)
			src.WriteNullBinder()
			src.WriteInt32(42)
			before := append([]byte(nil), src.Data()...)

			var seen []uint32
			out, err := rewriteObjects(src, func(o Object) (flatObject, error) {
				seen = append(seen, o.Type)
				switch {
				case o.Type == TypeHandle:
					return flatObject{Type: TypeBinder, Flags: wrapperFlags, Binder: 99, Cookie: 99}, nil
				case o.Type == TypeBinder && !o.IsNull():
					return flatObject{Type: TypeHandle, Flags: o.Flags, Binder: 3}, nil
				}
				return flatObject{Type: o.Type, Flags: o.Flags, Binder: o.Binder, Cookie: o.Cookie}, nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if want := []uint32{TypeHandle, TypeBinder, TypeFD}; !slices.Equal(seen, want) { // a null binder is no object
				t.Fatalf("objects seen %x, want %x", seen, want)
			}
			if !bytes.Equal(src.Data(), before) {
				t.Fatal("the source parcel was modified")
			}
			if len(out.Data()) != len(before) || !slices.Equal(out.Offsets(), src.Offsets()) {
				t.Fatal("rewriting changed the layout")
			}
			if err := out.EnforceInterface("workcell.test.IEcho"); err != nil {
				t.Fatal(err)
			}
			b, err := out.ReadBinder()
			if err != nil || b.Type != TypeBinder || b.Cookie != 99 {
				t.Fatalf("first object %+v, %v", b, err)
			}
			if rel.hasStability() && b.Stability != StabilitySystem {
				t.Fatalf("stability word %d not kept", b.Stability)
			}
			if s, err := out.ReadString16(); err != nil || s != "between" {
				t.Fatalf("string between objects %q, %v", s, err)
			}
			if b, err := out.ReadBinder(); err != nil || b.Type != TypeHandle || b.Handle() != 3 {
				t.Fatalf("second object %+v, %v", b, err)
			}
			if fd, err := out.ReadFD(); err != nil || fd != 5 {
				t.Fatalf("fd %d, %v", fd, err)
			}
			if b, err := out.ReadBinder(); err != nil || !b.IsNull() {
				t.Fatalf("null binder %+v, %v", b, err)
			}
			if v, err := out.ReadInt32(); err != nil || v != 42 {
				t.Fatalf("trailing int %d, %v", v, err)
			}
			if got := out.OwnedFDs(); len(got) != 1 || got[0] != 5 {
				t.Fatalf("owned fds %v, want [5]", got)
			}
		})
	}
}

func TestRewriteObjectsRefusals(t *testing.T) {
	p := NewParcel(Android11)
	p.WriteFD(3, false)
	_, err := rewriteObjects(p, func(o Object) (flatObject, error) {
		return flatObject{}, errObjectRefused{"file descriptors not allowed"}
	})
	if reason, ok := refusal(err); !ok || reason != "file descriptors not allowed" {
		t.Fatalf("refusal = %q %v from %v", reason, ok, err)
	}

	// A scatter-gather buffer cannot be rewritten.
	data := make([]byte, sizeBufferObject)
	ne.PutUint32(data, TypePtr)
	sg, err := ParseParcel(Android11, data, []uint64{0})
	if err != nil {
		t.Fatal(err)
	}
	_, err = rewriteObjects(sg, func(o Object) (flatObject, error) { t.Fatal("called for a buffer object"); return flatObject{}, nil })
	if reason, ok := refusal(err); !ok || !strings.Contains(reason, "cannot be proxied") {
		t.Fatalf("buffer object: %v", err)
	}

	other := errors.New("boom")
	_, err = rewriteObjects(p, func(o Object) (flatObject, error) { return flatObject{}, other })
	if _, ok := refusal(err); ok || !errors.Is(err, other) {
		t.Fatalf("a plain error became %v", err)
	}
}

func TestAuditLogWritesJSONLines(t *testing.T) {
	var buf bytes.Buffer
	a := NewAuditLog(&buf)
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	recs := []AuditRecord{
		{Time: at, Profile: "work", Service: "test.echo", Direction: DirectionWorkToHost, Descriptor: "workcell.test.IEcho", Code: 4, Verdict: VerdictDeny, Reason: "code not allowed", SenderPID: 12},
		{Time: at, Profile: "work", Service: "test.echo", Direction: DirectionHostToWork, Descriptor: "workcell.test.ICallback", Code: 1, Verdict: VerdictAllow},
	}
	for _, r := range recs {
		if err := a.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines: %q", len(lines), buf.String())
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &m); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]any{
		"time": "2025-01-02T03:04:05Z", "profile": "work", "service": "test.echo", "direction": "work-to-host",
		"descriptor": "workcell.test.IEcho", "code": 4.0, "verdict": "deny", "reason": "code not allowed", "sender_pid": 12.0,
	} {
		if m[k] != v {
			t.Errorf("field %s = %v, want %v", k, m[k], v)
		}
	}
	var back AuditRecord
	if err := json.Unmarshal([]byte(lines[1]), &back); err != nil || back != recs[1] {
		t.Fatalf("second record read back as %+v, %v", back, err)
	}
	if strings.Contains(lines[1], "reason") {
		t.Error("an allow record without reason carries a reason field")
	}
}
