package redis_test

import (
	"context"
	"testing"
	"time"

	"github.com/cpis-fhir/cpis/fhir/fhirtest"
	"github.com/cpis-fhir/cpis/fhir/redis"
	goredis "github.com/redis/go-redis/v9"
)

const addr = fhirtest.RedisAddr

// open returns a Bus on the Redis at addr with a prefix of its own.
func open(t *testing.T) (*redis.Bus, string) {
	t.Helper()
	url, prefix := fhirtest.NeedRedis(t, "the Redis bus")
	b, err := redis.Open(url, prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b, prefix
}

// TestBus_StreamGroupClaimAck: an entry goes to one consumer of the group;
// unacknowledged, another consumer claims it; acknowledged, nobody does; a
// stream lost (deleted, as by a flush) is made again by the next read.
func TestBus_StreamGroupClaimAck(t *testing.T) {
	b, prefix := open(t)
	ctx := context.Background()
	if ens, err := b.Read(ctx, "s", "g", "a", 10, 10*time.Millisecond); err != nil || len(ens) != 0 {
		t.Fatalf("Read of an empty stream: %v %v, want none", ens, err)
	}
	if err := b.Add(ctx, "s", map[string]string{"sub": "x", "num": "1"}); err != nil {
		t.Fatal(err)
	}
	ens, err := b.Read(ctx, "s", "g", "a", 10, time.Second)
	if err != nil || len(ens) != 1 || ens[0].Values["sub"] != "x" || ens[0].Values["num"] != "1" {
		t.Fatalf("Read by a: %v %v, want the entry sub=x num=1", ens, err)
	}
	if again, err := b.Read(ctx, "s", "g", "b", 10, 10*time.Millisecond); err != nil || len(again) != 0 {
		t.Fatalf("Read by b: %v %v, want none (a has it)", again, err)
	}
	time.Sleep(5 * time.Millisecond)
	claimed, err := b.Claim(ctx, "s", "g", "b", time.Millisecond, 10)
	if err != nil || len(claimed) != 1 || claimed[0].ID != ens[0].ID {
		t.Fatalf("Claim by b: %v %v, want a's entry %s", claimed, err, ens[0].ID)
	}
	if err := b.Ack(ctx, "s", "g", claimed[0].ID); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	if claimed, err := b.Claim(ctx, "s", "g", "a", time.Millisecond, 10); err != nil || len(claimed) != 0 {
		t.Fatalf("Claim after Ack: %v %v, want none", claimed, err)
	}
	raw := goredis.NewClient(&goredis.Options{Addr: addr})
	defer raw.Close()
	raw.Del(ctx, prefix+"s")
	if _, err := b.Read(ctx, "s", "g", "a", 10, 10*time.Millisecond); err == nil {
		t.Log("first Read after the stream was lost succeeded")
	}
	if err := b.Add(ctx, "s", map[string]string{"sub": "y"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		ens, err := b.Read(ctx, "s", "g", "a", 10, 10*time.Millisecond)
		if err == nil && len(ens) == 1 && ens[0].Values["sub"] == "y" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Read after the stream was lost and added to: %v %v, want the new entry", ens, err)
		}
		b.Add(ctx, "s", map[string]string{"sub": "y"}) // the first Add may precede the group's new start
	}
}

// TestBus_PublishListen: a message reaches a bus listening to its channel
// (with its name as given, without the prefix), and Publish counts the
// listeners; after Leave it counts none.
func TestBus_PublishListen(t *testing.T) {
	b, _ := open(t)
	ctx := context.Background()
	if err := b.Listen(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	listeners(t, b, "hello", 1)
	select {
	case m := <-b.Messages():
		if m.Channel != "c" || m.Payload != "hello" {
			t.Errorf("message %+v, want channel c payload hello", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no message within 5s")
	}
	if err := b.Leave(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	listeners(t, b, "bye", 0)
}

// listeners publishes msg to channel c until Publish counts want
// listeners (listening takes effect asynchronously), within 5 s.
func listeners(t *testing.T, b *redis.Bus, msg string, want int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := b.Publish(context.Background(), "c", msg)
		if err != nil {
			t.Fatal(err)
		}
		if n == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Publish %q: %d listeners, want %d", msg, n, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestBus_TakeSharesBuckets: two buses on one Redis take from one bucket: a
// burst of 3 then a wait of about 1/rate, whichever bus asks.
func TestBus_TakeSharesBuckets(t *testing.T) {
	a, prefix := open(t)
	b, err := redis.Open("redis://"+addr+"/0", prefix)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	for i, bus := range []*redis.Bus{a, b, a} {
		if ok, wait, err := bus.Take(ctx, "bucket", 1, 3); err != nil || !ok {
			t.Fatalf("Take %d of a burst of 3: %v %v %v, want a token", i+1, ok, wait, err)
		}
	}
	ok, wait, err := b.Take(ctx, "bucket", 1, 3)
	if err != nil || ok || wait <= 0 || wait > time.Second {
		t.Fatalf("Take past the burst: %v %v %v, want none and a wait of at most 1s", ok, wait, err)
	}
}

// BenchmarkBus_Take is one shared rate-limit check (the GCRA script) on
// the local Redis.
func BenchmarkBus_Take(b *testing.B) {
	url, prefix := fhirtest.NeedRedis(b, "the cost of a shared rate limit")
	bus, err := redis.Open(url, prefix)
	if err != nil {
		b.Fatal(err)
	}
	defer bus.Close()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := bus.Take(ctx, "bench", 1e9, 1000); err != nil {
			b.Fatal(err)
		}
	}
}
