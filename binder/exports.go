package binder

import "fmt"

// ExportPolicy lets host processes use one work service: a node standing
// for it is registered in the host's service manager under HostName, and
// every call from the host is checked against Descriptor and Codes
// (default deny) as the proxy checks work's calls on host services.
type ExportPolicy struct {
	// Name is the work service, by its name in the profile's context.
	Name string
	// HostName is the name in the host's service manager (default: Name).
	HostName   string
	Descriptor string
	Codes      []CodeRange
	// AllowFDs lets file descriptors travel in the export's calls,
	// callbacks and replies.
	AllowFDs bool
}

// hostName is the export's name in the host's service manager.
func (e ExportPolicy) hostName() string {
	if e.HostName != "" {
		return e.HostName
	}
	return e.Name
}

// servicePolicy is the export as the policy of a proxy that runs the other
// way round: the work context plays the host (where the service lives).
func (e ExportPolicy) servicePolicy() ServicePolicy {
	return ServicePolicy{Name: e.Name, Descriptor: e.Descriptor, Codes: e.Codes, AllowFDs: e.AllowFDs}
}

// export returns the export of a work service name, or nil.
func (pp *ProxyPolicy) export(name string) *ExportPolicy {
	for i := range pp.Exports {
		if pp.Exports[i].Name == name {
			return &pp.Exports[i]
		}
	}
	return nil
}

// Export returns the export of a work service name.
func (pp ProxyPolicy) Export(name string) (ExportPolicy, bool) {
	if e := pp.export(name); e != nil {
		return *e, true
	}
	return ExportPolicy{}, false
}

// validateExports checks the exports: valid unique names on both sides,
// none of them a host service the profile imports, a descriptor, and codes
// in the user range.
func (pp ProxyPolicy) validateExports() error {
	work, host := map[string]bool{}, map[string]bool{}
	for i, e := range pp.Exports {
		if !validServiceName(e.Name) {
			return fmt.Errorf("binder: policy export %d: invalid name %q", i, e.Name)
		}
		if !validServiceName(e.hostName()) {
			return fmt.Errorf("binder: policy export %q: invalid host name %q", e.Name, e.HostName)
		}
		if work[e.Name] {
			return fmt.Errorf("binder: policy export %q listed twice", e.Name)
		}
		if host[e.hostName()] {
			return fmt.Errorf("binder: policy exports: host name %q used twice", e.hostName())
		}
		work[e.Name], host[e.hostName()] = true, true
		if pp.service(e.Name) != nil {
			return fmt.Errorf("binder: policy export %q: the name is a host service of the policy", e.Name)
		}
		if e.Descriptor == "" {
			return fmt.Errorf("binder: policy export %q: empty interface descriptor", e.Name)
		}
		for _, r := range e.Codes {
			if r.First > r.Last || r.First < FirstCallTransaction || r.Last > LastCallTransaction {
				return fmt.Errorf("binder: policy export %q: code range %s outside %d-%d",
					e.Name, r, FirstCallTransaction, LastCallTransaction)
			}
		}
	}
	return nil
}
