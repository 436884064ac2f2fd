package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestCrash_AcknowledgedWritesSurviveKill9 runs the real binary, kills it
// with SIGKILL while 16 clients create and update Patients, restarts it on
// the same data folder and checks that every write answered 201 or 200 is
// there: creates byte for byte, updates as the version the server named,
// with the NHS number the client sent. It does this three times on one
// folder, checking all earlier cycles' writes again each time.
func TestCrash_AcknowledgedWritesSurviveKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: not testing that acknowledged writes survive SIGKILL of the cpis binary (builds and runs it)")
	}
	const (
		cycles       = 3
		clients      = 16
		shared       = 4   // Patients that every client updates with If-Match
		killAfter    = 500 // acknowledged writes per cycle before SIGKILL
		maxPerClient = 400 // bounds a cycle if the kill never comes
	)
	bin := buildCPIS(t)
	dir := t.TempDir()
	var nhs nhsNumbers

	var (
		creates []ackedWrite                // every acknowledged create, all cycles
		updates = map[string][]ackedWrite{} // shared id -> acknowledged updates
	)
	sharedIDs := make([]string, shared)
	for i := range sharedIDs {
		sharedIDs[i] = fmt.Sprintf("crash-shared-%d", i)
	}

	for cycle := 1; cycle <= cycles; cycle++ {
		p := startCPIS(t, bin, dir)
		client := &http.Client{Transport: withToken(t, dir, &http.Transport{MaxIdleConnsPerHost: clients})}
		verifyAcked(t, client, p.base, cycle, creates, updates)
		if cycle == 1 {
			for _, id := range sharedIDs {
				n := nhs.Next()
				status, _, body := do(t, client, "PUT", p.base+"/fhir/Patient/"+id, patientJSON(id, n))
				if status != http.StatusCreated {
					t.Fatalf("PUT Patient/%s: status %d body %s, want %d", id, status, body, http.StatusCreated)
				}
				updates[id] = append(updates[id], ackedWrite{id: id, version: 1, nhs: n, body: body})
			}
		}

		var (
			mu       sync.Mutex
			acks     atomic.Int64
			cut      atomic.Int64 // requests that got no answer
			killNow  = make(chan struct{})
			killOnce sync.Once
			killed   = make(chan struct{})
			failed   = make(chan string, clients)
			wg       sync.WaitGroup
		)
		ack := func(w ackedWrite, create bool) {
			mu.Lock()
			if create {
				creates = append(creates, w)
			} else {
				updates[w.id] = append(updates[w.id], w)
			}
			mu.Unlock()
			if acks.Add(1) == killAfter {
				killOnce.Do(func() { close(killNow) })
			}
		}
		for c := range clients {
			wg.Go(func() {
				for i := range maxPerClient {
					var err error
					if i%4 == 3 {
						err = updateShared(t, client, p.base, sharedIDs[(c+i)%shared], &nhs, ack)
					} else {
						err = createOne(t, client, p.base, &nhs, ack)
					}
					if err == nil {
						continue
					}
					cut.Add(1)
					select {
					case <-killed:
					default:
						// Possibly the kill racing this request; the test
						// goroutine decides which came first.
						failed <- err.Error()
					}
					return
				}
			})
		}
		allDone := make(chan struct{})
		go func() { wg.Wait(); close(allDone) }()
		select {
		case <-killNow:
		case msg := <-failed:
			t.Errorf("cycle %d: a client failed before the kill: %s", cycle, msg)
		case <-allDone:
			t.Errorf("cycle %d: clients finished with %d acknowledged writes, before the kill at %d", cycle, acks.Load(), killAfter)
		}
		if err := p.cmd.Process.Kill(); err != nil {
			t.Fatalf("cycle %d: SIGKILL: %v", cycle, err)
		}
		close(killed)
		p.wait()
		<-allDone
		client.CloseIdleConnections()
		t.Logf("cycle %d: %d writes acknowledged; SIGKILL cut off %d requests in flight", cycle, acks.Load(), cut.Load())
		if t.Failed() {
			t.FailNow()
		}
	}

	// Restart once more to check the last cycle, then stop with SIGTERM:
	// the binary must shut down cleanly and exit 0.
	p := startCPIS(t, bin, dir)
	client := &http.Client{Transport: withToken(t, dir, &http.Transport{})}
	verifyAcked(t, client, p.base, cycles+1, creates, updates)
	client.CloseIdleConnections()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	if err := p.wait(); err != nil {
		t.Errorf("cpis serve after SIGTERM: %v, want exit status 0", err)
	}
}

