package api

import (
	"context"
	"net/http"
)

// UnlockRequest is the body of POST /v1/profiles/{name}/unlock. The
// passphrase is empty for a profile without one.
type UnlockRequest struct {
	Passphrase string `json:"passphrase,omitempty"`
}

// PassphraseRequest is the body of POST /v1/profiles/{name}/passphrase:
// Old is the current passphrase (empty if none is set), New the new one
// (empty clears it).
type PassphraseRequest struct {
	Old string `json:"old,omitempty"`
	New string `json:"new,omitempty"`
}

// Unlock unwraps the profile's key and adds it to the kernel: a locked
// profile becomes stopped.
func (c *Client) Unlock(ctx context.Context, name string, req UnlockRequest) (Profile, error) {
	return c.action(ctx, name, "unlock", req)
}

// Lock stops the profile if it runs, unmounts its storage and evicts its
// key from the kernel.
func (c *Client) Lock(ctx context.Context, name string) (Profile, error) {
	return c.action(ctx, name, "lock", nil)
}

// SetPassphrase sets, changes or (with an empty New) clears the profile's
// passphrase.
func (c *Client) SetPassphrase(ctx context.Context, name string, req PassphraseRequest) (Profile, error) {
	return c.action(ctx, name, "passphrase", req)
}

// Wipe crypto-erases the profile: its key is evicted and destroyed first,
// then its files, network and records are deleted. Root or the system uid
// only.
func (c *Client) Wipe(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodPost, profilePath(name, "wipe"), nil, nil)
}
