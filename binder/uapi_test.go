package binder

import (
	"testing"
	"unsafe"
)

// The expected numbers were printed by a C program compiled against
// /usr/include/linux/android/binder.h (x86-64, 64-bit protocol 8).
func TestUAPIMatchesKernelHeader(t *testing.T) {
	sizes := []struct {
		name string
		got  uintptr
		want uintptr
	}{
		{"binder_write_read", unsafe.Sizeof(writeRead{}), 48},
		{"binder_transaction_data", unsafe.Sizeof(transactionData{}), 64},
		{"flat_binder_object", unsafe.Sizeof(flatObject{}), 24},
		{"binder_fd_array_object", unsafe.Sizeof(fdArrayObject{}), 32},
		{"binder_buffer_object", unsafe.Sizeof(bufferObject{}), 40},
		{"binder_ptr_cookie", unsafe.Sizeof(ptrCookie{}), 16},
		{"offsetof(binder_transaction_data, code)", unsafe.Offsetof(transactionData{}.Code), 16},
		{"offsetof(binder_transaction_data, data_size)", unsafe.Offsetof(transactionData{}.DataSize), 32},
		{"offsetof(binder_transaction_data, data)", unsafe.Offsetof(transactionData{}.Buffer), 48},
		{"sizeWriteRead", sizeWriteRead, 48},
		{"sizeTransactionData", sizeTransactionData, 64},
		{"sizeTransactionSecCtx", sizeTransactionSecCtx, 72},
		{"sizeTransactionSG", sizeTransactionSG, 72},
		{"sizeFlatObject", sizeFlatObject, 24},
		{"sizeFDArrayObject", sizeFDArrayObject, 32},
		{"sizeBufferObject", sizeBufferObject, 40},
		{"sizeHandleCookie (packed)", sizeHandleCookie, 12},
	}
	for _, s := range sizes {
		if s.got != s.want {
			t.Errorf("%s = %d, header says %d", s.name, s.got, s.want)
		}
	}

	values := []struct {
		name string
		got  uint32
		want uint32
	}{
		{"BINDER_TYPE_BINDER", TypeBinder, 0x73622a85},
		{"BINDER_TYPE_WEAK_BINDER", TypeWeakBinder, 0x77622a85},
		{"BINDER_TYPE_HANDLE", TypeHandle, 0x73682a85},
		{"BINDER_TYPE_WEAK_HANDLE", TypeWeakHandle, 0x77682a85},
		{"BINDER_TYPE_FD", TypeFD, 0x66642a85},
		{"BINDER_TYPE_FDA", TypeFDA, 0x66646185},
		{"BINDER_TYPE_PTR", TypePtr, 0x70742a85},
		{"BINDER_WRITE_READ", iocWriteRead, 0xc0306201},
		{"BINDER_SET_MAX_THREADS", iocSetMaxThreads, 0x40046205},
		{"BINDER_SET_CONTEXT_MGR", iocSetContextMgr, 0x40046207},
		{"BINDER_THREAD_EXIT", iocThreadExit, 0x40046208},
		{"BINDER_VERSION", iocVersion, 0xc0046209},
		{"BINDER_SET_CONTEXT_MGR_EXT", iocSetContextMgrExt, 0x4018620d},
		{"BR_ERROR", brError, 0x80047200},
		{"BR_OK", brOK, 0x7201},
		{"BR_TRANSACTION_SEC_CTX", brTransactionSecCtx, 0x80487202},
		{"BR_TRANSACTION", brTransaction, 0x80407202},
		{"BR_REPLY", brReply, 0x80407203},
		{"BR_ACQUIRE_RESULT", brAcquireResult, 0x80047204},
		{"BR_DEAD_REPLY", brDeadReply, 0x7205},
		{"BR_TRANSACTION_COMPLETE", brTransactionComplete, 0x7206},
		{"BR_INCREFS", brIncRefs, 0x80107207},
		{"BR_ACQUIRE", brAcquire, 0x80107208},
		{"BR_RELEASE", brRelease, 0x80107209},
		{"BR_DECREFS", brDecRefs, 0x8010720a},
		{"BR_ATTEMPT_ACQUIRE", brAttemptAcquire, 0x8018720b},
		{"BR_NOOP", brNoop, 0x720c},
		{"BR_SPAWN_LOOPER", brSpawnLooper, 0x720d},
		{"BR_FINISHED", brFinished, 0x720e},
		{"BR_DEAD_BINDER", brDeadBinder, 0x8008720f},
		{"BR_CLEAR_DEATH_NOTIFICATION_DONE", brClearDeathNotifDone, 0x80087210},
		{"BR_FAILED_REPLY", brFailedReply, 0x7211},
		{"BR_FROZEN_REPLY", brFrozenReply, 0x7212},
		{"BR_ONEWAY_SPAM_SUSPECT", brOnewaySpamSuspect, 0x7213},
		{"BC_TRANSACTION", bcTransaction, 0x40406300},
		{"BC_REPLY", bcReply, 0x40406301},
		{"BC_FREE_BUFFER", bcFreeBuffer, 0x40086303},
		{"BC_INCREFS", bcIncRefs, 0x40046304},
		{"BC_ACQUIRE", bcAcquire, 0x40046305},
		{"BC_RELEASE", bcRelease, 0x40046306},
		{"BC_DECREFS", bcDecRefs, 0x40046307},
		{"BC_INCREFS_DONE", bcIncRefsDone, 0x40106308},
		{"BC_ACQUIRE_DONE", bcAcquireDone, 0x40106309},
		{"BC_REGISTER_LOOPER", bcRegisterLooper, 0x630b},
		{"BC_ENTER_LOOPER", bcEnterLooper, 0x630c},
		{"BC_EXIT_LOOPER", bcExitLooper, 0x630d},
		{"BC_REQUEST_DEATH_NOTIFICATION", bcRequestDeathNotif, 0x400c630e},
		{"BC_CLEAR_DEATH_NOTIFICATION", bcClearDeathNotif, 0x400c630f},
		{"BC_DEAD_BINDER_DONE", bcDeadBinderDone, 0x40086310},
		{"BC_TRANSACTION_SG", bcTransactionSG, 0x40486311},
		{"BC_REPLY_SG", bcReplySG, 0x40486312},
		{"TF_ONE_WAY", FlagOneWay, 0x1},
		{"TF_STATUS_CODE", FlagStatusCode, 0x8},
		{"TF_ACCEPT_FDS", FlagAcceptFDs, 0x10},
		{"FLAT_BINDER_FLAG_ACCEPTS_FDS", FlagAcceptsFDs, 0x100},
		{"FLAT_BINDER_FLAG_TXN_SECURITY_CTX", FlagTxnSecurityCtx, 0x1000},
		{"BINDER_CURRENT_PROTOCOL_VERSION", ProtocolVersion, 8},
	}
	for _, v := range values {
		if v.got != v.want {
			t.Errorf("%s = %#x, header says %#x", v.name, v.got, v.want)
		}
	}
}

func TestCommandNamesAreDistinct(t *testing.T) {
	cmds := []uint32{brError, brOK, brTransactionSecCtx, brTransaction, brReply, brDeadReply,
		brTransactionComplete, brIncRefs, brAcquire, brRelease, brDecRefs, brNoop, brSpawnLooper,
		brDeadBinder, brClearDeathNotifDone, brFailedReply, brFrozenReply, bcTransaction, bcReply,
		bcFreeBuffer, bcIncRefs, bcAcquire, bcRelease, bcDecRefs, bcIncRefsDone, bcAcquireDone,
		bcRegisterLooper, bcEnterLooper, bcExitLooper, bcRequestDeathNotif, bcClearDeathNotif,
		bcDeadBinderDone}
	seen := map[string]uint32{}
	for _, c := range cmds {
		n := commandName(c)
		if n == "unknown command" {
			t.Errorf("%#x has no name", c)
		}
		if prev, ok := seen[n]; ok {
			t.Errorf("%#x and %#x are both named %s", prev, c, n)
		}
		seen[n] = c
	}
}
