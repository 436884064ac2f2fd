package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/cpis-fhir/cpis/fhir/sqlite"
)

// TestSetting: a setting is nil until put, reads back as put, replaces the
// old value, and survives a reopen; another open of the same file sees it.
func TestSetting(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "cpis.db")
	s, err := sqlite.Open(path, sqlite.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if v, err := s.Setting(ctx, "k"); err != nil || v != nil {
		t.Fatalf("Setting(k) before any put = %q, %v; want nil", v, err)
	}
	for _, want := range []string{`{"a":1}`, `{"a":2}`} {
		if err := s.PutSetting(ctx, "k", []byte(want)); err != nil {
			t.Fatal(err)
		}
		if v, err := s.Setting(ctx, "k"); err != nil || string(v) != want {
			t.Fatalf("Setting(k) = %q, %v; want %s", v, err, want)
		}
	}
	other, err := sqlite.Open(path, sqlite.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := other.PutSetting(ctx, "k", []byte(`{"a":3}`)); err != nil {
		t.Fatal(err)
	}
	if v, _ := s.Setting(ctx, "k"); string(v) != `{"a":3}` {
		t.Errorf("Setting(k) after another open's put = %q, want {\"a\":3}", v)
	}
	other.Close()
	s.Close()
	if s, err = sqlite.Open(path, sqlite.Config{}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v, _ := s.Setting(ctx, "k"); string(v) != `{"a":3}` {
		t.Errorf("Setting(k) after reopen = %q", v)
	}
}
