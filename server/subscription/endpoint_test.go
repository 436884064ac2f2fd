package subscription_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cpis-fhir/cpis/server/subscription"
)

func TestEndpoints_Check(t *testing.T) {
	def, err := subscription.NewEndpoints(nil)
	if err != nil {
		t.Fatal(err)
	}
	list, err := subscription.NewEndpoints([]string{"127.0.0.1:9000", "hooks.la1.example", "https://la2.example/cpis/"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name     string
		eps      *subscription.Endpoints
		endpoint string
		want     string // "" allowed, else part of the reason
	}{
		{"public address", def, "https://8.8.8.8/hook", ""},
		{"loopback", def, "http://127.0.0.1:9000/hook", "internal address"},
		{"loopback name", def, "http://localhost:9000/hook", "internal address"},
		{"IPv6 loopback", def, "http://[::1]:9000/hook", "internal address"},
		{"private", def, "http://10.1.2.3/hook", "internal address"},
		{"link-local metadata", def, "http://169.254.169.254/latest/meta-data", "internal address"},
		{"unspecified", def, "http://0.0.0.0:9000/hook", "internal address"},
		{"mapped IPv4 loopback", def, "http://[::ffff:127.0.0.1]/hook", "internal address"},
		{"listed host and port", list, "http://127.0.0.1:9000/hook", ""},
		{"listed host, other port", list, "http://127.0.0.1:9001/hook", "not on this server's list"},
		{"listed host name", list, "https://hooks.la1.example/x", ""},
		{"listed prefix", list, "https://la2.example/cpis/hook", ""},
		{"outside the prefix", list, "https://la2.example/other", "not on this server's list"},
		{"public but unlisted", list, "https://8.8.8.8/hook", "not on this server's list"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.eps.Check(context.Background(), c.endpoint)
			switch {
			case c.want == "" && err != nil:
				t.Errorf("Check(%s): %v, want allowed", c.endpoint, err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Errorf("Check(%s): %v, want a refusal about %q", c.endpoint, err, c.want)
			}
		})
	}
	if _, err := subscription.NewEndpoints([]string{"ftp://x/"}); err == nil {
		t.Error("NewEndpoints(ftp://x/): no error, want one")
	}
}

// TestEndpoints_RefusedAtDelivery stores Subscriptions past the write check
// (as if their host had resolved to a public address then) and shows that
// the engine still calls no internal address: the name localhost resolves
// to loopback when the connection is made.
func TestEndpoints_RefusedAtDelivery(t *testing.T) {
	rc := newReceiver(t)
	def, err := subscription.NewEndpoints(nil)
	if err != nil {
		t.Fatal(err)
	}
	e := start(t, subscription.Config{Endpoints: def, Horizon: 100 * time.Millisecond})
	byName := strings.Replace(rc.URL, "127.0.0.1", "localhost", 1)
	for _, endpoint := range []string{rc.URL, byName} {
		sub := e.create(t, subscriptionJSON("LA1", "Communication", endpoint, ""))
		eventually(t, "status active", func() bool { s, _ := e.status(t, sub.ID); return s == "active" })
		e.create(t, communicationJSON("LA1", "x"))
		eventually(t, "status error", func() bool { s, _ := e.status(t, sub.ID); return s == "error" })
		if _, reason := e.status(t, sub.ID); !strings.Contains(reason, "internal address") {
			t.Errorf("Subscription to %s: error %q, want the refused internal address", endpoint, reason)
		}
	}
	if got := rc.receipts(); len(got) != 0 {
		t.Errorf("receiver on loopback got %d requests, want none", len(got))
	}
}
