package main

import (
	"os"
	"path/filepath"
)

// exportCA copies the CA certificate to dst (through a temporary file and a
// rename, so a client never reads half a file). In a container the data
// directory is a named volume; dst is a bind-mounted folder the host's
// clients can read.
func exportCA(src, dst string) error {
	pem, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".ca-*.pem")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(pem); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}
