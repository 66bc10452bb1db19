package binder

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// The expected bytes below are worked out by hand from libbinder's sources
// of each release (see Release), little-endian, never from this package's
// own writers: a wrong code, flag, word or byte order fails them.
const (
	// "android.os.IServiceManager": 26 UTF-16 units, a NUL unit, 2 bytes of padding.
	hexSMDescriptor = "1a000000" + "61006e00640072006f00690064002e006f0073002e00490053006500720076006900630065004d0061006e00610067006500720000000000"
	// strict mode STRICT_MODE_PENALTY_GATHER (0x80000000), work source kUnsetWorkSource (-1)
	hexStrictWork = "00000080" + "ffffffff"
	// kHeader B_PACK_CHARS('S','Y','S','T') = 0x53595354
	hexSYST = "54535953"
	// "svc": 3 units and a NUL, already 4-aligned
	hexSvc = "03000000" + "730076006300" + "0000"
	// flat_binder_object types: B_PACK_CHARS('s','b','*',0x85), ('s','h','*',0x85), ('f','d','*',0x85)
	hexTypeBinder = "852a6273"
	hexTypeHandle = "852a6873"
	hexTypeFD     = "852a6466"
	hexZero64     = "0000000000000000"
)

var tokenHex = map[Release]string{
	Android10: hexStrictWork + hexSMDescriptor,
	Android11: hexStrictWork + hexSYST + hexSMDescriptor,
	Android12: hexStrictWork + hexSYST + hexSMDescriptor,
	Android13: hexStrictWork + hexSYST + hexSMDescriptor,
	Android14: hexStrictWork + hexSYST + hexSMDescriptor,
}

// The word after a strong binder: none on 10; the level on 11; the
// Category {version 1, 0, 0, level} on 12; the int16 level on 13 and 14.
var systemWordHex = map[Release]string{
	Android10: "", Android11: "0c000000", Android12: "0100000c", Android13: "0c000000", Android14: "0c000000",
}
var nullWordHex = map[Release]string{
	Android10: "", Android11: "00000000", Android12: "01000000", Android13: "00000000", Android14: "00000000",
}

// Flags of a handle or null object: FLAT_BINDER_FLAG_ACCEPTS_FDS (0x100) |
// schedPolicyMask(SCHED_NORMAL, 19) up to 12, the priority alone from 13.
var handleFlagsHex = map[Release]string{
	Android10: "13010000", Android11: "13010000", Android12: "13010000", Android13: "13000000", Android14: "13000000",
}

// Flags of an fd object: 0x7f | ACCEPTS_FDS up to 13, 0 on 14.
var fdFlagsHex = map[Release]string{
	Android10: "7f010000", Android11: "7f010000", Android12: "7f010000", Android13: "7f010000", Android14: "00000000",
}

