package binder

import (
	"context"
	"sync/atomic"
)

// Transaction is an incoming call delivered to a Handler.
type Transaction struct {
	Node       *Node
	Code       uint32
	Flags      uint32
	SenderPID  int32
	SenderEUID uint32
	Data       *Parcel
}

// OneWay reports whether the caller waits for no reply.
func (t *Transaction) OneWay() bool { return t.Flags&FlagOneWay != 0 }

// A Handler serves the transactions sent to a Node. The reply is ignored for
// one-way calls. An error that is a Status travels back as that status_t
// (TF_STATUS_CODE); any other error as UNKNOWN_ERROR, or BAD_VALUE for a
// malformed parcel. AIDL exceptions belong in the reply (WriteException).
type Handler interface {
	Handle(ctx context.Context, t *Transaction) (*Parcel, error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, t *Transaction) (*Parcel, error)

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, t *Transaction) (*Parcel, error) { return f(ctx, t) }

// A Node is an object this process serves: the driver knows it by the id
// used as both its pointer and its cookie. It stays registered until its
// connection closes.
type Node struct {
	conn    *Conn // nil for nodes made outside a connection
	id      uint64
	handler Handler
	strong  atomic.Int32 // driver's BR_ACQUIRE minus BR_RELEASE
	weak    atomic.Int32 // driver's BR_INCREFS minus BR_DECREFS
}

// ID is the pointer and cookie the driver knows the node by (0 for the
// context manager).
func (n *Node) ID() uint64 { return n.id }

// Refs returns the strong and weak references the driver holds on the node.
func (n *Node) Refs() (strong, weak int) { return int(n.strong.Load()), int(n.weak.Load()) }

// object is the node as a local binder object of its connection.
func (n *Node) object() Object {
	return Object{Type: TypeBinder, Flags: FlagAcceptsFDs | schedFlags, Binder: n.id, Cookie: n.id, Stability: StabilitySystem}
}

// WriteTo appends the node to p as a strong binder object.
func (n *Node) WriteTo(p *Parcel) { p.WriteLocalBinder(n.id, n.id) }