// ackedWrite is a write the server acknowledged: the version it named, the
// NHS number the client sent and the body the server answered with.
type ackedWrite struct {
	id      string
	version int64
	nhs     string
	body    []byte
}

// createOne POSTs a new Patient and reports a 201 to ack. It returns an
// error only when the request got no answer; any answer but 201 fails the
// test.
func createOne(t *testing.T, c *http.Client, base string, nhs *nhsNumbers, ack func(ackedWrite, bool)) error {
	n := nhs.Next()
	status, hdr, body, err := tryDo(c, "POST", base+"/fhir/Patient", patientJSON("", n))
	if err != nil {
		return err
	}
	if status != http.StatusCreated {
		t.Errorf("POST /fhir/Patient: status %d body %.300s, want %d", status, body, http.StatusCreated)
		return nil
	}
	var p wirePatient
	if err := json.Unmarshal(body, &p); err != nil || p.ID == "" {
		t.Errorf("POST /fhir/Patient: 201 with body %.300s, want the stored Patient", body)
		return nil
	}
	if v, ok := etagVersion(hdr.Get("ETag")); !ok || v != 1 {
		t.Errorf("POST /fhir/Patient: ETag %q, want W/\"1\"", hdr.Get("ETag"))
	}
	ack(ackedWrite{id: p.ID, version: 1, nhs: n, body: body}, true)
	return nil
}

// updateShared reads Patient/id and PUTs a new NHS number with If-Match on
// the version read, retrying a few times on 412, and reports a 200 to ack.
func updateShared(t *testing.T, c *http.Client, base, id string, nhs *nhsNumbers, ack func(ackedWrite, bool)) error {
	url := base + "/fhir/Patient/" + id
	for range 5 {
		status, hdr, body, err := tryDo(c, "GET", url, nil)
		if err != nil {
			return err
		}
		cur, ok := etagVersion(hdr.Get("ETag"))
		if status != http.StatusOK || !ok {
			t.Errorf("GET Patient/%s: status %d ETag %q body %.300s, want 200 with an ETag", id, status, hdr.Get("ETag"), body)
			return nil
		}
		n := nhs.Next()
		status, hdr, body, err = tryDo(c, "PUT", url, patientJSON(id, n), "If-Match", hdr.Get("ETag"))
		if err != nil {
			return err
		}
		switch status {
		case http.StatusPreconditionFailed:
			continue // another client updated it first
		case http.StatusOK:
			v, ok := etagVersion(hdr.Get("ETag"))
			if !ok || v != cur+1 {
				t.Errorf("PUT Patient/%s If-Match W/\"%d\": ETag %q, want W/\"%d\"", id, cur, hdr.Get("ETag"), cur+1)
				return nil
			}
			ack(ackedWrite{id: id, version: v, nhs: n, body: body}, false)
			return nil
		default:
			t.Errorf("PUT Patient/%s If-Match W/\"%d\": status %d body %.300s, want 200 or 412", id, cur, status, body)
			return nil
		}
	}
	return nil
}

// etagVersion reads the version from a weak ETag, W/"n".
func etagVersion(etag string) (int64, bool) {
	s, ok := strings.CutPrefix(etag, `W/"`)
	if !ok {
		return 0, false
	}
	s, ok = strings.CutSuffix(s, `"`)
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseInt(s, 10, 64)
	return v, err == nil && v > 0
}

