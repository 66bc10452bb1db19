package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteReplacesAndSetsMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := Write(path, []byte("old"), Options{}); err != nil {
		t.Fatal(err)
	}
	if err := Write(path, []byte("new"), Options{Perm: 0o640, NoSync: true}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	st, _ := os.Stat(path)
	if err != nil || string(b) != "new" || st.Mode().Perm() != 0o640 {
		t.Fatalf("content %q mode %v err %v", b, st.Mode(), err)
	}
}

func TestFailedStepKeepsOldContentAndNoTemp(t *testing.T) {
	for _, step := range []string{"create", "write", "sync", "rename"} {
		dir := t.TempDir()
		path := filepath.Join(dir, "f")
		if err := Write(path, []byte("old"), Options{}); err != nil {
			t.Fatal(err)
		}
		boom := errors.New("boom")
		err := Write(path, []byte("new"), Options{Fault: func(s string) error {
			if s == step {
				return boom
			}
			return nil
		}})
		if !errors.Is(err, boom) {
			t.Fatalf("%s: error %v", step, err)
		}
		if b, _ := os.ReadFile(path); string(b) != "old" {
			t.Fatalf("%s: content %q after a failed write", step, b)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 1 {
			t.Fatalf("%s: left %v", step, ents)
		}
	}
}
