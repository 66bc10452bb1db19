package binder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Errors of the driver layer; each returned error wraps one of them.
var (
	// ErrClosed is returned by calls on a closed connection.
	ErrClosed = errors.New("binder connection closed")
	// ErrDeadObject: the target died (BR_DEAD_REPLY).
	ErrDeadObject = errors.New("dead object")
	// ErrFailedTransaction: the driver refused the transaction
	// (BR_FAILED_REPLY, BR_FROZEN_REPLY).
	ErrFailedTransaction = errors.New("failed transaction")
	// ErrProtocol: the driver said something this package cannot follow.
	ErrProtocol = errors.New("binder protocol error")
)

// defaultMapSize is libbinder's BINDER_VM_SIZE: 1 MiB minus two pages.
var defaultMapSize = 1<<20 - 2*os.Getpagesize()

// readBufSize holds several commands; a read returns at most one
// transaction, so this never truncates one.
const readBufSize = 512

type options struct {
	maxThreads uint32
	mapSize    int
	log        *slog.Logger
}

// Option configures Open.
type Option func(*options) error

// WithMaxThreads sets how many looper threads the driver may ask this
// process to spawn (default 15, libbinder's DEFAULT_MAX_BINDER_THREADS).
func WithMaxThreads(n int) Option {
	return func(o *options) error {
		if n < 0 || n > 1024 {
			return fmt.Errorf("binder: max threads %d out of range", n)
		}
		o.maxThreads = uint32(n)
		return nil
	}
}

// WithMapSize sets the size of the receive buffer mapping (default 1 MiB
// minus two pages).
func WithMapSize(n int) Option {
	return func(o *options) error {
		if n < os.Getpagesize() || n%os.Getpagesize() != 0 {
			return fmt.Errorf("binder: map size %d is not a positive multiple of the page size", n)
		}
		o.mapSize = n
		return nil
	}
}

// WithLogger sets where the connection reports what it cannot return as an
// error (default: nowhere).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error { o.log = l; return nil }
}

// Conn is an open binder device: one binder process to the driver.
type Conn struct {
	fd   int
	path string
	rel  Release
	mm   []byte
	base uint64
	log  *slog.Logger
	// refusals bounds the log lines callers can cause.
	refusals refusalLog

	mu        sync.Mutex
	nodes     map[uint64]*Node
	nextNode  uint64
	handles   map[uint32]bool // handles this connection holds a strong+weak ref on
	kept      map[uint32]int  // handles a user of the connection keeps: dropHandle leaves them
	deaths    map[uint64]*death
	nextDeath uint64
	pending   []byte // process-wide commands for the next BINDER_WRITE_READ of any thread
	users     int
	loopers   int
	serving   bool
	closing   bool
	idle      chan struct{} // closed when users drops to 0 while closing
}

type death struct {
	handle  uint32
	fn      func()
	cleared bool
}

// Open opens the binder device at path, checks that it speaks protocol 8,
// maps its receive buffer and sets the looper limit. Parcels it receives
// follow rel.
func Open(ctx context.Context, path string, rel Release, opts ...Option) (*Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !rel.valid() {
		return nil, fmt.Errorf("binder: open %s: unsupported release %d", path, int(rel))
	}
	o := options{maxThreads: 15, mapSize: defaultMapSize, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("binder: open %s: %w", path, err)
	}
	var ver int32
	if err := ioctl(fd, iocVersion, unsafe.Pointer(&ver)); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("binder: BINDER_VERSION on %s: %w", path, err)
	}
	if ver != ProtocolVersion {
		unix.Close(fd)
		return nil, fmt.Errorf("binder: %s speaks protocol %d, want %d", path, ver, ProtocolVersion)
	}
	mm, err := unix.Mmap(fd, 0, o.mapSize, unix.PROT_READ, unix.MAP_PRIVATE|unix.MAP_NORESERVE)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("binder: mmap %d bytes of %s: %w", o.mapSize, path, err)
	}
	max := o.maxThreads
	if err := ioctl(fd, iocSetMaxThreads, unsafe.Pointer(&max)); err != nil {
		unix.Munmap(mm)
		unix.Close(fd)
		return nil, fmt.Errorf("binder: BINDER_SET_MAX_THREADS on %s: %w", path, err)
	}
	return &Conn{
		fd: fd, path: path, rel: rel, mm: mm, base: uint64(uintptr(unsafe.Pointer(&mm[0]))), log: o.log,
		nodes: map[uint64]*Node{}, nextNode: 1, handles: map[uint32]bool{}, kept: map[uint32]int{},
		deaths: map[uint64]*death{}, nextDeath: 1,
	}, nil
}

