package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/cpis-fhir/cpis/fhir"
	goredis "github.com/redis/go-redis/v9"
)

// MaxLen bounds each stream (approximately, trimmed on Add): entries past
// it are dropped oldest first, which loses only wake-ups (the store keeps
// the work).
const MaxLen = 100000

// Bus is a fhir.Bus on one Redis database. It is safe for concurrent use.
type Bus struct {
	prefix string // before every stream and channel name
	c      *goredis.Client
	ps     *goredis.PubSub
	msgs   chan fhir.BusMessage
	done   chan struct{}

	mu     sync.Mutex
	groups map[string]bool // stream/group pairs known to exist
}

// Open connects to the Redis database of url (redis://[user:pass@]host:port/db
// or rediss:// for TLS); prefix goes before every stream and channel name
// (channels are not per database in Redis), so that several deployments
// or tests can share one server. It does not fail when the server is
// unreachable: Ping tells; every call fails until it is back, and
// listening resumes.
func Open(url, prefix string) (*Bus, error) {
	opt, err := goredis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = 2*time.Second, 3*time.Second, 3*time.Second
	opt.MaxRetries = 1
	b := &Bus{prefix: prefix, c: goredis.NewClient(opt), msgs: make(chan fhir.BusMessage, 1024), done: make(chan struct{}), groups: map[string]bool{}}
	b.ps = b.c.Subscribe(context.Background())
	go b.forward()
	return b, nil
}

// forward copies pub/sub messages to msgs, dropping them when nobody
// keeps up (a message is a wake-up, never the only copy of anything).
func (b *Bus) forward() {
	ch := b.ps.Channel(goredis.WithChannelHealthCheckInterval(5 * time.Second))
	for {
		select {
		case m, ok := <-ch:
			if !ok {
				return
			}
			select {
			case b.msgs <- fhir.BusMessage{Channel: strings.TrimPrefix(m.Channel, b.prefix), Payload: m.Payload}:
			default:
			}
		case <-b.done:
			return
		}
	}
}

// Ping checks that the server answers.
func (b *Bus) Ping(ctx context.Context) error {
	if err := b.c.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	return nil
}

// Add implements fhir.Bus.
func (b *Bus) Add(ctx context.Context, stream string, values map[string]string) error {
	err := b.c.XAdd(ctx, &goredis.XAddArgs{Stream: b.prefix + stream, MaxLen: MaxLen, Approx: true, Values: values}).Err()
	if err != nil {
		return fmt.Errorf("redis: add: %w", err)
	}
	return nil
}

// Read implements fhir.Bus.
func (b *Bus) Read(ctx context.Context, stream, group, consumer string, count int, block time.Duration) ([]fhir.BusEntry, error) {
	if err := b.group(ctx, stream, group); err != nil {
		return nil, err
	}
	res, err := b.c.XReadGroup(ctx, &goredis.XReadGroupArgs{Group: group, Consumer: consumer, Streams: []string{b.prefix + stream, ">"}, Count: int64(count), Block: block}).Result()
	if errors.Is(err, goredis.Nil) {
		return nil, nil
	}
	if err != nil {
		b.lost(stream, group, err)
		return nil, fmt.Errorf("redis: read: %w", err)
	}
	var out []fhir.BusEntry
	for _, s := range res {
		out = append(out, entries(s.Messages)...)
	}
	return out, nil
}

// Claim implements fhir.Bus.
func (b *Bus) Claim(ctx context.Context, stream, group, consumer string, idle time.Duration, count int) ([]fhir.BusEntry, error) {
	if err := b.group(ctx, stream, group); err != nil {
		return nil, err
	}
	msgs, _, err := b.c.XAutoClaim(ctx, &goredis.XAutoClaimArgs{Stream: b.prefix + stream, Group: group, Consumer: consumer, MinIdle: idle, Start: "0-0", Count: int64(count)}).Result()
	if err != nil {
		b.lost(stream, group, err)
		return nil, fmt.Errorf("redis: claim: %w", err)
	}
	return entries(msgs), nil
}

// Ack implements fhir.Bus.
func (b *Bus) Ack(ctx context.Context, stream, group string, ids ...string) error {
	if len(ids) == 0 {
		return nil
	}
	if err := b.c.XAck(ctx, b.prefix+stream, group, ids...).Err(); err != nil {
		return fmt.Errorf("redis: ack: %w", err)
	}
	return nil
}

