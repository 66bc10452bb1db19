package daemon

import (
	"fmt"
	"path/filepath"
)

// validateStorage checks the storage settings: a store image needs an
// absolute path and a size, and contradicts unencrypted storage.
func (c *Config) validateStorage() error {
	if c.StoreImage == "" {
		if c.StoreSize != 0 {
			return fmt.Errorf("store_size %d: only with store_image", c.StoreSize)
		}
		return nil
	}
	if !filepath.IsAbs(c.StoreImage) {
		return fmt.Errorf("store_image %q: must be an absolute path", c.StoreImage)
	}
	if c.StoreSize < 16<<20 {
		return fmt.Errorf("store_size %d: a store image needs a size of at least 16 MiB", c.StoreSize)
	}
	if c.InsecureUnencryptedStorage {
		return fmt.Errorf("store_image and insecure_unencrypted_storage contradict each other: choose one")
	}
	return nil
}