func ioctl(fd int, req uint32, arg unsafe.Pointer) error {
	for {
		_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), uintptr(arg))
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return e
		}
		return nil
	}
}

// Release is the parcel format of the connection.
func (c *Conn) Release() Release { return c.rel }

// NewParcel returns an empty parcel in the connection's format.
func (c *Conn) NewParcel() *Parcel { return NewParcel(c.rel) }

// begin registers a call that uses the fd; end undoes it.
func (c *Conn) begin() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return fmt.Errorf("binder: %s: %w", c.path, ErrClosed)
	}
	c.users++
	return nil
}

func (c *Conn) end() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.users--
	if c.users == 0 && c.closing && c.idle != nil {
		close(c.idle)
		c.idle = nil
	}
}

func (c *Conn) isClosing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closing
}

// wake makes every thread blocked in BINDER_WRITE_READ return: closing any
// descriptor of the device file runs binder_flush, which sets
// looper_need_return on all threads. A dup keeps c.fd itself open.
func (c *Conn) wake() {
	if nfd, err := unix.FcntlInt(uintptr(c.fd), unix.F_DUPFD_CLOEXEC, 0); err == nil {
		unix.Close(nfd)
	}
}

// Close stops the loopers, waits for calls in progress to return (a call
// waiting for a reply returns ErrClosed) and closes the device, which drops
// every reference and node of this process.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return nil
	}
	c.closing = true
	idle := make(chan struct{})
	if c.users == 0 {
		close(idle)
	} else {
		c.idle = idle
	}
	c.mu.Unlock()
	for {
		c.wake()
		select {
		case <-idle:
			err := unix.Munmap(c.mm)
			if cerr := unix.Close(c.fd); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("binder: close %s: %w", c.path, err)
			}
			return nil
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// NewNode registers a local object served by h.
func (c *Conn) NewNode(h Handler) *Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := &Node{conn: c, id: c.nextNode, handler: h}
	c.nextNode++
	c.nodes[n.id] = n
	return n
}

