package api

import (
	"context"
	"io"
	"net/http"
	"net/url"
)

// BinderPolicy says which host services a profile's apps may use through
// workcelld's binder proxy, and how: the body of PUT
// /v1/profiles/{name}/binder, which replaces it whole, and the content of
// the profile's binder.json. Everything it does not name is denied.
type BinderPolicy struct {
	Services []BinderService `json:"services"`
	// Exports are the profile's own services that host processes may use;
	// host processes see no other.
	Exports []BinderExport `json:"exports,omitempty"`
}

// BinderExport lets host processes use one work service: while a work app
// has it registered, the host's service manager has a proxy of it under
// HostName, which lets through only the listed codes on Descriptor.
type BinderExport struct {
	// Name is the work service, by its name in the profile's context.
	Name string `json:"name"`
	// HostName is its name in the host's service manager (default: Name).
	HostName   string   `json:"host_name,omitempty"`
	Descriptor string   `json:"descriptor"`
	Codes      []string `json:"codes"`
	AllowFDs   bool     `json:"allow_fds,omitempty"`
}

// BinderService allows one host service, by its name in the host's service
// manager.
type BinderService struct {
	Name string `json:"name"`
	// Descriptor is the interface a call must name in its interface token.
	Descriptor string `json:"descriptor"`
	// Codes are allowed transaction codes, each "N" or "FIRST-LAST"
	// (inclusive), within 1-16777215.
	Codes []string `json:"codes"`
	// AllowFDs lets file descriptors travel in this service's calls,
	// callbacks and replies.
	AllowFDs bool `json:"allow_fds,omitempty"`
	// Objects are interfaces of binders the service hands out that work may
	// call, with their codes.
	Objects []BinderInterface `json:"objects,omitempty"`
}

// BinderInterface allows codes on one interface.
type BinderInterface struct {
	Descriptor string   `json:"descriptor"`
	Codes      []string `json:"codes"`
}

// BinderHostService is one host service of the policy, as the profile sees
// it through the proxy.
type BinderHostService struct {
	BinderService
	// Present says whether the host's service manager has the service now;
	// absent when the host's context could not be asked.
	Present *bool `json:"present,omitempty"`
}

// Binder is the answer of GET /v1/profiles/{name}/binder.
type Binder struct {
	Name string `json:"name"`
	// Active says whether the profile's binder context is up now (its
	// container is prepared or runs and a device was free); the container
	// sees it as /dev/binder.
	Active bool `json:"active"`
	// Device is the host's device that backs the context while active.
	Device  string `json:"device,omitempty"`
	Release string `json:"release,omitempty"`
	// Note says why the profile has no binder context, if it has none.
	Note string `json:"note,omitempty"`
	// Services are the names the profile's own apps registered in its
	// context; they stay inside the profile.
	Services []string `json:"services"`
	// Host are the host services the policy allows, with their codes.
	Host []BinderHostService `json:"host"`
	// Exported are the exported work services registered in the host's
	// service manager now (by their work names).
	Exported []string     `json:"exported,omitempty"`
	Policy   BinderPolicy `json:"policy"`
}

// Binder returns a profile's binder context: its own services and the host
// services visible to it through the proxy.
func (c *Client) Binder(ctx context.Context, name string) (Binder, error) {
	var b Binder
	err := c.do(ctx, http.MethodGet, profilePath(name, "binder"), nil, &b)
	return b, err
}

// SetBinderPolicy replaces a profile's binder policy (root or the system
// uid). A running profile keeps its context; the proxy applies the new
// policy to the next lookups of host services.
func (c *Client) SetBinderPolicy(ctx context.Context, name string, p BinderPolicy) (Binder, error) {
	var b Binder
	err := c.do(ctx, http.MethodPut, profilePath(name, "binder"), p, &b)
	return b, err
}

// BinderAudit streams the profile's binder audit records (JSON lines, the
// older ones first) to w; with follow it keeps streaming until ctx ends.
func (c *Client) BinderAudit(ctx context.Context, name string, follow bool, w io.Writer) error {
	q := url.Values{}
	if follow {
		q.Set("follow", "true")
	}
	path := profilePath(name, "binder/audit")
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	resp, err := c.send(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	return copyStream(ctx, resp, w, "binder audit of "+name)
}
