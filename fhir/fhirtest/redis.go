package fhirtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/cpis-fhir/cpis/fhir/redis"
)

// RedisAddr is where tests find Redis (bash .ci/run starts one there).
const RedisAddr = "127.0.0.1:6379"

// NeedRedis returns the URL of the Redis at RedisAddr and a key prefix of
// tb's own, whose keys are deleted when tb ends. When Redis does not
// answer it skips tb, naming what was not tested, or fails it when env CI
// is set.
func NeedRedis(tb testing.TB, what string) (url, prefix string) {
	tb.Helper()
	c, err := net.DialTimeout("tcp", RedisAddr, time.Second)
	if err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("CI: no Redis at %s: %v", RedisAddr, err)
		}
		tb.Skipf("no Redis at %s: not testing %s (%v)", RedisAddr, what, err)
	}
	c.Close()
	url, prefix = "redis://"+RedisAddr+"/0", fmt.Sprintf("cpis-test-%d-%d:", os.Getpid(), time.Now().UnixNano())
	tb.Cleanup(func() {
		if b, err := redis.Open(url, prefix); err == nil {
			b.Purge(context.Background())
			b.Close()
		}
	})
	return url, prefix
}
