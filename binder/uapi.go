package binder

// Numbers and layouts from the kernel's UAPI header
// (/usr/include/linux/android/binder.h) for the 64-bit protocol, version 8.
// They are plain data, so parcels can use them on any OS; uapi_test.go holds
// the values checked once against the header with a C program.

// Object types (B_PACK_CHARS(c1, c2, c3, B_TYPE_LARGE)).
const (
	TypeBinder     uint32 = 's'<<24 | 'b'<<16 | '*'<<8 | 0x85
	TypeWeakBinder uint32 = 'w'<<24 | 'b'<<16 | '*'<<8 | 0x85
	TypeHandle     uint32 = 's'<<24 | 'h'<<16 | '*'<<8 | 0x85
	TypeWeakHandle uint32 = 'w'<<24 | 'h'<<16 | '*'<<8 | 0x85
	TypeFD         uint32 = 'f'<<24 | 'd'<<16 | '*'<<8 | 0x85
	TypeFDA        uint32 = 'f'<<24 | 'd'<<16 | 'a'<<8 | 0x85
	TypePtr        uint32 = 'p'<<24 | 't'<<16 | '*'<<8 | 0x85
)

// flat_binder_object flags.
const (
	FlagPriorityMask   uint32 = 0xff
	FlagAcceptsFDs     uint32 = 0x100
	FlagTxnSecurityCtx uint32 = 0x1000
)

// FlagBufferHasParent is BINDER_BUFFER_FLAG_HAS_PARENT: a buffer object
// whose address the driver writes into its parent buffer.
const FlagBufferHasParent uint32 = 0x01

// Transaction flags (enum transaction_flags).
const (
	FlagOneWay     uint32 = 0x01
	FlagRootObject uint32 = 0x04
	FlagStatusCode uint32 = 0x08
	FlagAcceptFDs  uint32 = 0x10
	FlagClearBuf   uint32 = 0x20
)

// ProtocolVersion is BINDER_CURRENT_PROTOCOL_VERSION without BINDER_IPC_32BIT.
const ProtocolVersion = 8

// Sizes of the 64-bit UAPI structures in bytes.
const (
	sizeWriteRead         = 48 // binder_write_read
	sizeTransactionData   = 64 // binder_transaction_data
	sizeTransactionSecCtx = 72 // binder_transaction_data_secctx
	sizeTransactionSG     = 72 // binder_transaction_data_sg
	sizeFlatObject        = 24 // flat_binder_object, binder_fd_object
	sizeFDArrayObject     = 32 // binder_fd_array_object
	sizeBufferObject      = 40 // binder_buffer_object
	sizePtrCookie         = 16 // binder_ptr_cookie
	sizeHandleCookie      = 12 // binder_handle_cookie (packed)
	sizeVersion           = 4  // binder_version
)

const (
	iocNone  = 0
	iocWrite = 1
	iocRead  = 2
)

// ioc computes _IOC(dir, type, nr, size) as asm-generic/ioctl.h does.
func ioc(dir, typ, nr, size uint32) uint32 {
	return dir<<30 | size<<16 | typ<<8 | nr
}

// ioctl requests.
var (
	iocWriteRead        = ioc(iocRead|iocWrite, 'b', 1, sizeWriteRead)
	iocSetMaxThreads    = ioc(iocWrite, 'b', 5, 4)
	iocSetContextMgr    = ioc(iocWrite, 'b', 7, 4)
	iocThreadExit       = ioc(iocWrite, 'b', 8, 4)
	iocVersion          = ioc(iocRead|iocWrite, 'b', 9, sizeVersion)
	iocSetContextMgrExt = ioc(iocWrite, 'b', 13, sizeFlatObject)
)

