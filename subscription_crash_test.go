package main

import (
	"net/http"
	"testing"
	"time"
)

// TestCrash_SubscriptionDeliverySurvivesKill9 runs the real binary with a
// rest-hook Subscription, commits 1,000 matching Communications, kills the
// server with SIGKILL while it delivers them, restarts it on the same data
// folder and checks that every notification arrives at least once and that
// every duplicate carries the same event number (and idempotency key) for
// the same resource.
func TestCrash_SubscriptionDeliverySurvivesKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: not testing subscription delivery across SIGKILL of the cpis binary (builds and runs it)")
	}
	const total = 1000
	rc := newHookReceiver(t, 2*time.Millisecond) // a receiver slow enough that the kill lands mid-delivery
	bin := buildCPIS(t)
	dir := t.TempDir()
	p := startCPIS(t, bin, dir)
	client := &http.Client{Transport: withToken(t, dir, http.DefaultTransport)}
	sub := subscribe(t, client, p.base, rc.srv.URL+"/fhir")
	postCommunications(t, client, p.base, 0, total, 100)
	rc.waitFor(t, sub, 300, 2*time.Minute)
	p.cmd.Process.Kill() // SIGKILL
	p.wait()
	atKill := rc.received(sub)

	startCPIS(t, bin, dir)
	rc.waitFor(t, sub, total, 2*time.Minute)
	time.Sleep(200 * time.Millisecond) // let stray redeliveries land too
	rc.check(t, sub, total, false)
	t.Logf("%d notifications, %d arrived before SIGKILL, %d requests in all (%d duplicates)", total, atKill, rc.requests, rc.requests-total)
}