// LocalNode returns the node an incoming TypeBinder object names: the
// driver turns a reference to one of our own nodes back into it.
func (c *Conn) LocalNode(o Object) (*Node, bool) {
	if o.Type != TypeBinder || o.IsNull() {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := c.nodes[o.Cookie]
	return n, ok
}

// BecomeContextManager makes this process the context manager of the
// device (handle 0 for every other process), served by h, taking fds. It
// does not ask the driver for callers' security contexts.
func (c *Conn) BecomeContextManager(ctx context.Context, h Handler) (*Node, error) {
	return c.becomeContextManager(ctx, h, FlagAcceptsFDs)
}

func (c *Conn) becomeContextManager(ctx context.Context, h Handler, flags uint32) (*Node, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := c.begin(); err != nil {
		return nil, err
	}
	defer c.end()
	c.mu.Lock()
	if _, ok := c.nodes[0]; ok {
		c.mu.Unlock()
		return nil, fmt.Errorf("binder: %s: already the context manager", c.path)
	}
	n := &Node{conn: c, id: 0, handler: h}
	c.nodes[0] = n
	c.mu.Unlock()
	obj := flatObject{Type: TypeBinder, Flags: flags}
	err := ioctl(c.fd, iocSetContextMgrExt, unsafe.Pointer(&obj))
	if errors.Is(err, unix.EINVAL) { // kernels before 4.20 lack the _EXT form
		var zero int32
		err = ioctl(c.fd, iocSetContextMgr, unsafe.Pointer(&zero))
	}
	if err != nil {
		c.mu.Lock()
		delete(c.nodes, 0)
		c.mu.Unlock()
		return nil, fmt.Errorf("binder: BINDER_SET_CONTEXT_MGR_EXT on %s: %w", c.path, err)
	}
	return n, nil
}

// Acquire takes a strong and a weak reference on handle for this connection,
// unless it holds them already. Handles received in parcels are acquired
// automatically; Acquire is for handles known otherwise, such as 0.
func (c *Conn) Acquire(ctx context.Context, handle uint32) error {
	c.mu.Lock()
	c.acquireLocked(handle)
	c.mu.Unlock()
	return c.flush(ctx)
}

func (c *Conn) acquireLocked(handle uint32) {
	if c.handles[handle] {
		return
	}
	c.handles[handle] = true
	c.pending = ne.AppendUint32(c.pending, bcIncRefs)
	c.pending = ne.AppendUint32(c.pending, handle)
	c.pending = ne.AppendUint32(c.pending, bcAcquire)
	c.pending = ne.AppendUint32(c.pending, handle)
}

// ReleaseHandle drops the references this connection holds on handle; the
// handle must not be used afterwards.
func (c *Conn) ReleaseHandle(ctx context.Context, handle uint32) error {
	c.mu.Lock()
	if c.handles[handle] {
		delete(c.handles, handle)
		c.pending = ne.AppendUint32(c.pending, bcRelease)
		c.pending = ne.AppendUint32(c.pending, handle)
		c.pending = ne.AppendUint32(c.pending, bcDecRefs)
		c.pending = ne.AppendUint32(c.pending, handle)
	}
	c.mu.Unlock()
	return c.flush(ctx)
}

// keepHandle marks handle as used by a part of this process (a
// registration, a proxy's node) until unkeepHandle: dropHandle then leaves
// it alone.
func (c *Conn) keepHandle(handle uint32) {
	c.mu.Lock()
	c.kept[handle]++
	c.mu.Unlock()
}

func (c *Conn) unkeepHandle(handle uint32) {
	c.mu.Lock()
	if c.kept[handle]--; c.kept[handle] <= 0 {
		delete(c.kept, handle)
	}
	c.mu.Unlock()
}

// dropHandle queues the release of the references held on handle unless
// something keeps it: a handle that only arrived in a parcel nobody kept
// is let go. The next BINDER_WRITE_READ of any thread sends it.
func (c *Conn) dropHandle(handle uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.handles[handle] && c.kept[handle] == 0 {
		delete(c.handles, handle)
		c.pending = ne.AppendUint32(c.pending, bcRelease)
		c.pending = ne.AppendUint32(c.pending, handle)
		c.pending = ne.AppendUint32(c.pending, bcDecRefs)
		c.pending = ne.AppendUint32(c.pending, handle)
	}
}

// LinkToDeath asks the driver to report the death of the object behind
// handle; fn then runs on a looper thread, so the connection must be
// serving (Serve). unlink cancels the notification.
func (c *Conn) LinkToDeath(ctx context.Context, handle uint32, fn func()) (unlink func(context.Context) error, err error) {
	c.mu.Lock()
	c.acquireLocked(handle) // the driver needs a reference to attach the notification to
	id := c.nextDeath
	c.nextDeath++
	c.deaths[id] = &death{handle: handle, fn: fn}
	c.pending = appendHandleCookie(c.pending, bcRequestDeathNotif, handle, id)
	c.mu.Unlock()
	if err := c.flush(ctx); err != nil {
		return nil, err
	}
	return func(ctx context.Context) error {
		c.mu.Lock()
		d, ok := c.deaths[id]
		if !ok || d.cleared {
			c.mu.Unlock()
			return nil
		}
		d.cleared = true
		c.pending = appendHandleCookie(c.pending, bcClearDeathNotif, handle, id)
		c.mu.Unlock()
		return c.flush(ctx)
	}, nil
}

func appendHandleCookie(b []byte, cmd, handle uint32, cookie uint64) []byte {
	b = ne.AppendUint32(b, cmd)
	b = ne.AppendUint32(b, handle)
	return ne.AppendUint64(b, cookie)
}

// flush writes the pending process-wide commands without reading.
func (c *Conn) flush(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := c.begin(); err != nil {
		return err
	}
	defer c.end()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	t := c.getThread(ctx)
	defer c.putThread(t)
	return t.talk(false)
}

// Transact sends a call to the object behind handle and, unless flags has
// FlagOneWay, waits for its reply, serving calls nested back into this
// thread meanwhile. ctx is checked before sending: once sent, a call cannot
// be taken back, and only Close abandons the wait. A TF_STATUS_CODE reply
// becomes a Status error; BR_DEAD_REPLY and BR_FAILED_REPLY become errors
// wrapping ErrDeadObject and ErrFailedTransaction.
func (c *Conn) Transact(ctx context.Context, handle, code uint32, data *Parcel, flags uint32) (*Parcel, error) {
	if data == nil {
		data = c.NewParcel()
	}
	if err := ctx.Err(); err != nil {
		closeFDs(data.owned) // they were the connection's to close once sent
		return nil, err
	}
	if err := c.begin(); err != nil {
		closeFDs(data.owned)
		return nil, err
	}
	defer c.end()
	// Replies are delivered to the kernel thread that sent the call.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	t := c.getThread(ctx)
	defer c.putThread(t)
	flags |= FlagAcceptFDs
	t.appendTransaction(bcTransaction, uint64(handle), 0, code, flags, data)
	want := waitReply
	if flags&FlagOneWay != 0 {
		want = waitComplete
	}
	reply, err := t.loop(want)
	if err != nil {
		return nil, fmt.Errorf("binder: transact code %d to handle %d on %s: %w", code, handle, c.path, err)
	}
	return reply, nil
}

// Serve runs looper threads until ctx is done or the connection closes:
// this goroutine enters the looper (BC_ENTER_LOOPER) and the driver may ask
// for more (BR_SPAWN_LOOPER, answered with BC_REGISTER_LOOPER), up to the
// WithMaxThreads limit. Incoming calls and death notifications are handled
// on these threads. Serve returns when all of them have left.
func (c *Conn) Serve(ctx context.Context) error {
	if err := c.begin(); err != nil {
		return err
	}
	c.mu.Lock()
	if c.serving {
		c.mu.Unlock()
		c.end()
		return fmt.Errorf("binder: serve %s: already serving", c.path)
	}
	c.serving = true
	c.loopers++
	c.mu.Unlock()

	// Spawned loopers share ctx; cancelling it when the first looper
	// leaves for any reason stops them all.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopped := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
		case <-stopped:
			return
		}
		for {
			c.mu.Lock()
			n := c.loopers
			c.mu.Unlock()
			if n == 0 {
				return
			}
			c.wake()
			time.Sleep(5 * time.Millisecond)
		}
	}()

	err := c.runLooper(ctx, bcEnterLooper)
	cancel()
	for { // wait for spawned loopers
		c.mu.Lock()
		n := c.loopers
		c.mu.Unlock()
		if n == 0 {
			break
		}
		c.wake()
		time.Sleep(5 * time.Millisecond)
	}
	close(stopped)
	c.mu.Lock()
	c.serving = false
	c.mu.Unlock()
	if err != nil {
		return fmt.Errorf("binder: serve %s: %w", c.path, err)
	}
	return nil
}

