package daemon

import "fmt"

// validateIdentity checks the user namespace settings: the id ranges must
// stay above host root's and the system's own ids and below the last uid.
func (c *Config) validateIdentity() error {
	switch c.UserNS {
	case "auto", "off":
	case "":
		c.UserNS = "auto"
	default:
		return fmt.Errorf("userns %q: want \"auto\" or \"off\"", c.UserNS)
	}
	if c.IDRanges == 0 {
		return fmt.Errorf("id_ranges 0: at least one profile needs a range")
	}
	if c.IDBase < IDRangeSize {
		return fmt.Errorf("id_base %d: must be at least %d, above the host's own users", c.IDBase, IDRangeSize)
	}
	if end := uint64(c.IDBase) + uint64(c.IDRanges)*IDRangeSize; end > 1<<32-2 {
		return fmt.Errorf("id_base %d with id_ranges %d ends at %d, past the last uid %d", c.IDBase, c.IDRanges, end, uint64(1<<32-2))
	}
	return nil
}
