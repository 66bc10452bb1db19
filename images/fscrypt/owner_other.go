//go:build !unix

package fscrypt

import (
	"io/fs"
	"os"
)

func fileOwner(fs.FileInfo) (int, bool) { return 0, false }

func openNoFollow(path string) (*os.File, error) { return os.Open(path) }

func openWriteNoFollow(path string) (*os.File, error) { return os.OpenFile(path, os.O_WRONLY, 0) }
