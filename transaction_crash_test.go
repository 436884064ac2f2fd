package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestCrash_TransactionAllOrNothing runs the real binary, sends one large
// transaction (children x Patient, Flag, CarePlan, CareTeam, all tagged
// with the cycle) and kills the process with SIGKILL at a point during its
// processing, restarts it on the same folder and checks that the
// transaction's resources are all there or none of them: for every type,
// the count tagged with the cycle is 0, or the full count for all four.
// The first cycle is not killed and measures how long the transaction
// takes; the others kill at fractions of that time, late ones landing while
// the writer is inserting.
func TestCrash_TransactionAllOrNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: not testing that a transaction killed by SIGKILL is all or nothing (builds and runs cpis)")
	}
	const children = 500
	bin := buildCPIS(t)
	dir := t.TempDir()
	var nhs nhsNumbers
	client := &http.Client{Transport: withToken(t, dir, http.DefaultTransport)}
	var took time.Duration
	outcomes := map[string]int{}
	for cycle, frac := range []float64{0, 0.8, 1.0, 1.1, 1.2, 1.4} {
		p := startCPIS(t, bin, dir)
		tag := fmt.Sprintf("cycle-%d", cycle)
		body := crashBundle(&nhs, tag, children)
		start := time.Now()
		type result struct {
			status int
			err    error
		}
		done := make(chan result, 1)
		go func() {
			status, _, _, err := tryDo(client, "POST", p.base+"/fhir", body, "Prefer", "return=minimal")
			done <- result{status, err}
		}()
		acked := false
		if frac == 0 {
			r := <-done
			if r.err != nil || r.status != http.StatusOK {
				t.Fatalf("cycle %d: transaction status %d, err %v; want 200", cycle, r.status, r.err)
			}
			took, acked = time.Since(start), true
			t.Logf("a transaction of %d entries took %v", 4*children, took)
		} else {
			time.Sleep(time.Duration(frac * float64(took)))
			if err := p.cmd.Process.Kill(); err != nil {
				t.Fatalf("cycle %d: SIGKILL: %v", cycle, err)
			}
			p.wait()
			r := <-done
			if r.err == nil && r.status != http.StatusOK {
				t.Fatalf("cycle %d: transaction status %d before the kill, want 200", cycle, r.status)
			}
			acked = r.err == nil
			p = startCPIS(t, bin, dir)
		}
		counts := map[string]int{}
		for _, typ := range []string{"Patient", "Flag", "CarePlan", "CareTeam"} {
			counts[typ] = countTagged(t, client, p.base, typ, tag)
		}
		t.Logf("cycle %d (killed at %.2f of the run): %v", cycle, frac, counts)
		switch {
		case counts["Patient"] == children && counts["Flag"] == children && counts["CarePlan"] == children && counts["CareTeam"] == children:
			outcomes["all"]++
		case acked:
			t.Errorf("cycle %d: the transaction was answered 200 before the kill, but after it the counts are %v, want all %d of each", cycle, counts, children)
		case counts["Patient"] == 0 && counts["Flag"] == 0 && counts["CarePlan"] == 0 && counts["CareTeam"] == 0:
			outcomes["none"]++
		default:
			t.Errorf("cycle %d (killed at %.2f of the run): counts %v, want all %d of each or none", cycle, frac, counts, children)
		}
		p.cmd.Process.Kill()
		p.wait()
	}
	t.Logf("outcomes: %v", outcomes)
}

func countTagged(t *testing.T, c *http.Client, base, typ, tag string) int {
	t.Helper()
	status, _, b := do(t, c, "GET", base+"/fhir/"+typ+"?_summary=count&_tag="+url.QueryEscape("https://example.org/test|"+tag), nil)
	if status != http.StatusOK {
		t.Fatalf("count %s: status %d body %s", typ, status, b)
	}
	var bundle struct{ Total int }
	if err := json.Unmarshal(b, &bundle); err != nil {
		t.Fatal(err)
	}
	return bundle.Total
}

// crashBundle is a transaction of n children, each a Patient created if no
// Patient has its NHS number, and a Flag, CarePlan and CareTeam referring
// to it by urn:uuid; every resource carries the tag.
func crashBundle(nhs *nhsNumbers, tag string, n int) []byte {
	meta := `"meta":{"tag":[{"system":"https://example.org/test","code":"` + tag + `"}]}`
	var entries []string
	for i := range n {
		num := nhs.Next()
		p := fmt.Sprintf("urn:uuid:00000000-0000-4000-8000-%012d", i)
		entries = append(entries,
			`{"fullUrl":"`+p+`","resource":{"resourceType":"Patient",`+meta+`,"identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"`+num+`"}],"gender":"female"},`+
				`"request":{"method":"POST","url":"Patient","ifNoneExist":"identifier=https://fhir.nhs.uk/Id/nhs-number|`+num+`"}}`,
			`{"resource":{"resourceType":"Flag",`+meta+`,"status":"active","code":{"text":"child protection"},"subject":{"reference":"`+p+`"}},"request":{"method":"POST","url":"Flag"}}`,
			`{"resource":{"resourceType":"CarePlan",`+meta+`,"status":"active","intent":"plan","subject":{"reference":"`+p+`"}},"request":{"method":"POST","url":"CarePlan"}}`,
			`{"resource":{"resourceType":"CareTeam",`+meta+`,"status":"active","subject":{"reference":"`+p+`"}},"request":{"method":"POST","url":"CareTeam"}}`)
	}
	return []byte(`{"resourceType":"Bundle","type":"transaction","entry":[` + strings.Join(entries, ",") + `]}`)
}
