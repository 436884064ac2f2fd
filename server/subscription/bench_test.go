package subscription_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/server/subscription"
)

// BenchmarkDelivery_CommitToArrival writes at 200 a second (each write from
// its own goroutine, as HTTP clients would) and measures, per
// notification, the time from the write's durable commit (Service.Create
// returning) to the rest-hook request reaching a local receiver. Reports
// p50 and p99 in ms. Run with -benchtime=1x: each iteration is 2 s of
// load. Cases: "communication", a criteria Subscription for one council's
// Communications (full resource PUT); "flagged-encounter", the Backport
// topic "Encounter for a flagged child" (id-only notification Bundles),
// with 100 children of whom every Encounter's subject is flagged;
// "communication-shared", the first with two engines sharing the store and
// Redis (sharedPair), the writes going through both stores in turn.
func BenchmarkDelivery_CommitToArrival(b *testing.B) {
	const rate, seconds = 200, 2
	for _, c := range []string{"communication", "flagged-encounter", "communication-shared"} {
		b.Run(c, func(b *testing.B) {
			var mu sync.Mutex
			arrived := map[string]time.Time{}
			rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				now := time.Now()
				key := r.URL.Path
				if c == "flagged-encounter" {
					var body struct {
						Entry []struct {
							Resource struct {
								Parameter []struct {
									Name string
									Part []struct {
										Name           string
										ValueReference struct{ Reference string }
									}
								}
							}
						}
					}
					raw, _ := io.ReadAll(r.Body)
					json.Unmarshal(raw, &body)
					if len(body.Entry) > 0 {
						for _, p := range body.Entry[0].Resource.Parameter {
							for _, part := range p.Part {
								if part.Name == "focus" {
									ref := part.ValueReference.Reference
									key = ref[:strings.Index(ref, "/_history")]
								}
							}
						}
					}
				}
				mu.Lock()
				arrived[key] = now
				mu.Unlock()
			}))
			defer rc.Close()
			var e, other *env
			if c == "communication-shared" {
				e, other = sharedPair(b)
			} else {
				e = startB(b, subscription.Config{})
				other = e
			}
			var sub *fhir.Resource
			var body func(i int) string
			if c != "flagged-encounter" {
				sub = e.create(b, subscriptionJSON("LA1", "Communication?recipient:identifier="+ods+"|LA1", rc.URL+"/fhir", `,"payload":"application/fhir+json"`))
				body = func(int) string { return communicationJSON("LA1", "x") }
			} else {
				for i := range 100 {
					id := fmt.Sprintf("child-%d", i)
					e.update(b, "Patient", id, `{"resourceType":"Patient","id":"`+id+`"}`)
					e.create(b, `{"resourceType":"Flag","status":"active","code":{"coding":[{"system":"https://fhir.nhs.uk/England/CodeSystem/England-FlagCategoryPatient","code":"child-protection-information-system-flag"}]},"subject":{"reference":"Patient/`+id+`"}}`)
				}
				sub = e.create(b, topicSubscriptionJSON("", subscription.Topics[1].URL, "", rc.URL, "id-only", ""))
				body = func(i int) string {
					return fmt.Sprintf(`{"resourceType":"Encounter","status":"finished","class":{"code":"EMER"},"subject":{"reference":"Patient/child-%d"}}`, i%100)
				}
			}
			waitActive(b, e, sub.ID)
			var lat []time.Duration
			for b.Loop() {
				var wg sync.WaitGroup
				committed := map[string]time.Time{}
				var cmu sync.Mutex
				tick := time.NewTicker(time.Second / rate)
				for i := range rate * seconds {
					<-tick.C
					wg.Add(1)
					go func() {
						defer wg.Done()
						w := e
						if i%2 == 1 {
							w = other
						}
						r := w.create(b, body(i))
						at := time.Now()
						key := "/fhir/" + r.Ref()
						if c == "flagged-encounter" {
							key = r.Ref()
						}
						cmu.Lock()
						committed[key] = at
						cmu.Unlock()
					}()
				}
				tick.Stop()
				wg.Wait()
				deadline := time.Now().Add(30 * time.Second)
				for {
					mu.Lock()
					n := 0
					for p := range committed {
						if _, ok := arrived[p]; ok {
							n++
						}
					}
					mu.Unlock()
					if n == len(committed) || time.Now().After(deadline) {
						break
					}
					time.Sleep(5 * time.Millisecond)
				}
				mu.Lock()
				for p, at := range committed {
					if got, ok := arrived[p]; ok {
						lat = append(lat, max(0, got.Sub(at)))
					} else {
						b.Errorf("%s: no notification within 30 s", p)
					}
				}
				mu.Unlock()
			}
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			if len(lat) > 0 {
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
			}
		})
	}
}

// BenchmarkWrite_Subscriptions measures a Communication create (the commit
// included) with the engine running and 0 or 1,000 active Subscriptions,
// one per council: "notify" writes each notify one of them (a durable
// notification and a delivery per write), "nomatch" writes match none (the
// matching cost alone). serial is one writer; parallel is b.RunParallel
// writers, whose commits the store groups.
func BenchmarkWrite_Subscriptions(b *testing.B) {
	for _, c := range []struct {
		name   string
		subs   int
		notify bool
	}{{"0", 0, false}, {"1000-nomatch", 1000, false}, {"1000-notify", 1000, true}} {
		for _, par := range []bool{false, true} {
			name := c.name + "/serial"
			if par {
				name = c.name + "/parallel"
			}
			b.Run(name, func(b *testing.B) {
				rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
				defer rc.Close()
				e := startB(b, subscription.Config{})
				var last string
				for i := range c.subs {
					last = e.create(b, subscriptionJSON(fmt.Sprintf("LA%d", i), fmt.Sprintf("Communication?recipient:identifier=%s|LA%d", ods, i), rc.URL, "")).ID
				}
				if last != "" {
					waitActive(b, e, last)
				}
				var n atomic.Int64
				write := func() {
					la := "OTHER"
					if c.notify {
						la = fmt.Sprintf("LA%d", n.Add(1)%1000)
					}
					e.create(b, communicationJSON(la, "x"))
				}
				b.ReportAllocs()
				if par {
					b.SetParallelism(8)
					b.ResetTimer()
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							write()
						}
					})
					return
				}
				for b.Loop() {
					write()
				}
			})
		}
	}
}

func waitActive(b *testing.B, e *env, id string) {
	b.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		r, err := e.store.Read(context.Background(), "Subscription", id)
		if err == nil && r.VersionID > 1 {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("Subscription/%s not active within 2 minutes", id)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
