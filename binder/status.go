package binder

import (
	"errors"
	"fmt"
)

// Exception codes of binder::Status (include/binder/Status.h; the same
// values in lineage-18.1 to 21.0).
const (
	ExNone                 int32 = 0
	ExSecurity             int32 = -1
	ExBadParcelable        int32 = -2
	ExIllegalArgument      int32 = -3
	ExNullPointer          int32 = -4
	ExIllegalState         int32 = -5
	ExNetworkMainThread    int32 = -6
	ExUnsupportedOperation int32 = -7
	ExServiceSpecific      int32 = -8
	ExParcelable           int32 = -9
	ExHasReplyHeader       int32 = -128
	ExTransactionFailed    int32 = -129
)

// Exception is an AIDL exception carried in a reply parcel.
type Exception struct {
	Code            int32
	Message         string
	ServiceSpecific int32 // the error code of ExServiceSpecific
}

func (e *Exception) Error() string {
	name := map[int32]string{
		ExSecurity: "SecurityException", ExBadParcelable: "BadParcelableException",
		ExIllegalArgument: "IllegalArgumentException", ExNullPointer: "NullPointerException",
		ExIllegalState: "IllegalStateException", ExNetworkMainThread: "NetworkOnMainThreadException",
		ExUnsupportedOperation: "UnsupportedOperationException", ExServiceSpecific: "ServiceSpecificException",
		ExParcelable: "ParcelableException",
	}[e.Code]
	if name == "" {
		name = fmt.Sprintf("exception %d", e.Code)
	}
	if e.Code == ExServiceSpecific {
		return fmt.Sprintf("binder: %s (%d): %s", name, e.ServiceSpecific, e.Message)
	}
	return fmt.Sprintf("binder: %s: %s", name, e.Message)
}

// WriteNoException appends the EX_NONE status header of a successful reply.
func (p *Parcel) WriteNoException() { p.WriteInt32(ExNone) }

// WriteException appends an exception the way Status::writeToParcel does,
// the same in every release (Status.cpp, lineage-17.1 to 21.0): code,
// message as String16, an empty stack-trace header (0), then the
// service-specific code or an empty parcelable blob (0) where the code
// needs one.
func (p *Parcel) WriteException(e *Exception) {
	if e == nil || e.Code == ExNone {
		p.WriteNoException()
		return
	}
	p.WriteInt32(e.Code)
	p.WriteString16(e.Message)
	p.WriteInt32(0)
	switch e.Code {
	case ExServiceSpecific:
		p.WriteInt32(e.ServiceSpecific)
	case ExParcelable:
		p.WriteInt32(0)
	}
}

// SecurityReply returns a reply parcel carrying a SecurityException.
func SecurityReply(rel Release, message string) *Parcel {
	p := NewParcel(rel)
	p.WriteException(&Exception{Code: ExSecurity, Message: message})
	return p
}