// verifyAcked checks every acknowledged write against the server at base:
// each create reads back as acknowledged; for each shared Patient, every
// acknowledged version is at most the current one, no two acknowledgements
// name the same version, and a vread of each returns the body acknowledged,
// carrying the NHS number the client sent.
func verifyAcked(t *testing.T, c *http.Client, base string, cycle int, creates []ackedWrite, updates map[string][]ackedWrite) {
	t.Helper()
	for _, w := range creates {
		status, _, body := do(t, c, "GET", base+"/fhir/Patient/"+w.id, nil)
		if status != http.StatusOK || !bytes.Equal(body, w.body) {
			t.Errorf("restart %d: GET Patient/%s (acknowledged create, NHS number %s): status %d body %.300s; want %d body %.300s",
				cycle, w.id, w.nhs, status, body, http.StatusOK, w.body)
		}
	}
	for id, ws := range updates {
		status, hdr, body := do(t, c, "GET", base+"/fhir/Patient/"+id, nil)
		cur, ok := etagVersion(hdr.Get("ETag"))
		if status != http.StatusOK || !ok {
			t.Errorf("restart %d: GET Patient/%s: status %d ETag %q body %.300s; want 200 with an ETag", cycle, id, status, hdr.Get("ETag"), body)
			continue
		}
		seen := map[int64]string{}
		for _, w := range ws {
			if prev, dup := seen[w.version]; dup {
				t.Errorf("Patient/%s: version %d acknowledged twice, for NHS numbers %s and %s (a lost update)", id, w.version, prev, w.nhs)
			}
			seen[w.version] = w.nhs
			if w.version > cur {
				t.Errorf("restart %d: Patient/%s is at version %d, but version %d (NHS number %s) was acknowledged", cycle, id, cur, w.version, w.nhs)
				continue
			}
			status, _, body := do(t, c, "GET", fmt.Sprintf("%s/fhir/Patient/%s/_history/%d", base, id, w.version), nil)
			if got := nhsOf(body); status != http.StatusOK || got != w.nhs {
				t.Errorf("restart %d: GET Patient/%s/_history/%d: status %d NHS number %q; want %d %q", cycle, id, w.version, status, got, http.StatusOK, w.nhs)
			} else if !bytes.Equal(body, w.body) {
				t.Errorf("restart %d: GET Patient/%s/_history/%d: body %.300s; want the acknowledged %.300s", cycle, id, w.version, body, w.body)
			}
		}
	}
}

// cpisProcess is a running cpis serve.
type cpisProcess struct {
	cmd    *exec.Cmd
	base   string
	stderr *syncBuffer
	exited chan struct{} // closed once the process has exited
	err    error         // cmd.Wait's result, set before exited is closed
}

// wait waits for the process to exit and returns cmd.Wait's result.
func (p *cpisProcess) wait() error {
	<-p.exited
	return p.err
}

// startCPIS starts bin serve on 127.0.0.1:0 over dir with the flags args,
// reads the address it prints and waits for /readyz. The process is killed
// when the test ends.
func startCPIS(t *testing.T, bin, dir string, args ...string) *cpisProcess {
	t.Helper()
	// Rest-hooks of the tests go to receivers on loopback, which the
	// default refuses.
	cmd := exec.Command(bin, append([]string{"serve", "--addr", "127.0.0.1:0", "--data", dir, "--log-level", "warn", "--subscription-endpoints", "127.0.0.1"}, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &cpisProcess{cmd: cmd, stderr: &syncBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		const prefix = "cpis: serving FHIR R4 at http://"
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), prefix); ok {
				addr, _, _ := strings.Cut(rest, "/")
				addrc <- addr
				break
			}
		}
		io.Copy(io.Discard, stdout)
		// Wait only after stdout is drained, as exec.Cmd requires.
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		p.wait()
		if t.Failed() {
			t.Logf("cpis stderr (last 4 KB):\n%s", tail(p.stderr.String(), 4096))
		}
	})
	select {
	case addr := <-addrc:
		p.base = "http://" + addr
	case <-p.exited:
		t.Fatalf("cpis serve exited before serving: %v\nstderr:\n%s", p.err, p.stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("cpis serve printed no address within 30s\nstderr:\n%s", p.stderr.String())
	}
	waitReady(t, p.base)
	return p
}

// waitReady polls /readyz until it answers 200, within a bounded deadline.
func waitReady(t *testing.T, base string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, "GET", base+"/readyz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("GET %s/readyz: no 200 within 30s (last error %v)", base, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// buildCPIS builds the cpis binary with the go command that runs the test.
func buildCPIS(t *testing.T) string {
	t.Helper()
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		if goBin, err = exec.LookPath("go"); err != nil {
			t.Fatalf("no go command to build cpis with: %v", err)
		}
	}
	bin := filepath.Join(t.TempDir(), "cpis")
	out, err := exec.Command(goBin, "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go build: %v\n%s", err, out)
		}
		t.Fatalf("go build: %v", err)
	}
	return bin
}