// runLooper runs one looper on the calling goroutine's OS thread; begin and
// c.loopers++ are the caller's.
func (c *Conn) runLooper(ctx context.Context, enter uint32) error {
	defer c.end()
	defer func() {
		c.mu.Lock()
		c.loopers--
		c.mu.Unlock()
	}()
	runtime.LockOSThread()
	t := c.getThread(ctx)
	t.out = ne.AppendUint32(t.out, enter)
	_, err := t.loop(waitForever)
	if errors.Is(err, ErrClosed) {
		err = nil
	}
	// Anything queued (a reply, acks) goes out with the exit.
	t.out = ne.AppendUint32(t.out, bcExitLooper)
	if werr := t.talk(false); err == nil {
		err = werr
	}
	var zero int32
	ioctl(c.fd, iocThreadExit, unsafe.Pointer(&zero)) // the kernel forgets this thread
	c.putThread(t)
	if enter == bcEnterLooper {
		runtime.UnlockOSThread()
	}
	// A spawned looper keeps its thread locked, so the runtime ends the
	// thread with the goroutine.
	return err
}

func (c *Conn) spawnLooper(ctx context.Context) {
	c.mu.Lock()
	if c.closing || !c.serving {
		c.mu.Unlock()
		return
	}
	c.users++
	c.loopers++
	c.mu.Unlock()
	go func() {
		if err := c.runLooper(ctx, bcRegisterLooper); err != nil {
			c.log.Warn("binder looper stopped", "device", c.path, "err", err)
		}
	}()
}

type waitKind int

const (
	waitForever  waitKind = iota // a looper: until ctx is done or the conn closes
	waitReply                    // a sync call: until BR_REPLY
	waitComplete                 // a one-way call: until BR_TRANSACTION_COMPLETE
)

// thread is the state of one goroutine talking to the driver on a locked
// OS thread.
type thread struct {
	c       *Conn
	ctx     context.Context
	out     []byte    // this thread's commands
	wbuf    []byte    // pending + out, as written
	in      []byte    // read buffer
	keep    []*Parcel // parcels whose memory the written commands point at
	closeFD []int     // fds to close once written
}