func TestWireFormatPerRelease(t *testing.T) {
	type row struct {
		name  string
		write func(p *Parcel)
		want  func(rel Release) string
	}
	rows := []row{
		{"interface token", func(p *Parcel) { p.WriteInterfaceToken(ServiceManagerDescriptor) },
			func(rel Release) string { return tokenHex[rel] }},
		{"vendor interface token", func(p *Parcel) {
			p.WriteInterfaceHeader(InterfaceToken{StrictMode: StrictModePenaltyGather | 0x41, WorkSource: 10123,
				Header: HeaderVendor, Descriptor: ServiceManagerDescriptor})
		}, func(rel Release) string {
			vndr := "52444e56" // B_PACK_CHARS('V','N','D','R')
			if rel == Android10 {
				vndr = ""
			}
			return "41000080" + "8b270000" + vndr + hexSMDescriptor
		}},
		{"handle with system stability", func(p *Parcel) { p.WriteHandle(5) },
			func(rel Release) string {
				return hexTypeHandle + handleFlagsHex[rel] + "0500000000000000" + hexZero64 + systemWordHex[rel]
			}},
		{"handle with vintf stability", func(p *Parcel) { p.WriteHandleStability(6, StabilityVINTF) },
			func(rel Release) string {
				word := map[Release]string{Android10: "", Android11: "3f000000", Android12: "0100003f",
					Android13: "3f000000", Android14: "3f000000"}[rel]
				return hexTypeHandle + handleFlagsHex[rel] + "0600000000000000" + hexZero64 + word
			}},
		{"handle with vendor stability", func(p *Parcel) { p.WriteHandleStability(6, StabilityVendor) },
			func(rel Release) string {
				word := map[Release]string{Android10: "", Android11: "03000000", Android12: "01000003",
					Android13: "03000000", Android14: "03000000"}[rel]
				return hexTypeHandle + handleFlagsHex[rel] + "0600000000000000" + hexZero64 + word
			}},
		{"local binder", func(p *Parcel) { p.WriteLocalBinder(0x1122334455, 0x1122334455) },
			func(rel Release) string {
				return hexTypeBinder + "13010000" + "5544332211000000" + "5544332211000000" + systemWordHex[rel]
			}},
		{"null binder", func(p *Parcel) { p.WriteNullBinder() },
			func(rel Release) string {
				return hexTypeBinder + handleFlagsHex[rel] + hexZero64 + hexZero64 + nullWordHex[rel]
			}},
		{"fd", func(p *Parcel) { p.WriteFD(7, false) },
			func(rel Release) string { return hexTypeFD + fdFlagsHex[rel] + "0700000000000000" + hexZero64 }},
		{"security exception reply", func(p *Parcel) { p.WriteException(&Exception{Code: ExSecurity, Message: "no"}) },
			// EX_SECURITY, String16 "no", empty stack trace header: Status::writeToParcel in every release
			func(Release) string { return "ffffffff" + "02000000" + "6e006f000000" + "0000" + "00000000" }},
		{"service-specific exception reply", func(p *Parcel) {
			p.WriteException(&Exception{Code: ExServiceSpecific, Message: "x", ServiceSpecific: 42})
		}, func(Release) string { return "f8ffffff" + "01000000" + "78000000" + "00000000" + "2a000000" }},
		{"parcelable exception reply", func(p *Parcel) { p.WriteException(&Exception{Code: ExParcelable}) },
			func(Release) string { return "f7ffffff" + "00000000" + "00000000" + "00000000" + "00000000" }},
		{"no exception", func(p *Parcel) { p.WriteNoException() }, func(Release) string { return "00000000" }},
	}
	for _, rel := range Releases() {
		for _, r := range rows {
			t.Run(rel.String()+"/"+r.name, func(t *testing.T) {
				p := NewParcel(rel)
				r.write(p)
				if got, want := hexOf(p), r.want(rel); got != want {
					t.Errorf("bytes\n got %s\nwant %s", got, want)
				}
			})
		}
	}
}

// TestServiceManagerCallsPerRelease pins the code and bytes of the calls a
// client makes on the service manager.
func TestServiceManagerCallsPerRelease(t *testing.T) {
	local := func(p *Parcel) { p.WriteLocalBinder(0x10, 0x10) }
	for _, rel := range Releases() {
		tok := tokenHex[rel]
		binderHex := hexTypeBinder + "13010000" + "1000000000000000" + "1000000000000000" + systemWordHex[rel]
		listArgs := "0f000000" // DUMP_FLAG_PRIORITY_ALL
		if rel == Android10 {
			listArgs = "02000000" + "0f000000" // the index, then the priority
		}
		rows := []struct {
			name     string
			call     func() (uint32, *Parcel)
			code     uint32
			wantData string
			objects  int
		}{
			{"getService", func() (uint32, *Parcel) { return getServiceCall(rel, "svc") }, 1, tok + hexSvc, 0},
			{"checkService", func() (uint32, *Parcel) { return checkServiceCall(rel, "svc") }, 2, tok + hexSvc, 0},
			{"addService", func() (uint32, *Parcel) { return addServiceCall(rel, "svc", local, true, DumpPriorityDefault) }, 3,
				tok + hexSvc + binderHex + "01000000" + "08000000", 1},
			{"listServices", func() (uint32, *Parcel) { return listServicesCall(rel, 2, DumpPriorityAll) }, 4, tok + listArgs, 0},
		}
		for _, r := range rows {
			t.Run(rel.String()+"/"+r.name, func(t *testing.T) {
				code, p := r.call()
				if code != r.code {
					t.Errorf("code %d, want %d", code, r.code)
				}
				if got := hexOf(p); got != r.wantData {
					t.Errorf("bytes\n got %s\nwant %s", got, r.wantData)
				}
				if len(p.Offsets()) != r.objects {
					t.Errorf("%d objects, want %d", len(p.Offsets()), r.objects)
				}
				if r.objects == 1 && p.Offsets()[0] != uint64(len(tok+hexSvc)/2) {
					t.Errorf("binder at offset %d, want %d", p.Offsets()[0], len(tok+hexSvc)/2)
				}
			})
		}
	}
}

