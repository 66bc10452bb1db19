package binder

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Scatter-gather on the driver: sending a parcel with buffer objects as
// BC_TRANSACTION_SG / BC_REPLY_SG, and receiving buffers and fd arrays.

// sgCommand is the _SG form of a transaction or reply command.
func sgCommand(cmd uint32) uint32 {
	switch cmd {
	case bcTransaction:
		return bcTransactionSG
	case bcReply:
		return bcReplySG
	}
	return cmd
}

// wireParcel returns what the driver reads for p: when p has buffer
// objects, a copy of its data in which each names the address of its
// contents (the driver copies them and writes the receiver's addresses into
// the parents' pointer slots and the objects), with the buffers' total
// size; otherwise p itself. The result must stay reachable until the
// command is written (thread.keep).
func wireParcel(p *Parcel) (w *Parcel, buffersSize uint64, sg bool) {
	if len(p.bufs) == 0 {
		return p, 0, false
	}
	w = &Parcel{rel: p.rel, data: append([]byte(nil), p.data...), offsets: p.offsets, bufs: p.bufs}
	for i := range w.offsets {
		if w.objType(i) != TypePtr {
			continue
		}
		var addr uint64
		if b := w.bufs[i]; len(b) > 0 {
			addr = uint64(uintptr(unsafe.Pointer(&b[0])))
		}
		ne.PutUint64(w.data[w.offsets[i]+8:], addr)
	}
	return w, p.buffersSize(), true
}

// receiveSG copies the buffers of a received parcel out of the mapping and
// replaces the fds the driver installed for its fd arrays with duplicates:
// the driver closes its own when the buffer is freed
// (binder_transaction_buffer_release). On error the caller frees the
// buffer, which closes the driver's fds; the duplicates made so far are
// closed here.
func (t *thread) receiveSG(p *Parcel) error {
	if err := p.loadBuffers(t.c.view); err != nil {
		return err
	}
	var dups []int
	err := p.fdArraySlots(func(buf []byte, at int) error {
		fd := int(int32(ne.Uint32(buf[at:])))
		nfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("duplicate fd %d of an fd array: %w", fd, err)
		}
		dups = append(dups, nfd)
		ne.PutUint32(buf[at:], uint32(nfd))
		return nil
	})
	if err != nil {
		for _, fd := range dups {
			unix.Close(fd)
		}
		p.bufs = nil
		return err
	}
	return nil
}
