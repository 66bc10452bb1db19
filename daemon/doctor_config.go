package daemon

import (
	"fmt"
	"net/netip"
)

// validatePlatform checks the settings for phone platforms: the fscrypt
// contents mode and the fallback resolvers, which must be addresses work
// can reach (never the phone's own loopback).
func (c *Config) validatePlatform() error {
	switch c.FscryptContents {
	case "":
		c.FscryptContents = "auto"
	case "auto", "aes", "adiantum":
	default:
		return fmt.Errorf("fscrypt_contents %q: want \"auto\", \"aes\" or \"adiantum\"", c.FscryptContents)
	}
	for i, s := range c.DNS {
		a, err := netip.ParseAddr(s)
		switch {
		case err != nil || a.Zone() != "":
			return fmt.Errorf("dns[%d] %q: want an IP address such as 9.9.9.9", i, s)
		case a.Unmap().IsLoopback() || a.IsUnspecified():
			return fmt.Errorf("dns[%d] %q: a loopback or unspecified address is the phone's own, which work cannot reach", i, s)
		}
	}
	return nil
}
