package daemon

import "fmt"

// validateIdentity checks the user and pid namespace settings: the id
// ranges must stay above host root's and the system's own ids, below the
// last uid, and clear of the uids the daemon trusts (owner_uid,
// system_uid): work running as one of those would be that user to the
// control socket and to the host's files.
func (c *Config) validateIdentity() error {
	switch c.UserNS {
	case "auto", "off":
	case "":
		c.UserNS = "auto"
	default:
		return fmt.Errorf("userns %q: want \"auto\" or \"off\"", c.UserNS)
	}
	switch c.PIDNamespace {
	case "auto", "off":
	case "":
		c.PIDNamespace = "auto"
	default:
		return fmt.Errorf("pid_namespace %q: want \"auto\" or \"off\"", c.PIDNamespace)
	}
	if c.IDRanges == 0 {
		return fmt.Errorf("id_ranges 0: at least one profile needs a range")
	}
	if c.IDBase < IDRangeSize {
		return fmt.Errorf("id_base %d: must be at least %d, above the host's own users", c.IDBase, IDRangeSize)
	}
	end := uint64(c.IDBase) + uint64(c.IDRanges)*IDRangeSize
	if end > 1<<32-2 {
		return fmt.Errorf("id_base %d with id_ranges %d ends at %d, past the last uid %d", c.IDBase, c.IDRanges, end, uint64(1<<32-2))
	}
	for _, u := range []struct {
		field string
		uid   int
	}{{"owner_uid", c.OwnerUID}, {"system_uid", c.SystemUID}} {
		if u.uid >= 0 && uint64(u.uid) >= uint64(c.IDBase) && uint64(u.uid) < end {
			return fmt.Errorf("%s %d lies in the profiles' id ranges (id_base %d to %d): work would act as that user", u.field, u.uid, c.IDBase, end-1)
		}
	}
	return nil
}
