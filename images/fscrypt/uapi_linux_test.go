package fscrypt

import (
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The numbers on the right were printed by a C program compiled against
// /usr/include/linux/fscrypt.h (kernel 6.18 headers, x86-64) with sizeof,
// offsetof and the FS_IOC_* macros.
func TestUAPILayout(t *testing.T) {
	var add unix.FscryptAddKeyArg
	var rm unix.FscryptRemoveKeyArg
	var st unix.FscryptGetKeyStatusArg
	for _, tc := range []struct {
		name      string
		got, want uintptr
	}{
		{"sizeof(struct fscrypt_policy_v2)", unsafe.Sizeof(unix.FscryptPolicyV2{}), 24},
		{"sizeofPolicyV2", sizeofPolicyV2, 24},
		{"sizeof(struct fscrypt_get_policy_ex_arg)", unsafe.Sizeof(unix.FscryptGetPolicyExArg{}), 32},
		{"sizeof(struct fscrypt_key_specifier)", unsafe.Sizeof(unix.FscryptKeySpecifier{}), 40},
		{"sizeof(struct fscrypt_add_key_arg)", unsafe.Sizeof(add), 80},
		{"sizeofAddKeyArg", sizeofAddKeyArg, 80},
		{"offsetof(fscrypt_add_key_arg, raw_size)", unsafe.Offsetof(add.Raw_size), 40},
		{"offsetof(fscrypt_add_key_arg, key_id)", unsafe.Offsetof(add.Key_id), 44},
		{"sizeof(struct fscrypt_remove_key_arg)", unsafe.Sizeof(rm), 64},
		{"sizeofRemoveKeyArg", sizeofRemoveKeyArg, 64},
		{"offsetof(fscrypt_remove_key_arg, removal_status_flags)", unsafe.Offsetof(rm.Removal_status_flags), 40},
		{"sizeof(struct fscrypt_get_key_status_arg)", unsafe.Sizeof(st), 128},
		{"sizeofKeyStatusArg", sizeofKeyStatusArg, 128},
		{"offsetof(fscrypt_get_key_status_arg, status)", unsafe.Offsetof(st.Status), 64},
		{"offsetof(fscrypt_get_key_status_arg, user_count)", unsafe.Offsetof(st.User_count), 72},
		{"sizeof(struct loop_config)", unsafe.Sizeof(unix.LoopConfig{}), 304},
		{"sizeof(struct loop_info64)", unsafe.Sizeof(unix.LoopInfo64{}), 232},
		{"FS_IOC_SET_ENCRYPTION_POLICY", unix.FS_IOC_SET_ENCRYPTION_POLICY, 0x800c6613},
		{"FS_IOC_GET_ENCRYPTION_POLICY_EX", unix.FS_IOC_GET_ENCRYPTION_POLICY_EX, 0xc0096616},
		{"FS_IOC_ADD_ENCRYPTION_KEY", unix.FS_IOC_ADD_ENCRYPTION_KEY, 0xc0506617},
		{"FS_IOC_REMOVE_ENCRYPTION_KEY", unix.FS_IOC_REMOVE_ENCRYPTION_KEY, 0xc0406618},
		{"FS_IOC_REMOVE_ENCRYPTION_KEY_ALL_USERS", unix.FS_IOC_REMOVE_ENCRYPTION_KEY_ALL_USERS, 0xc0406619},
		{"FS_IOC_GET_ENCRYPTION_KEY_STATUS", unix.FS_IOC_GET_ENCRYPTION_KEY_STATUS, 0xc080661a},
		{"LOOP_CONFIGURE", unix.LOOP_CONFIGURE, 0x4c0a},
		{"LOOP_CTL_GET_FREE", unix.LOOP_CTL_GET_FREE, 0x4c82},
		{"LO_FLAGS_AUTOCLEAR", unix.LO_FLAGS_AUTOCLEAR, 4},
		{"FSCRYPT_MODE_AES_256_XTS", uintptr(policies[ModeAES].contents), 1},
		{"FSCRYPT_MODE_AES_256_CTS", uintptr(policies[ModeAES].filenames), 4},
		{"FSCRYPT_POLICY_FLAGS_PAD_32", uintptr(policies[ModeAES].flags), 3},
		{"FSCRYPT_MODE_ADIANTUM", uintptr(policies[ModeAdiantum].contents), 9},
		{"FSCRYPT_MODE_ADIANTUM (names)", uintptr(policies[ModeAdiantum].filenames), 9},
		{"FSCRYPT_POLICY_FLAGS_PAD_32 (Adiantum)", uintptr(policies[ModeAdiantum].flags), 3},
		{"sizeof(struct fscrypt_policy_v1)", unsafe.Sizeof(unix.FscryptPolicyV1{}), 12},
		{"sizeofPolicyV1", sizeofPolicyV1, 12},
		{"FSCRYPT_POLICY_V2", unix.FSCRYPT_POLICY_V2, 2},
		{"FSCRYPT_KEY_SPEC_TYPE_IDENTIFIER", unix.FSCRYPT_KEY_SPEC_TYPE_IDENTIFIER, 2},
		{"FSCRYPT_KEY_REMOVAL_STATUS_FLAG_FILES_BUSY", unix.FSCRYPT_KEY_REMOVAL_STATUS_FLAG_FILES_BUSY, 1},
		{"FSCRYPT_KEY_REMOVAL_STATUS_FLAG_OTHER_USERS", unix.FSCRYPT_KEY_REMOVAL_STATUS_FLAG_OTHER_USERS, 2},
		{"FSCRYPT_KEY_STATUS_ABSENT", uintptr(KeyAbsent), 1},
		{"FSCRYPT_KEY_STATUS_PRESENT", uintptr(KeyPresent), 2},
		{"FSCRYPT_KEY_STATUS_INCOMPLETELY_REMOVED", uintptr(KeyIncompletelyRemoved), 3},
		{"FSCRYPT_MAX_KEY_SIZE", unix.FSCRYPT_MAX_KEY_SIZE, KeySize},
		{"FSCRYPT_KEY_IDENTIFIER_SIZE", unix.FSCRYPT_KEY_IDENTIFIER_SIZE, uintptr(len(Identifier{}))},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %#x, UAPI says %#x", tc.name, tc.got, tc.want)
		}
	}
}
