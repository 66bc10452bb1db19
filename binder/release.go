package binder

import (
	"fmt"
	"strings"
)

// Release selects the AOSP libbinder wire format that parcels follow. The
// releases differ in small ways, all taken from AOSP's
// frameworks/native/libs/binder:
//
//   - Android 10 (Parcel.cpp, lineage-17.1): the interface token is the
//     strict-mode word, the work-source word and the descriptor; binder
//     objects are followed by nothing; an empty String8 is only its length.
//   - Android 11 (lineage-18.1): the token gains a 'SYST' header word
//     before the descriptor; every strong binder object is followed by an
//     int32 stability level (Stability.cpp); String8 is written like
//     String16 (length, bytes, NUL, padding) and may be null (-1).
//   - Android 14 (lineage-21.0): as 11, but a handle or null object carries
//     no FLAT_BINDER_FLAG_ACCEPTS_FDS and fd objects carry flags 0.
type Release int

// The releases this package speaks.
const (
	Android10 Release = 10
	Android11 Release = 11
	Android14 Release = 14
)

// ParseRelease reads "10", "11", "14" or "android14" as a Release.
func ParseRelease(s string) (Release, error) {
	switch strings.TrimPrefix(strings.ToLower(strings.TrimSpace(s)), "android") {
	case "10":
		return Android10, nil
	case "11":
		return Android11, nil
	case "14":
		return Android14, nil
	}
	return 0, fmt.Errorf("binder: unsupported Android release %q (want 10, 11 or 14)", s)
}

func (r Release) String() string { return fmt.Sprintf("android%d", int(r)) }

func (r Release) valid() bool { return r == Android10 || r == Android11 || r == Android14 }

// hasStability reports whether binder objects are followed by a stability word.
func (r Release) hasStability() bool { return r >= Android11 }

// hasHeaderWord reports whether interface tokens carry the 'SYST' word.
func (r Release) hasHeaderWord() bool { return r >= Android11 }

// Stability levels written after binder objects from Android 11 on
// (internal::Stability::Level).
const (
	StabilityUndeclared int32 = 0
	StabilityVendor     int32 = 0b000011
	StabilitySystem     int32 = 0b001100
	StabilityVINTF      int32 = 0b111111
)

// Interface token words (Parcel.cpp, IPCThreadState.h).
const (
	// StrictModePenaltyGather is always set in the strict-mode word.
	StrictModePenaltyGather int32 = -1 << 31
	// UnsetWorkSource is IPCThreadState::kUnsetWorkSource.
	UnsetWorkSource int32 = -1
	// HeaderSystem is B_PACK_CHARS('S','Y','S','T'), the header of system
	// libbinder on Android 11 and later; vendor code writes 'VNDR'.
	HeaderSystem int32 = 'S'<<24 | 'Y'<<16 | 'S'<<8 | 'T'
	HeaderVendor int32 = 'V'<<24 | 'N'<<16 | 'D'<<8 | 'R'
)

// Transaction codes every binder answers (IBinder.h).
const (
	FirstCallTransaction    uint32 = 0x00000001
	LastCallTransaction     uint32 = 0x00ffffff
	PingTransaction         uint32 = '_'<<24 | 'P'<<16 | 'N'<<8 | 'G'
	DumpTransaction         uint32 = '_'<<24 | 'D'<<16 | 'M'<<8 | 'P'
	ShellCommandTransaction uint32 = '_'<<24 | 'C'<<16 | 'M'<<8 | 'D'
	InterfaceTransaction    uint32 = '_'<<24 | 'N'<<16 | 'T'<<8 | 'F'
	SyspropsTransaction     uint32 = '_'<<24 | 'S'<<16 | 'P'<<8 | 'R'
)

// ServiceManagerDescriptor is the interface descriptor of the service manager.
const ServiceManagerDescriptor = "android.os.IServiceManager"

// ServiceManagerCodes are the transaction codes of the service manager's
// methods in a release; zero means the release lacks the method. Android 10
// uses the hand-written IServiceManager.cpp (names as String16); 11 and 14 the
// AIDL interface in libs/binder/aidl/android/os/IServiceManager.aidl (names
// as @utf8InCpp strings, which travel as String16 too).
type ServiceManagerCodes struct {
	GetService, CheckService, AddService, ListServices           uint32
	RegisterForNotifications, UnregisterForNotifications         uint32
	IsDeclared, GetDeclaredInstances, UpdatableViaApex           uint32
	GetUpdatableNames, GetConnectionInfo, RegisterClientCallback uint32
	TryUnregisterService, GetServiceDebugInfo                    uint32
}

// ServiceManager returns the service manager's codes in r.
func (r Release) ServiceManager() ServiceManagerCodes {
	c := ServiceManagerCodes{GetService: 1, CheckService: 2, AddService: 3, ListServices: 4}
	switch r {
	case Android11:
		c.RegisterForNotifications, c.UnregisterForNotifications, c.IsDeclared = 5, 6, 7
		c.RegisterClientCallback, c.TryUnregisterService = 8, 9
	case Android14:
		c.RegisterForNotifications, c.UnregisterForNotifications, c.IsDeclared = 5, 6, 7
		c.GetDeclaredInstances, c.UpdatableViaApex, c.GetUpdatableNames = 8, 9, 10
		c.GetConnectionInfo, c.RegisterClientCallback, c.TryUnregisterService = 11, 12, 13
		c.GetServiceDebugInfo = 14
	}
	return c
}
