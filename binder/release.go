package binder

import (
	"fmt"
	"strings"
)

// Release selects the AOSP libbinder wire format that parcels follow. The
// releases differ in small ways, all taken from AOSP's
// frameworks/native/libs/binder as LineageOS keeps it (branch lineage-17.1
// is Android 10, 18.1 is 11, 19.1 is 12, 20.0 is 13, 21.0 is 14; Android 10
// also from Debian's android-platform-frameworks-native 10.0.0+r36):
//
//   - Android 10 (Parcel.cpp): the interface token is the strict-mode
//     word, the work-source word and the descriptor; binder objects are
//     followed by nothing; an empty String8 is only its length. The service
//     manager is the C one (cmds/servicemanager/service_manager.c).
//   - Android 11 (lineage-18.1): the token gains a 'SYST' header word
//     before the descriptor; every strong binder object (null included) is
//     followed by an int32 stability word, the Stability::Level itself
//     (Parcel::finishFlattenBinder, Stability.h); String8 is written like
//     String16 (length, bytes, NUL, padding) and may be null (-1). The
//     service manager speaks the AIDL IServiceManager.
//   - Android 12 (lineage-19.1): as 11, but the stability word is a
//     Stability::Category: {uint8 version, uint8 reserved[2], Level level}
//     reinterpreted as an int32, so version 1 sits in the low byte and the
//     level in the high byte (SYSTEM is 0x0c000001); a word of version 0
//     is refused (BAD_TYPE). IServiceManager gains getDeclaredInstances,
//     updatableViaApex and getServiceDebugInfo.
//   - Android 13 (lineage-20.0): the stability word is the Level again, now
//     an int16 (Stability::getRepr; a reader keeps the low 16 bits); a
//     handle or null object carries no FLAT_BINDER_FLAG_ACCEPTS_FDS
//     (Parcel::flattenBinder); an exception's message may be null.
//     IServiceManager gains getConnectionInfo.
//   - Android 14 (lineage-21.0): as 13, but fd objects carry flags 0
//     (Parcel::writeFileDescriptor), a reply's remote stack trace is
//     skipped from the start of its size word (Status::readFromParcel), and
//     IServiceManager gains getUpdatableNames.
type Release int

// The releases this package speaks.
const (
	Android10 Release = 10
	Android11 Release = 11
	Android12 Release = 12
	Android13 Release = 13
	Android14 Release = 14
)

// Releases lists every release this package speaks, oldest first.
func Releases() []Release {
	return []Release{Android10, Android11, Android12, Android13, Android14}
}

// ParseRelease reads "10" to "14", or "android10" to "android14", as a Release.
func ParseRelease(s string) (Release, error) {
	switch strings.TrimPrefix(strings.ToLower(strings.TrimSpace(s)), "android") {
	case "10":
		return Android10, nil
	case "11":
		return Android11, nil
	case "12":
		return Android12, nil
	case "13":
		return Android13, nil
	case "14":
		return Android14, nil
	}
	return 0, fmt.Errorf("binder: unsupported Android release %q (want android10, android11, android12, android13 or android14)", s)
}

func (r Release) String() string { return fmt.Sprintf("android%d", int(r)) }

func (r Release) valid() bool { return r >= Android10 && r <= Android14 }

// hasStability reports whether binder objects are followed by a stability word.
func (r Release) hasStability() bool { return r >= Android11 }

// hasHeaderWord reports whether interface tokens carry the 'SYST' word.
func (r Release) hasHeaderWord() bool { return r >= Android11 }

// binderFlags are the flags of a handle or null binder object:
// Parcel::flattenBinder sets FLAT_BINDER_FLAG_ACCEPTS_FDS on every object up
// to lineage-19.1 (Android 12) and only on local binders from lineage-20.0
// (Android 13) on; schedFlags is added whenever background scheduling is
// not disabled (the default).
func (r Release) binderFlags() uint32 {
	if r >= Android13 {
		return schedFlags
	}
	return FlagAcceptsFDs | schedFlags
}

// fdFlags are the flags of an fd object: 0x7f | FLAT_BINDER_FLAG_ACCEPTS_FDS
// in Parcel::writeFileDescriptor up to lineage-20.0 (Android 13), 0 in
// lineage-21.0 (Android 14).
func (r Release) fdFlags() uint32 {
	if r >= Android14 {
		return 0
	}
	return 0x7f | FlagAcceptsFDs
}