// Driver return commands (BR_*).
var (
	brError               = ioc(iocRead, 'r', 0, 4)
	brOK                  = ioc(iocNone, 'r', 1, 0)
	brTransactionSecCtx   = ioc(iocRead, 'r', 2, sizeTransactionSecCtx)
	brTransaction         = ioc(iocRead, 'r', 2, sizeTransactionData)
	brReply               = ioc(iocRead, 'r', 3, sizeTransactionData)
	brAcquireResult       = ioc(iocRead, 'r', 4, 4)
	brDeadReply           = ioc(iocNone, 'r', 5, 0)
	brTransactionComplete = ioc(iocNone, 'r', 6, 0)
	brIncRefs             = ioc(iocRead, 'r', 7, sizePtrCookie)
	brAcquire             = ioc(iocRead, 'r', 8, sizePtrCookie)
	brRelease             = ioc(iocRead, 'r', 9, sizePtrCookie)
	brDecRefs             = ioc(iocRead, 'r', 10, sizePtrCookie)
	brAttemptAcquire      = ioc(iocRead, 'r', 11, 24) // binder_pri_ptr_cookie
	brNoop                = ioc(iocNone, 'r', 12, 0)
	brSpawnLooper         = ioc(iocNone, 'r', 13, 0)
	brFinished            = ioc(iocNone, 'r', 14, 0)
	brDeadBinder          = ioc(iocRead, 'r', 15, 8)
	brClearDeathNotifDone = ioc(iocRead, 'r', 16, 8)
	brFailedReply         = ioc(iocNone, 'r', 17, 0)
	brFrozenReply         = ioc(iocNone, 'r', 18, 0)
	brOnewaySpamSuspect   = ioc(iocNone, 'r', 19, 0)
)

// Driver commands (BC_*).
var (
	bcTransaction       = ioc(iocWrite, 'c', 0, sizeTransactionData)
	bcReply             = ioc(iocWrite, 'c', 1, sizeTransactionData)
	bcFreeBuffer        = ioc(iocWrite, 'c', 3, 8)
	bcIncRefs           = ioc(iocWrite, 'c', 4, 4)
	bcAcquire           = ioc(iocWrite, 'c', 5, 4)
	bcRelease           = ioc(iocWrite, 'c', 6, 4)
	bcDecRefs           = ioc(iocWrite, 'c', 7, 4)
	bcIncRefsDone       = ioc(iocWrite, 'c', 8, sizePtrCookie)
	bcAcquireDone       = ioc(iocWrite, 'c', 9, sizePtrCookie)
	bcRegisterLooper    = ioc(iocNone, 'c', 11, 0)
	bcEnterLooper       = ioc(iocNone, 'c', 12, 0)
	bcExitLooper        = ioc(iocNone, 'c', 13, 0)
	bcRequestDeathNotif = ioc(iocWrite, 'c', 14, sizeHandleCookie)
	bcClearDeathNotif   = ioc(iocWrite, 'c', 15, sizeHandleCookie)
	bcDeadBinderDone    = ioc(iocWrite, 'c', 16, 8)
	bcTransactionSG     = ioc(iocWrite, 'c', 17, sizeTransactionSG)
	bcReplySG           = ioc(iocWrite, 'c', 18, sizeTransactionSG)
)