// TestServiceManagerCodesPerRelease pins every IServiceManager code: the
// method's index in IServiceManager.aidl plus FIRST_CALL_TRANSACTION.
func TestServiceManagerCodesPerRelease(t *testing.T) {
	want := map[Release]ServiceManagerCodes{
		// service_manager.c: GET, CHECK, ADD, LIST only
		Android10: {GetService: 1, CheckService: 2, AddService: 3, ListServices: 4},
		// lineage-18.1
		Android11: {GetService: 1, CheckService: 2, AddService: 3, ListServices: 4,
			RegisterForNotifications: 5, UnregisterForNotifications: 6, IsDeclared: 7,
			RegisterClientCallback: 8, TryUnregisterService: 9},
		// lineage-19.1
		Android12: {GetService: 1, CheckService: 2, AddService: 3, ListServices: 4,
			RegisterForNotifications: 5, UnregisterForNotifications: 6, IsDeclared: 7,
			GetDeclaredInstances: 8, UpdatableViaApex: 9, RegisterClientCallback: 10,
			TryUnregisterService: 11, GetServiceDebugInfo: 12},
		// lineage-20.0
		Android13: {GetService: 1, CheckService: 2, AddService: 3, ListServices: 4,
			RegisterForNotifications: 5, UnregisterForNotifications: 6, IsDeclared: 7,
			GetDeclaredInstances: 8, UpdatableViaApex: 9, GetConnectionInfo: 10,
			RegisterClientCallback: 11, TryUnregisterService: 12, GetServiceDebugInfo: 13},
		// lineage-21.0
		Android14: {GetService: 1, CheckService: 2, AddService: 3, ListServices: 4,
			RegisterForNotifications: 5, UnregisterForNotifications: 6, IsDeclared: 7,
			GetDeclaredInstances: 8, UpdatableViaApex: 9, GetUpdatableNames: 10,
			GetConnectionInfo: 11, RegisterClientCallback: 12, TryUnregisterService: 13,
			GetServiceDebugInfo: 14},
	}
	for _, rel := range Releases() {
		if got := rel.ServiceManager(); got != want[rel] {
			t.Errorf("%s:\n got %+v\nwant %+v", rel, got, want[rel])
		}
	}
}

