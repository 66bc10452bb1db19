// Package images owns what a profile's root filesystem is made of: the
// store that holds images and encrypted profile data, and the overlay that
// stacks a read-only image rootfs under an encrypted writable layer.
//
// This part of the package is Linux only:
//
//   - EnsureStore / ReleaseStore: a loop-mounted ext4 image made with
//     -O encrypt, for hosts whose own filesystem cannot encrypt. An existing
//     image is never reformatted; one of the wrong size or kind is refused.
//   - PrepareDataDir, MountOverlay, Unmount: the encrypted data/ folder
//     with the overlay's upper/ and work/ in it, and the overlay itself.
//   - Holders: which processes keep files under a mountpoint busy.
//
// Key and policy ioctls, key wrapping and crypto-erase live in
// images/fscrypt.
package images
