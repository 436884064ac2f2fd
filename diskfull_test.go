package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// mountSmallDisk mounts a tmpfs of size (such as "48m") on a new folder
// and returns it; the test is skipped, naming what was not tested, where
// that is not allowed (not root, or no mount permission).
func mountSmallDisk(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		t.Skip("not tested: the answers of a server whose disk is full (mounting a small tmpfs needs root)")
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("not tested: the answers of a server whose disk is full (mount tmpfs: %v: %s)", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// TestMain_DiskFull serves a data folder on a small disk and writes until
// it is full: the write that does not fit is answered 507 with a no-store
// OperationOutcome, nothing of it is kept, and the resources acknowledged
// before are all still read back.
func TestMain_DiskFull(t *testing.T) {
	dir := mountSmallDisk(t, "48m")
	ctx, cancel := context.WithCancel(context.Background())
	m := newMain(t, dir)
	addr, done := startMain(t, ctx, m)
	stopped := false
	t.Cleanup(func() { // before the unmount, also when the test fails
		if !stopped {
			cancel()
			<-done
		}
	})
	base := "http://" + addr + "/fhir"
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: withToken(t, dir, tr)}

	data := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("CP-IS full disk test. ", 50000))) // about 1.5 MB
	var acked []string
	full := false
	for i := 0; i < 100 && !full; i++ {
		status, _, body := do(t, c, "POST", base+"/Binary", []byte(`{"resourceType":"Binary","contentType":"text/plain","data":"`+data+`"}`))
		switch status {
		case http.StatusCreated:
			var r struct{ ID string }
			if err := json.Unmarshal(body, &r); err != nil || r.ID == "" {
				t.Fatalf("201 without a resource: %.200s", body)
			}
			acked = append(acked, r.ID)
		case http.StatusInsufficientStorage:
			var oo struct {
				ResourceType string
				Issue        []struct{ Code, Diagnostics string }
			}
			if err := json.Unmarshal(body, &oo); err != nil || oo.ResourceType != "OperationOutcome" || len(oo.Issue) == 0 || oo.Issue[0].Code != "no-store" {
				t.Fatalf("507 body %.300s; want an OperationOutcome with issue type no-store", body)
			}
			full = true
		default:
			t.Fatalf("POST Binary %d on a filling disk: status %d %.300s; want 201 or 507", i, status, body)
		}
	}
	if !full || len(acked) == 0 {
		t.Fatalf("%d Binaries written, full %v: want some written, then 507", len(acked), full)
	}
	if log := m.Stderr.(*syncBuffer).String(); !strings.Contains(log, "storage full: a write was refused") {
		t.Errorf("log after the 507: %s; want an error saying the storage is full", tail(log, 2048))
	}
	for _, id := range acked {
		if status, _, body := do(t, c, "GET", base+"/Binary/"+id, nil); status != http.StatusOK || !strings.Contains(string(body), data[:64]) {
			t.Fatalf("GET an acknowledged Binary on the full disk: status %d; want 200 with its data", status)
		}
	}
	status, _, body := do(t, c, "GET", base+"/Binary?_summary=count", nil)
	var count struct{ Total int }
	if status != http.StatusOK || json.Unmarshal(body, &count) != nil || count.Total != len(acked) {
		t.Fatalf("count of Binaries: status %d %.200s; want %d (only the acknowledged ones)", status, body, len(acked))
	}
	cancel()
	stopped = true
	if err := waitRun(t, done); err != nil {
		t.Fatalf("serve on the full disk ended with %v", err)
	}
}