func TestParseRelease(t *testing.T) {
	good := map[string]Release{
		"10": Android10, "android10": Android10, "11": Android11, "android11": Android11,
		"12": Android12, "android12": Android12, "13": Android13, "Android13": Android13,
		" android14 ": Android14, "14": Android14,
	}
	for in, want := range good {
		if got, err := ParseRelease(in); err != nil || got != want {
			t.Errorf("ParseRelease(%q) = %v, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "9", "15", "android", "android12L", "12.1", "1 2"} {
		if r, err := ParseRelease(in); err == nil {
			t.Errorf("ParseRelease(%q) accepted it as %v", in, r)
		} else if !strings.Contains(err.Error(), "android13") {
			t.Errorf("ParseRelease(%q) error %q does not list the releases", in, err)
		}
	}
	for _, rel := range Releases() {
		if got, err := ParseRelease(rel.String()); err != nil || got != rel {
			t.Errorf("ParseRelease(%q) = %v, %v", rel.String(), got, err)
		}
	}
}

// handleWith returns a parcel of rel holding a handle followed by the raw
// stability word w.
func handleWith(t *testing.T, rel Release, w uint32) *Parcel {
	t.Helper()
	p := NewParcel(Android10) // no stability word of its own
	p.WriteHandle(4)
	p.WriteUint32(w)
	r, err := ParseParcel(rel, p.Data(), p.Offsets())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestStabilityWordsDecodePerRelease reads raw words as each release's
// libbinder does: a release mix-up shows as a refused or different level.
func TestStabilityWordsDecodePerRelease(t *testing.T) {
	tests := []struct {
		rel   Release
		word  uint32
		level int32
		bad   bool
	}{
		{Android11, 0x0000000c, StabilitySystem, false},
		{Android11, 0x00000003, StabilityVendor, false},
		{Android11, 0x0c000001, 0, true}, // a 12 word read by 11: no known level
		{Android11, 0x00000000, 0, true}, // a live binder must have a level
		{Android12, 0x0c000001, StabilitySystem, false},
		{Android12, 0x3f000001, StabilityVINTF, false},
		{Android12, 0x0c0000ff, StabilitySystem, false}, // newer versions are accepted
		{Android12, 0x0c000000, 0, true},                // version 0: refused (kBinderWireFormatOldest is 1)
		{Android12, 0x0000000c, 0, true},                // an 11 SYSTEM word: version 12, level 0
		{Android12, 0x00000001, 0, true},                // version 1, UNDECLARED on a live binder
		{Android13, 0x0000000c, StabilitySystem, false},
		{Android13, 0xffff000c, StabilitySystem, false}, // static_cast<int16_t>: the high half is ignored
		{Android13, 0x0c000001, 0, true},                // a 12 word read by 13: level 1
		{Android14, 0x0001003f, StabilityVINTF, false},
		{Android14, 0x0c000001, 0, true}, // a 12 word read by 14: level 1
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s/%#08x", tc.rel, tc.word), func(t *testing.T) {
			p := handleWith(t, tc.rel, tc.word)
			o, err := p.ReadBinder()
			if tc.bad {
				if !errors.Is(err, ErrBadParcel) {
					t.Fatalf("read %+v, %v; want a malformed-parcel error", o, err)
				}
				if p.Position() != 0 {
					t.Fatalf("a refused binder moved the position to %d", p.Position())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o.Stability != tc.level {
				t.Fatalf("level %#x, want %#x", o.Stability, tc.level)
			}
		})
	}
	// A null binder carries UNDECLARED and nothing else.
	for _, rel := range Releases()[1:] {
		p := NewParcel(Android10)
		p.WriteNullBinder()
		p.WriteInt32(rel.StabilityWord(StabilitySystem))
		r, _ := ParseParcel(rel, p.Data(), nil)
		if o, err := r.ReadBinder(); !errors.Is(err, ErrBadParcel) {
			t.Errorf("%s: a null binder with system stability read as %+v, %v", rel, o, err)
		}
	}
	// Every release reads its own words back as the levels written.
	for _, rel := range Releases()[1:] {
		for _, level := range []int32{StabilityVendor, StabilitySystem, StabilityVINTF} {
			w := NewParcel(rel)
			w.WriteHandleStability(1, level)
			r, err := ParseParcel(rel, w.Data(), w.Offsets())
			if err != nil {
				t.Fatal(err)
			}
			if o, err := r.ReadBinder(); err != nil || o.Stability != level {
				t.Errorf("%s: level %#x read back as %+v, %v", rel, level, o, err)
			}
		}
	}
}

// TestReadExceptionPerRelease: the remote stack trace is skipped from after
// its size word up to Android 13 and from the size word on 14; a null
// message is UNEXPECTED_NULL up to 12 and empty from 13.
func TestReadExceptionPerRelease(t *testing.T) {
	for _, rel := range Releases() {
		t.Run(rel.String()+"/stack trace", func(t *testing.T) {
			p := NewParcel(rel)
			p.WriteInt32(ExServiceSpecific)
			p.WriteString16("")
			p.WriteInt32(8) // stack trace header size
			p.WriteInt32(1)
			p.WriteInt32(2)
			p.WriteInt32(3)
			r, _ := ParseParcel(rel, p.Data(), nil)
			var ex *Exception
			if err := r.ReadException(); !errors.As(err, &ex) {
				t.Fatalf("got %v", err)
			}
			want := int32(3)
			if rel >= Android14 {
				want = 2
			}
			if ex.ServiceSpecific != want {
				t.Fatalf("service-specific code %d, want %d", ex.ServiceSpecific, want)
			}
		})
		t.Run(rel.String()+"/null message", func(t *testing.T) {
			p := NewParcel(rel)
			p.WriteInt32(ExIllegalState)
			p.WriteNullString16()
			p.WriteInt32(0)
			r, _ := ParseParcel(rel, p.Data(), nil)
			err := r.ReadException()
			var ex *Exception
			if rel >= Android13 {
				if !errors.As(err, &ex) || ex.Code != ExIllegalState || ex.Message != "" {
					t.Fatalf("got %v, want an IllegalStateException with no message", err)
				}
			} else if !errors.Is(err, ErrUnexpectedNull) {
				t.Fatalf("got %v, want ErrUnexpectedNull", err)
			}
		})
		t.Run(rel.String()+"/stack trace past the end", func(t *testing.T) {
			p := NewParcel(rel)
			p.WriteInt32(ExSecurity)
			p.WriteString16("")
			p.WriteInt32(8)
			p.WriteInt32(1) // 4 bytes follow the size word, 8 from its start
			r, _ := ParseParcel(rel, p.Data(), nil)
			err := r.ReadException()
			if rel >= Android14 {
				if !errors.As(err, new(*Exception)) {
					t.Fatalf("got %v, want the exception", err)
				}
			} else if !errors.Is(err, ErrBadParcel) {
				t.Fatalf("got %v, want ErrBadParcel", err)
			}
		})
	}
}