// Stability levels carried after binder objects from Android 11 on
// (internal::Stability::Level in Stability.h: an int32_t in lineage-18.1,
// a uint8_t inside the Category in lineage-19.1, an int16_t from
// lineage-20.0 on, with the same values throughout). Object.Stability and
// WriteHandleStability use these levels in every release; the parcel
// writes and reads them in the release's encoding (StabilityWord).
const (
	StabilityUndeclared int32 = 0
	StabilityVendor     int32 = 0b000011
	StabilitySystem     int32 = 0b001100
	StabilityVINTF      int32 = 0b111111
)

// stabilityCategoryVersion is kBinderWireFormatVersion of Android 12's
// Stability.cpp (lineage-19.1), the version byte of every Category it
// writes; kBinderWireFormatOldest, the least it accepts, is 1 as well.
const stabilityCategoryVersion = 1

// StabilityWord is the int32 that follows a strong binder of stability
// level in r: the level on Android 11 (Stability::get), the Category
// {version 1, reserved 0, 0, level} as a little-endian int32 on Android 12
// (Stability::Category::repr), the level as an int16 widened to int32 on
// 13 and 14 (Stability::getRepr). Android 10 writes none (0 here).
func (r Release) StabilityWord(level int32) int32 {
	switch {
	case r < Android11:
		return 0
	case r == Android12:
		// Category is {uint8 version; uint8 reserved[2]; Level level}
		// read as one int32 on a little-endian CPU (every Android ABI).
		return int32(uint32(uint8(level))<<24 | stabilityCategoryVersion)
	case r >= Android13:
		return int32(int16(level))
	}
	return level
}

// stabilityLevel decodes a received stability word of r into its level.
// Android 12 refuses a Category older than its oldest wire format version
// (Stability::setRepr in lineage-19.1 returns BAD_TYPE), which is also what
// an Android 11 word (a bare level, version byte 0 for null binders)
// looks like to it; 13 and 14 read only the low 16 bits
// (static_cast<int16_t> in Parcel::finishUnflattenBinder).
func (r Release) stabilityLevel(word int32) (int32, error) {
	switch {
	case r == Android12:
		if v := uint8(uint32(word)); v < stabilityCategoryVersion {
			return 0, fmt.Errorf("stability category %#08x has wire format version %d, want %d or later", uint32(word), v, stabilityCategoryVersion)
		}
		return int32(uint8(uint32(word) >> 24)), nil
	case r >= Android13:
		return int32(int16(word)), nil
	}
	return word, nil
}

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
// uses the C service_manager.c (names as String16); 11 to 14 the AIDL
// interface in libs/binder/aidl/android/os/IServiceManager.aidl (names as
// @utf8InCpp strings, which travel as String16 too), whose codes are
// FIRST_CALL_TRANSACTION (1) plus the method's index in the file.
type ServiceManagerCodes struct {
	GetService, CheckService, AddService, ListServices           uint32
	RegisterForNotifications, UnregisterForNotifications         uint32
	IsDeclared, GetDeclaredInstances, UpdatableViaApex           uint32
	GetUpdatableNames, GetConnectionInfo, RegisterClientCallback uint32
	TryUnregisterService, GetServiceDebugInfo                    uint32
}

// ServiceManager returns the service manager's codes in r.
func (r Release) ServiceManager() ServiceManagerCodes {
	// GET_SERVICE_TRANSACTION .. LIST_SERVICES_TRANSACTION of
	// service_manager.c (Android 10) and the first four AIDL methods of
	// every later release alike.
	c := ServiceManagerCodes{GetService: 1, CheckService: 2, AddService: 3, ListServices: 4}
	if r >= Android11 {
		// registerForNotifications, unregisterForNotifications and
		// isDeclared follow in every IServiceManager.aidl since lineage-18.1.
		c.RegisterForNotifications, c.UnregisterForNotifications, c.IsDeclared = 5, 6, 7
	}
	switch r {
	case Android11: // IServiceManager.aidl, lineage-18.1
		c.RegisterClientCallback, c.TryUnregisterService = 8, 9
	case Android12: // IServiceManager.aidl, lineage-19.1
		c.GetDeclaredInstances, c.UpdatableViaApex = 8, 9
		c.RegisterClientCallback, c.TryUnregisterService, c.GetServiceDebugInfo = 10, 11, 12
	case Android13: // IServiceManager.aidl, lineage-20.0
		c.GetDeclaredInstances, c.UpdatableViaApex, c.GetConnectionInfo = 8, 9, 10
		c.RegisterClientCallback, c.TryUnregisterService, c.GetServiceDebugInfo = 11, 12, 13
	case Android14: // IServiceManager.aidl, lineage-21.0
		c.GetDeclaredInstances, c.UpdatableViaApex, c.GetUpdatableNames = 8, 9, 10
		c.GetConnectionInfo, c.RegisterClientCallback, c.TryUnregisterService = 11, 12, 13
		c.GetServiceDebugInfo = 14
	}
	return c
}