// group creates stream and its consumer group (reading new entries only)
// unless known to exist.
func (b *Bus) group(ctx context.Context, stream, group string) error {
	k := stream + "\x00" + group
	b.mu.Lock()
	ok := b.groups[k]
	b.mu.Unlock()
	if ok {
		return nil
	}
	err := b.c.XGroupCreateMkStream(ctx, b.prefix+stream, group, "$").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return fmt.Errorf("redis: create group: %w", err)
	}
	b.mu.Lock()
	b.groups[k] = true
	b.mu.Unlock()
	return nil
}

// lost forgets that the group exists when the server says it does not (it
// was flushed or restarted empty), so that the next call creates it again.
func (b *Bus) lost(stream, group string, err error) {
	if strings.HasPrefix(err.Error(), "NOGROUP") {
		b.mu.Lock()
		delete(b.groups, stream+"\x00"+group)
		b.mu.Unlock()
	}
}

func entries(msgs []goredis.XMessage) []fhir.BusEntry {
	out := make([]fhir.BusEntry, 0, len(msgs))
	for _, m := range msgs {
		e := fhir.BusEntry{ID: m.ID, Values: make(map[string]string, len(m.Values))}
		for k, v := range m.Values {
			e.Values[k], _ = v.(string)
		}
		out = append(out, e)
	}
	return out
}

// Once records key (under the prefix) for ttl and reports whether it was
// new (SET NX): a set of one-time values several processes share, such as
// used client assertion jtis (smart.Onces).
func (b *Bus) Once(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	ok, err := b.c.SetNX(ctx, b.prefix+key, "1", max(ttl, time.Millisecond)).Result()
	if err != nil {
		return false, fmt.Errorf("redis: once: %w", err)
	}
	return ok, nil
}

// gcra is the generic cell rate algorithm on one key holding the
// theoretical arrival time (ms, Redis clock): KEYS[1]; ARGV interval ms
// (1000/rate), burst. It returns 0 when a token was taken, else the wait in
// ms.
var gcra = goredis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or now), now)
local allowAt = tat + interval - interval * tonumber(ARGV[2])
if allowAt > now then
  return math.max(1, math.ceil(allowAt - now))
end
local new = tat + interval
redis.call('SET', KEYS[1], tostring(new), 'PX', math.max(1, math.ceil(new - now)))
return 0
`)

// Take takes one token from the bucket key (under the prefix), refilled
// at rate a second up to burst, for every process sharing the Redis
// (server.Buckets); when it is empty it returns how long until one is
// back.
func (b *Bus) Take(ctx context.Context, key string, rate float64, burst int) (bool, time.Duration, error) {
	wait, err := gcra.Run(ctx, b.c, []string{b.prefix + key}, 1000/rate, max(burst, 1)).Int64()
	if err != nil {
		return false, 0, fmt.Errorf("redis: take: %w", err)
	}
	return wait == 0, time.Duration(wait) * time.Millisecond, nil
}

// Publish implements fhir.Bus.
func (b *Bus) Publish(ctx context.Context, channel, msg string) (int64, error) {
	n, err := b.c.Publish(ctx, b.prefix+channel, msg).Result()
	if err != nil {
		return 0, fmt.Errorf("redis: publish: %w", err)
	}
	return n, nil
}

// Listen implements fhir.Bus. A channel is listened to even when the server
// is unreachable now: the subscription is made again on reconnection.
func (b *Bus) Listen(ctx context.Context, channels ...string) error {
	if err := b.ps.Subscribe(ctx, b.names(channels)...); err != nil {
		return fmt.Errorf("redis: listen: %w", err)
	}
	return nil
}

// Leave implements fhir.Bus.
func (b *Bus) Leave(ctx context.Context, channels ...string) error {
	if err := b.ps.Unsubscribe(ctx, b.names(channels)...); err != nil {
		return fmt.Errorf("redis: leave: %w", err)
	}
	return nil
}

func (b *Bus) names(channels []string) []string {
	out := make([]string, len(channels))
	for i, c := range channels {
		out[i] = b.prefix + c
	}
	return out
}

// Messages implements fhir.Bus.
func (b *Bus) Messages() <-chan fhir.BusMessage { return b.msgs }

// Purge deletes every key under the bus's prefix (streams, one-time
// values, buckets), as tests do after themselves.
func (b *Bus) Purge(ctx context.Context) error {
	iter := b.c.Scan(ctx, 0, b.prefix+"*", 100).Iterator()
	for iter.Next(ctx) {
		if err := b.c.Del(ctx, iter.Val()).Err(); err != nil {
			return fmt.Errorf("redis: purge: %w", err)
		}
	}
	if err := iter.Err(); err != nil {
		return fmt.Errorf("redis: purge: %w", err)
	}
	return nil
}

// Close implements fhir.Bus.
func (b *Bus) Close() error {
	close(b.done)
	return errors.Join(b.ps.Close(), b.c.Close())
}
