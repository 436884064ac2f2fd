package fhir

import (
	"context"
	"time"
)

// Bus carries work and wake-ups between the server processes that share one
// store: streams read by consumer groups (each entry goes to one consumer
// of the group, and stays pending until acknowledged, so that another
// consumer can claim it when its consumer died) and broadcast channels. A
// Bus never holds the only copy of anything: what it carries can be
// rebuilt from the store, so losing it (stopped, flushed) only delays work.
// fhir/redis implements it; implementations are safe for concurrent use.
type Bus interface {
	// Add appends an entry with values to stream.
	Add(ctx context.Context, stream string, values map[string]string) error
	// Read returns up to count entries of stream that no consumer of group
	// has had yet, for consumer, waiting up to block for the first. The
	// stream and the group are created when missing.
	Read(ctx context.Context, stream, group, consumer string, count int, block time.Duration) ([]BusEntry, error)
	// Claim hands to consumer up to count entries of stream that another
	// consumer of group has had for longer than idle without acknowledging
	// them.
	Claim(ctx context.Context, stream, group, consumer string, idle time.Duration, count int) ([]BusEntry, error)
	// Ack acknowledges entries of stream read by group.
	Ack(ctx context.Context, stream, group string, ids ...string) error
	// Publish sends msg to the listeners of channel now (none later) and
	// returns how many processes listen to it.
	Publish(ctx context.Context, channel, msg string) (int64, error)
	// Listen adds channels to those whose messages come on Messages; Leave
	// removes them. Listening survives reconnections.
	Listen(ctx context.Context, channels ...string) error
	Leave(ctx context.Context, channels ...string) error
	// Messages receives the messages of the channels listened to.
	Messages() <-chan BusMessage
	// Close releases the bus.
	Close() error
}

// BusEntry is one entry of a Bus stream.
type BusEntry struct {
	ID     string
	Values map[string]string
}

// BusMessage is one message of a Bus channel.
type BusMessage struct {
	Channel, Payload string
}