var threadPool = sync.Pool{New: func() any { return &thread{in: make([]byte, readBufSize)} }}

func (c *Conn) getThread(ctx context.Context) *thread {
	t := threadPool.Get().(*thread)
	t.c, t.ctx = c, ctx
	return t
}

func (c *Conn) putThread(t *thread) {
	if len(t.out) > 0 { // never lose an ack or a free
		c.mu.Lock()
		c.pending = append(c.pending, t.out...)
		c.mu.Unlock()
	}
	// fds of commands that failed to go out are closed all the same: a
	// failed write leaves the connection unusable, and a leak would
	// outlive it.
	closeFDs(t.closeFD)
	t.c, t.ctx, t.out, t.keep, t.closeFD = nil, nil, t.out[:0], t.keep[:0], t.closeFD[:0]
	threadPool.Put(t)
}

func (t *thread) appendTransaction(cmd uint32, target, cookie uint64, code, flags uint32, p *Parcel) {
	t.closeFD = append(t.closeFD, p.owned...)
	p, buffersSize, sg := wireParcel(p)
	if sg {
		cmd = sgCommand(cmd)
	}
	var buf, offs uint64
	if len(p.data) > 0 {
		buf = uint64(uintptr(unsafe.Pointer(&p.data[0])))
	}
	if len(p.offsets) > 0 {
		offs = uint64(uintptr(unsafe.Pointer(&p.offsets[0])))
	}
	t.keep = append(t.keep, p)
	b := ne.AppendUint32(t.out, cmd)
	b = ne.AppendUint64(b, target)
	b = ne.AppendUint64(b, cookie)
	b = ne.AppendUint32(b, code)
	b = ne.AppendUint32(b, flags)
	b = ne.AppendUint32(b, 0) // sender_pid, filled by the driver
	b = ne.AppendUint32(b, 0) // sender_euid
	b = ne.AppendUint64(b, uint64(len(p.data)))
	b = ne.AppendUint64(b, uint64(len(p.offsets)*8))
	b = ne.AppendUint64(b, buf)
	b = ne.AppendUint64(b, offs)
	if sg { // binder_transaction_data_sg
		b = ne.AppendUint64(b, buffersSize)
	}
	t.out = b
}

// appendStatusReply sends a status_t as the reply (TF_STATUS_CODE).
func (t *thread) appendStatusReply(s Status) {
	p := &Parcel{rel: t.c.rel}
	p.WriteInt32(int32(s))
	t.appendTransaction(bcReply, 0, 0, 0, FlagStatusCode, p)
}

// talk runs one BINDER_WRITE_READ: the connection's pending commands and
// this thread's, then (if read) blocks for returns into t.in, whose filled
// length it leaves in the returned count via t.in's prefix.
func (t *thread) talk(read bool) error {
	_, err := t.talkN(read)
	return err
}

func (t *thread) talkN(read bool) (int, error) {
	if read && len(t.closeFD) > 0 {
		// Write (the reply that may name them) and close before blocking
		// for the next call: the fds must not wait for it.
		if _, err := t.talkN(false); err != nil {
			return 0, err
		}
	}
	c := t.c
	c.mu.Lock()
	t.wbuf = append(append(t.wbuf[:0], c.pending...), t.out...)
	c.pending = c.pending[:0]
	c.mu.Unlock()
	t.out = t.out[:0]

	bwr := writeRead{WriteSize: uint64(len(t.wbuf))}
	if len(t.wbuf) > 0 {
		bwr.WriteBuffer = uint64(uintptr(unsafe.Pointer(&t.wbuf[0])))
	}
	if read {
		bwr.ReadSize = uint64(len(t.in))
		bwr.ReadBuffer = uint64(uintptr(unsafe.Pointer(&t.in[0])))
	}
	var errno unix.Errno
	for {
		// The same binder_write_read again after EINTR: the driver has
		// recorded what it consumed and continues from there.
		_, _, errno = unix.Syscall(unix.SYS_IOCTL, uintptr(c.fd), uintptr(iocWriteRead), uintptr(unsafe.Pointer(&bwr)))
		if errno != unix.EINTR {
			break
		}
	}
	runtime.KeepAlive(t.wbuf)
	runtime.KeepAlive(t.in)
	runtime.KeepAlive(t.keep)
	if errno != 0 {
		cmd := "nothing"
		if bwr.WriteConsumed+4 <= bwr.WriteSize {
			cmd = commandName(ne.Uint32(t.wbuf[bwr.WriteConsumed:]))
		}
		// Unwritten commands are lost with the error: the connection is
		// unusable after a write failure anyway.
		return 0, fmt.Errorf("BINDER_WRITE_READ (at %s) on %s: %w", cmd, c.path, errno)
	}
	if bwr.WriteConsumed < bwr.WriteSize {
		t.out = append(t.out, t.wbuf[bwr.WriteConsumed:]...)
	} else {
		for _, fd := range t.closeFD {
			unix.Close(fd)
		}
		t.closeFD = t.closeFD[:0]
		t.keep = t.keep[:0]
	}
	if bwr.ReadConsumed > uint64(len(t.in)) {
		return 0, fmt.Errorf("BINDER_WRITE_READ on %s: %w: read %d bytes into %d", c.path, ErrProtocol, bwr.ReadConsumed, len(t.in))
	}
	return int(bwr.ReadConsumed), nil
}