// commandName names a BC_ or BR_ code for error messages.
func commandName(cmd uint32) string {
	switch cmd {
	case brError:
		return "BR_ERROR"
	case brOK:
		return "BR_OK"
	case brTransactionSecCtx:
		return "BR_TRANSACTION_SEC_CTX"
	case brTransaction:
		return "BR_TRANSACTION"
	case brReply:
		return "BR_REPLY"
	case brAcquireResult:
		return "BR_ACQUIRE_RESULT"
	case brDeadReply:
		return "BR_DEAD_REPLY"
	case brTransactionComplete:
		return "BR_TRANSACTION_COMPLETE"
	case brIncRefs:
		return "BR_INCREFS"
	case brAcquire:
		return "BR_ACQUIRE"
	case brRelease:
		return "BR_RELEASE"
	case brDecRefs:
		return "BR_DECREFS"
	case brAttemptAcquire:
		return "BR_ATTEMPT_ACQUIRE"
	case brNoop:
		return "BR_NOOP"
	case brSpawnLooper:
		return "BR_SPAWN_LOOPER"
	case brFinished:
		return "BR_FINISHED"
	case brDeadBinder:
		return "BR_DEAD_BINDER"
	case brClearDeathNotifDone:
		return "BR_CLEAR_DEATH_NOTIFICATION_DONE"
	case brFailedReply:
		return "BR_FAILED_REPLY"
	case brFrozenReply:
		return "BR_FROZEN_REPLY"
	case brOnewaySpamSuspect:
		return "BR_ONEWAY_SPAM_SUSPECT"
	case bcTransaction:
		return "BC_TRANSACTION"
	case bcReply:
		return "BC_REPLY"
	case bcFreeBuffer:
		return "BC_FREE_BUFFER"
	case bcIncRefs:
		return "BC_INCREFS"
	case bcAcquire:
		return "BC_ACQUIRE"
	case bcRelease:
		return "BC_RELEASE"
	case bcDecRefs:
		return "BC_DECREFS"
	case bcIncRefsDone:
		return "BC_INCREFS_DONE"
	case bcAcquireDone:
		return "BC_ACQUIRE_DONE"
	case bcRegisterLooper:
		return "BC_REGISTER_LOOPER"
	case bcEnterLooper:
		return "BC_ENTER_LOOPER"
	case bcExitLooper:
		return "BC_EXIT_LOOPER"
	case bcRequestDeathNotif:
		return "BC_REQUEST_DEATH_NOTIFICATION"
	case bcClearDeathNotif:
		return "BC_CLEAR_DEATH_NOTIFICATION"
	case bcDeadBinderDone:
		return "BC_DEAD_BINDER_DONE"
	case bcTransactionSG:
		return "BC_TRANSACTION_SG"
	case bcReplySG:
		return "BC_REPLY_SG"
	}
	return "unknown command"
}

// writeRead is struct binder_write_read.
type writeRead struct {
	WriteSize     uint64
	WriteConsumed uint64
	WriteBuffer   uint64
	ReadSize      uint64
	ReadConsumed  uint64
	ReadBuffer    uint64
}

// transactionData is struct binder_transaction_data. Target holds the
// handle (low 32 bits) for commands and the node pointer for returns.
type transactionData struct {
	Target      uint64
	Cookie      uint64
	Code        uint32
	Flags       uint32
	SenderPID   int32
	SenderEUID  uint32
	DataSize    uint64
	OffsetsSize uint64
	Buffer      uint64
	Offsets     uint64
}

// flatObject is struct flat_binder_object (and binder_fd_object, which has
// the same layout with the fd in the low 32 bits of Binder).
type flatObject struct {
	Type   uint32
	Flags  uint32
	Binder uint64
	Cookie uint64
}

// fdArrayObject is struct binder_fd_array_object.
type fdArrayObject struct {
	Type         uint32
	Pad          uint32
	NumFDs       uint64
	Parent       uint64
	ParentOffset uint64
}

// bufferObject is struct binder_buffer_object.
type bufferObject struct {
	Type         uint32
	Flags        uint32
	Buffer       uint64
	Length       uint64
	Parent       uint64
	ParentOffset uint64
}

// ptrCookie is struct binder_ptr_cookie.
type ptrCookie struct {
	Ptr    uint64
	Cookie uint64
}

// objectSize is the size of the object of a given type in a parcel, or 0 for
// a type the kernel does not know.
func objectSize(typ uint32) int {
	switch typ {
	case TypeBinder, TypeWeakBinder, TypeHandle, TypeWeakHandle, TypeFD:
		return sizeFlatObject
	case TypeFDA:
		return sizeFDArrayObject
	case TypePtr:
		return sizeBufferObject
	}
	return 0
}