// ReadException reads a reply's status header like the release's
// Status::readFromParcel: nil for EX_NONE (skipping an EX_HAS_REPLY_HEADER
// block), an *Exception for an exception, or a malformed-parcel error.
// Two details differ by release (Status.cpp): a null message is
// UNEXPECTED_NULL up to Android 12 (readString16 into a String16) and an
// empty message from 13 on (std::optional<String16>); the remote stack
// trace's size is counted from after its size word up to Android 13 and
// from the size word itself in 14 (remote_start in lineage-21.0).
func (p *Parcel) ReadException() error {
	code, err := p.ReadInt32()
	if err != nil {
		return err
	}
	if code == ExHasReplyHeader {
		start := p.pos
		size, err := p.ReadInt32()
		if err != nil {
			return err
		}
		// the size counts its own 4 bytes
		if size < 4 || int(size) > len(p.data)-start {
			return p.errAt("reply header", fmt.Sprintf("size %d", size))
		}
		if err := p.SetPosition(start + pad4(int(size))); err != nil {
			return err
		}
		return nil
	}
	if code == ExNone {
		return nil
	}
	e := &Exception{Code: code}
	msg, ok, err := p.ReadNullableString16()
	if err != nil {
		return err
	}
	if !ok && p.rel < Android13 {
		return fmt.Errorf("binder: read exception message at %d: %w", p.pos-4, ErrUnexpectedNull)
	}
	e.Message = msg
	start := p.pos
	trace, err := p.ReadInt32()
	if err != nil {
		return err
	}
	// Android 14 measures the trace from its size word, earlier releases
	// from the word after it.
	from := p.pos
	if p.rel >= Android14 {
		from = start
	}
	if trace < 0 || int(trace) > len(p.data)-from {
		return p.errAt("stack trace header", fmt.Sprintf("size %d", trace))
	}
	if trace != 0 {
		if err := p.SetPosition(from + pad4(int(trace))); err != nil {
			return err
		}
	}
	switch code {
	case ExServiceSpecific:
		if e.ServiceSpecific, err = p.ReadInt32(); err != nil {
			return err
		}
	case ExParcelable:
		start := p.pos
		size, err := p.ReadInt32()
		if err != nil {
			return err
		}
		if size < 0 || int(size) > len(p.data)-start {
			return p.errAt("parcelable exception", fmt.Sprintf("size %d", size))
		}
		if size >= 4 {
			if err := p.SetPosition(start + pad4(int(size))); err != nil {
				return err
			}
		}
	}
	return e
}

// Status is a libbinder status_t returned by the driver layer for a call
// that failed below AIDL: the reply carried TF_STATUS_CODE, or the handler
// returned one.
type Status int32

// status_t values (utils/Errors.h, Linux errno numbers).
const (
	StatusOK                 Status = 0
	StatusUnknownError       Status = -2147483648
	StatusNoMemory           Status = -12
	StatusInvalidOperation   Status = -38
	StatusBadValue           Status = -22
	StatusBadType            Status = -2147483647
	StatusNameNotFound       Status = -2
	StatusPermissionDenied   Status = -1
	StatusNoInit             Status = -19
	StatusDeadObject         Status = -32
	StatusFailedTransaction  Status = -2147483646
	StatusUnknownTransaction Status = -74
	StatusFDsNotAllowed      Status = -2147483641
	StatusUnexpectedNull     Status = -2147483640
)

func (s Status) Error() string {
	name := map[Status]string{
		StatusUnknownError: "UNKNOWN_ERROR", StatusNoMemory: "NO_MEMORY",
		StatusInvalidOperation: "INVALID_OPERATION", StatusBadValue: "BAD_VALUE",
		StatusBadType: "BAD_TYPE", StatusNameNotFound: "NAME_NOT_FOUND",
		StatusPermissionDenied: "PERMISSION_DENIED", StatusNoInit: "NO_INIT",
		StatusDeadObject: "DEAD_OBJECT", StatusFailedTransaction: "FAILED_TRANSACTION",
		StatusUnknownTransaction: "UNKNOWN_TRANSACTION", StatusFDsNotAllowed: "FDS_NOT_ALLOWED",
		StatusUnexpectedNull: "UNEXPECTED_NULL",
	}[s]
	if name == "" {
		name = "status"
	}
	return fmt.Sprintf("binder: %s (%d)", name, int32(s))
}

// statusOf maps a handler's error to the status_t sent back with
// TF_STATUS_CODE.
func statusOf(err error) Status {
	var s Status
	if errors.As(err, &s) {
		return s
	}
	if errors.Is(err, ErrBadParcel) || errors.Is(err, ErrUnexpectedNull) || errors.Is(err, ErrWrongInterface) {
		return StatusBadValue
	}
	return StatusUnknownError
}

// asStatus finds the status_t an error carries.
func asStatus(err error) (Status, bool) {
	var s Status
	if err != nil && errors.As(err, &s) {
		return s, true
	}
	return 0, false
}