// loop talks to the driver until want is met.
func (t *thread) loop(want waitKind) (*Parcel, error) {
	for {
		if t.c.isClosing() {
			return nil, ErrClosed
		}
		if want == waitForever && t.ctx.Err() != nil {
			return nil, nil
		}
		n, err := t.talkN(true)
		if err != nil {
			return nil, err
		}
		reply, done, err := t.process(t.in[:n], want)
		if done || err != nil {
			return reply, err
		}
	}
}

// process handles all the returns of one read; done reports that want is
// met (or failed), with the reply or error. Returns after the one that
// meets want are handled too, lest an ack be lost.
func (t *thread) process(b []byte, want waitKind) (reply *Parcel, done bool, err error) {
	for len(b) > 0 {
		rest, r, d, e := t.processOne(b, want)
		b = rest
		switch {
		case d:
			reply, done, err, want = r, true, e, waitForever
		case e != nil: // the driver's stream cannot be followed further
			return nil, true, e
		}
	}
	return reply, done, err
}

// processOne handles the first return in b and returns the rest.
func (t *thread) processOne(b []byte, want waitKind) (rest []byte, reply *Parcel, done bool, err error) {
	c := t.c
	if len(b) < 4 {
		return nil, nil, false, fmt.Errorf("%w: %d stray bytes after the last return", ErrProtocol, len(b))
	}
	cmd := ne.Uint32(b)
	size := int(cmd>>16) & 0x3fff
	if 4+size > len(b) {
		return nil, nil, false, fmt.Errorf("%w: %s truncated", ErrProtocol, commandName(cmd))
	}
	arg := b[4 : 4+size]
	b = b[4+size:]
	switch cmd {
	case brNoop, brOK, brFinished, brOnewaySpamSuspect, brAcquireResult, brAttemptAcquire:
	case brError:
		return b, nil, false, fmt.Errorf("%w: BR_ERROR %d", ErrProtocol, int32(ne.Uint32(arg)))
	case brTransactionComplete:
		if want == waitComplete {
			return b, nil, true, nil
		}
	case brDeadReply, brFailedReply, brFrozenReply:
		class := ErrFailedTransaction
		if cmd == brDeadReply {
			class = ErrDeadObject
		}
		if want != waitForever {
			return b, nil, true, fmt.Errorf("%s: %w", commandName(cmd), class)
		}
		c.log.Warn("binder reply not delivered", "device", c.path, "return", commandName(cmd))
	case brReply:
		tr := decodeTransaction(arg)
		if want != waitReply {
			t.discard(tr)
			return b, nil, false, fmt.Errorf("%w: BR_REPLY while not waiting for one", ErrProtocol)
		}
		if tr.Flags&FlagStatusCode != 0 {
			s := Status(StatusUnknownError)
			if data, err := c.view(tr.Buffer, 4); err == nil && tr.DataSize >= 4 {
				s = Status(int32(ne.Uint32(data)))
			}
			t.discard(tr) // the sender sets the flag: it may carry fds too
			return b, nil, true, fmt.Errorf("BR_REPLY: %w", s)
		}
		p, err := t.receive(tr)
		if err != nil {
			return b, nil, true, fmt.Errorf("BR_REPLY: %w", err)
		}
		return b, p, true, nil
	case brTransaction, brTransactionSecCtx:
		t.serve(decodeTransaction(arg))
	case brIncRefs, brAcquire, brRelease, brDecRefs:
		ptr, cookie := ne.Uint64(arg), ne.Uint64(arg[8:])
		c.mu.Lock()
		n := c.nodes[cookie]
		c.mu.Unlock()
		if n == nil || n.id != ptr {
			c.log.Warn("binder reference count for an unknown node", "device", c.path, "return", commandName(cmd), "ptr", ptr)
		}
		switch cmd {
		case brIncRefs:
			if n != nil {
				n.weak.Add(1)
			}
			t.out = appendPtrCookie(t.out, bcIncRefsDone, ptr, cookie)
		case brAcquire:
			if n != nil {
				n.strong.Add(1)
			}
			t.out = appendPtrCookie(t.out, bcAcquireDone, ptr, cookie)
		case brRelease:
			if n != nil {
				n.strong.Add(-1)
			}
		case brDecRefs:
			if n != nil {
				n.weak.Add(-1)
			}
		}
	case brSpawnLooper:
		c.spawnLooper(t.ctx)
	case brDeadBinder:
		cookie := ne.Uint64(arg)
		c.mu.Lock()
		d := c.deaths[cookie]
		if d != nil && !d.cleared {
			d.cleared = true
			c.pending = appendHandleCookie(c.pending, bcClearDeathNotif, d.handle, cookie)
		}
		c.mu.Unlock()
		if d != nil && d.fn != nil {
			d.fn()
		}
		t.out = ne.AppendUint32(t.out, bcDeadBinderDone)
		t.out = ne.AppendUint64(t.out, cookie)
	case brClearDeathNotifDone:
		c.mu.Lock()
		delete(c.deaths, ne.Uint64(arg))
		c.mu.Unlock()
	default:
		return nil, nil, false, fmt.Errorf("%w: unknown return %#x", ErrProtocol, cmd)
	}
	return b, nil, false, nil
}

