package fhir_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"

	"github.com/cpis-fhir/cpis/fhir"
)

// TestService_Validate: the Validate hook sees every resource written once,
// before the write, with a resolver that finds the other entries of the
// Bundle and the stored resources; its error fails the write.
func TestService_Validate(t *testing.T) {
	svc, st := newService(t)
	ctx := context.Background()
	var mu sync.Mutex
	var calls []string    // type of each resource validated
	var subjects []string // resourceType (and gender) of each Flag's subject as resolved
	svc.Validate = func(p *fhir.Parsed, body []byte, resolve func(string) []byte) error {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, p.Type)
		if p.Type != "Flag" {
			return nil
		}
		if body == nil {
			b, err := svc.Codec.Marshal(p)
			if err != nil {
				return err
			}
			body = b
		}
		var f struct{ Subject struct{ Reference string } }
		json.Unmarshal(body, &f)
		var pt struct{ ResourceType, Gender string }
		if b := resolve(f.Subject.Reference); b != nil {
			json.Unmarshal(b, &pt)
		}
		subjects = append(subjects, pt.ResourceType+" "+pt.Gender)
		if pt.Gender == "male" {
			return fhir.Errorf(fhir.IssueBusinessRule, "refused")
		}
		return nil
	}
	reset := func() { calls, subjects = nil, nil }
	flag := func(subject string) string {
		return `{"resourceType":"Flag","status":"active","code":{"text":"cp"},"subject":{"reference":"` + subject + `"}}`
	}
	const pu = "urn:uuid:00000000-0000-4000-8000-000000000001"
	tx := func(gender, extra string) string {
		return `{"resourceType":"Bundle","type":"transaction","entry":[
			{"fullUrl":"` + pu + `","resource":{"resourceType":"Patient","gender":"` + gender + `"},"request":{"method":"POST","url":"Patient"}},
			{"resource":` + flag(pu) + `,"request":{"method":"POST","url":"Flag"}}` + extra + `]}`
	}
	del := `,{"request":{"method":"DELETE","url":"Basic/gone"}}`

	for _, tt := range []struct {
		name, body string
		fails      bool
	}{
		{"planned, female subject in the Bundle", tx("female", ""), false},
		{"not planned (a DELETE), female subject in the Bundle", tx("female", del), false},
		{"planned, male subject refused", tx("male", ""), true},
		{"not planned, male subject refused", tx("male", del), true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			reset()
			before := countVersions(t, st)
			_, err := svc.Bundle(ctx, parseBody(t, svc, tt.body), fhir.BundleOptions{BaseURL: "http://x/fhir"})
			if (err != nil) != tt.fails {
				t.Fatalf("Bundle: error %v, want failure %v", err, tt.fails)
			}
			if got, want := len(calls), 2; got != want {
				t.Errorf("Validate called for %v, want once for each of the 2 POST entries", calls)
			}
			want := "Patient female"
			if tt.fails {
				want = "Patient male"
			}
			if len(subjects) != 1 || subjects[0] != want {
				t.Errorf("Flag subject resolved as %q, want %q", subjects, want)
			}
			if n := countVersions(t, st) - before; tt.fails && n != 0 {
				t.Errorf("a refused transaction wrote %d versions, want 0", n)
			}
		})
	}

	t.Run("single writes resolve the store", func(t *testing.T) {
		reset()
		if _, _, err := svc.Update(ctx, "Patient", "m", parseBody(t, svc, `{"resourceType":"Patient","id":"m","gender":"male"}`), 0); err != nil {
			t.Fatal(err)
		}
		if _, err := svc.Create(ctx, parseBody(t, svc, flag("Patient/m"))); fhir.ErrorCode(err) != fhir.IssueBusinessRule {
			t.Errorf("Create of a Flag on Patient/m: error %v, want the hook's business-rule", err)
		}
		if _, err := svc.Create(ctx, parseBody(t, svc, flag("Patient/unknown"))); err != nil {
			t.Errorf("Create of a Flag on an unknown Patient: %v, want it accepted", err)
		}
		if got := subjects; len(got) != 2 || got[0] != "Patient male" || got[1] != " " {
			t.Errorf("subjects resolved %q, want [Patient male, (nothing)]", got)
		}
	})

	t.Run("batch fails the entry only", func(t *testing.T) {
		body := `{"resourceType":"Bundle","type":"batch","entry":[
			{"resource":` + flag("Patient/m") + `,"request":{"method":"POST","url":"Flag"}},
			{"resource":` + flag("Patient/unknown") + `,"request":{"method":"POST","url":"Flag"}}]}`
		res, err := svc.Bundle(ctx, parseBody(t, svc, body), fhir.BundleOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if res.Entries[0].Err == nil || res.Entries[1].Err != nil || res.Entries[1].Status != 201 {
			t.Errorf("batch entries %+v, want the first refused and the second created", res.Entries)
		}
	})
}

// countVersions counts the versions in the system history.
func countVersions(tb testing.TB, st fhir.Store) int {
	tb.Helper()
	page, err := st.History(context.Background(), fhir.HistoryQuery{Count: 1000})
	if err != nil {
		tb.Fatal(err)
	}
	return len(page.Versions)
}