func appendPtrCookie(b []byte, cmd uint32, ptr, cookie uint64) []byte {
	b = ne.AppendUint32(b, cmd)
	b = ne.AppendUint64(b, ptr)
	return ne.AppendUint64(b, cookie)
}

func decodeTransaction(b []byte) transactionData {
	return transactionData{
		Target: ne.Uint64(b), Cookie: ne.Uint64(b[8:]), Code: ne.Uint32(b[16:]), Flags: ne.Uint32(b[20:]),
		SenderPID: int32(ne.Uint32(b[24:])), SenderEUID: ne.Uint32(b[28:]),
		DataSize: ne.Uint64(b[32:]), OffsetsSize: ne.Uint64(b[40:]),
		Buffer: ne.Uint64(b[48:]), Offsets: ne.Uint64(b[56:]),
	}
}

// view returns n bytes of the receive mapping at the user address addr.
func (c *Conn) view(addr, n uint64) ([]byte, error) {
	if n == 0 {
		return nil, nil
	}
	if addr < c.base || n > uint64(len(c.mm)) || addr-c.base > uint64(len(c.mm))-n {
		return nil, fmt.Errorf("%w: buffer %#x+%d outside the mapping", ErrProtocol, addr, n)
	}
	off := addr - c.base
	return c.mm[off : off+n], nil
}

// receive copies a transaction's buffer out of the mapping, takes
// references on the handles it carries and frees the buffer.
func (t *thread) receive(tr transactionData) (*Parcel, error) {
	c := t.c
	data, err := c.view(tr.Buffer, tr.DataSize)
	if err != nil {
		t.freeBuffer(tr.Buffer, nil)
		return nil, err
	}
	if tr.OffsetsSize%8 != 0 {
		t.freeBuffer(tr.Buffer, nil)
		return nil, fmt.Errorf("%w: offsets size %d", ErrProtocol, tr.OffsetsSize)
	}
	rawOffs, err := c.view(tr.Offsets, tr.OffsetsSize)
	if err != nil {
		t.freeBuffer(tr.Buffer, nil)
		return nil, err
	}
	offs := make([]uint64, len(rawOffs)/8)
	for i := range offs {
		offs[i] = ne.Uint64(rawOffs[8*i:])
	}
	p, err := ParseParcel(c.rel, append([]byte(nil), data...), offs)
	if err == nil && p.hasSG() {
		err = t.receiveSG(p)
	}
	if err != nil {
		// fds the driver installed for us would leak; those of fd arrays
		// are closed by the driver when it frees the buffer
		closeReceivedFDs(data, offs)
		t.freeBuffer(tr.Buffer, nil)
		return nil, err
	}
	// From here the fds are the parcel's (see CloseFDs).
	p.recvFDs = receivedFDs(p)
	t.freeBuffer(tr.Buffer, p)
	return p, nil
}

// discard frees a received buffer that is not read, closing the fds the
// driver installed for its fd objects (those of fd arrays the driver
// closes itself when the buffer is freed).
func (t *thread) discard(tr transactionData) {
	data, err := t.c.view(tr.Buffer, tr.DataSize)
	if err == nil && tr.OffsetsSize%8 == 0 {
		if raw, err := t.c.view(tr.Offsets, tr.OffsetsSize); err == nil {
			offs := make([]uint64, len(raw)/8)
			for i := range offs {
				offs[i] = ne.Uint64(raw[8*i:])
			}
			closeReceivedFDs(data, offs)
		}
	}
	t.freeBuffer(tr.Buffer, nil)
}

// CloseFDs closes the fds that arrived with a received parcel, once: a
// handler's call data is closed by the connection when the handler
// returns, so only a reply of Transact needs it. A handler that keeps an
// fd beyond its return duplicates it.
func (p *Parcel) CloseFDs() {
	for _, fd := range p.recvFDs {
		unix.Close(fd)
	}
	p.recvFDs = nil
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

func closeReceivedFDs(data []byte, offs []uint64) {
	for _, off := range offs {
		if off <= uint64(len(data))-sizeFlatObject && len(data) >= sizeFlatObject && ne.Uint32(data[off:]) == TypeFD {
			unix.Close(int(int32(ne.Uint32(data[off+8:]))))
		}
	}
}

// freeBuffer queues BC_FREE_BUFFER, after references on the handles in p:
// until then only the buffer keeps those handles alive.
func (t *thread) freeBuffer(addr uint64, p *Parcel) {
	c := t.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if p != nil {
		for _, o := range p.Objects() {
			if o.Type == TypeHandle || o.Type == TypeWeakHandle {
				c.acquireLocked(o.Handle())
			}
		}
	}
	c.pending = ne.AppendUint32(c.pending, bcFreeBuffer)
	c.pending = ne.AppendUint64(c.pending, addr)
}

// serve runs the handler of an incoming transaction on this thread and
// queues the reply.
func (t *thread) serve(tr transactionData) {
	c := t.c
	oneway := tr.Flags&FlagOneWay != 0
	p, err := t.receive(tr)
	if err != nil {
		if ok, held := c.refusals.allow("dropped", time.Now()); ok {
			c.log.Warn("binder transaction dropped", "device", c.path, "code", tr.Code, "err", err, "drops_not_logged", held)
		}
		if !oneway {
			t.appendStatusReply(StatusBadValue)
		}
		return
	}
	c.mu.Lock()
	n := c.nodes[tr.Cookie]
	c.mu.Unlock()
	var reply *Parcel
	switch {
	case n == nil || n.id != tr.Target:
		err = StatusUnknownTransaction
	case tr.Code == PingTransaction:
		reply = c.NewParcel()
	case n.handler == nil:
		err = StatusUnknownTransaction
	default:
		reply, err = t.call(n, &Transaction{Node: n, Code: tr.Code, Flags: tr.Flags, SenderPID: tr.SenderPID, SenderEUID: tr.SenderEUID, Data: p})
	}
	// Whatever fds the handler did not hand on (the proxy moves those it
	// forwards into the forwarded parcel) close once the reply is written,
	// so that a reply may still name one: a caller cannot fill this
	// process's fd table.
	t.closeFD = append(t.closeFD, p.recvFDs...)
	p.recvFDs = nil
	if oneway {
		if err != nil {
			c.log.Debug("binder one-way call failed", "device", c.path, "code", tr.Code, "err", err)
		}
		return
	}
	if err != nil {
		t.appendStatusReply(statusOf(err))
		return
	}
	if reply == nil {
		reply = c.NewParcel()
	}
	t.appendTransaction(bcReply, 0, 0, 0, 0, reply)
}

// call runs a handler, turning a panic into UNKNOWN_ERROR so that a
// looper thread and its caller are never left hanging.
func (t *thread) call(n *Node, tx *Transaction) (reply *Parcel, err error) {
	defer func() {
		if r := recover(); r != nil {
			t.c.log.Error("binder handler panicked", "device", t.c.path, "code", tx.Code, "panic", r)
			reply, err = nil, StatusUnknownError
		}
	}()
	return n.handler.Handle(t.ctx, tx)
}
