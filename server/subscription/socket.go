package subscription

// The R4 websocket channel: a client connected to the server's websocket
// binds to a Subscription ("bind <id>") and receives "ping <id>" for each
// notification. See https://hl7.org/fhir/R4/subscription.html#2.46.7.2.

import (
	"context"
	"errors"
	"sync"
)

// sockets are the bound websocket clients, by Subscription id.
type sockets struct {
	mu    sync.Mutex
	bound map[string]map[chan string]struct{}
}

// Bind registers a websocket client of Subscription id: each notification
// delivered to it sends "ping <id>" on the returned channel, or for a
// topic-based Subscription the notification Bundle (JSON), after a
// handshake Bundle sent at once (buffered; a client that falls 64 messages
// behind misses them and the notification is retried). The caller checks
// that the client may read the Subscription, and calls unbind when the
// socket closes. Safe for concurrent use.
// See https://hl7.org/fhir/uv/subscriptions-backport/channels.html.
func (e *Engine) Bind(id string) (msgs <-chan string, unbind func()) {
	ch := make(chan string, 64)
	if hs := e.socketHandshake(id); hs != nil {
		ch <- string(hs)
	}
	e.socks.mu.Lock()
	if e.socks.bound == nil {
		e.socks.bound = map[string]map[chan string]struct{}{}
	}
	if e.socks.bound[id] == nil {
		e.socks.bound[id] = map[chan string]struct{}{}
	}
	e.socks.bound[id][ch] = struct{}{}
	first := len(e.socks.bound[id]) == 1
	e.socks.mu.Unlock()
	ctx := context.Background()
	if e.cfg.Bus != nil {
		// The process delivering the subscription may be another: its pings
		// come through the bus, and it retries at once.
		if first {
			e.busFailed(e.cfg.Bus.Listen(ctx, socketChannels+id))
		}
		e.publish(ctx, wakeChannel, id)
	}
	e.poke(id) // notifications waiting for a client go now
	return ch, func() {
		e.socks.mu.Lock()
		delete(e.socks.bound[id], ch)
		last := len(e.socks.bound[id]) == 0
		if last {
			delete(e.socks.bound, id)
		}
		e.socks.mu.Unlock()
		if last && e.cfg.Bus != nil {
			e.busFailed(e.cfg.Bus.Leave(ctx, socketChannels+id))
		}
	}
}

var errNoSocket = errors.New("no websocket client is bound to the subscription")

// socketHandshake is the handshake Bundle of the topic-based websocket
// Subscription id, nil for any other.
func (e *Engine) socketHandshake(id string) []byte {
	e.mu.Lock()
	s, events := e.subs[id], e.delivered[id]
	e.mu.Unlock()
	if s == nil || s.topic == nil || s.channel != "websocket" {
		return nil
	}
	b, err := notificationBundle(s, "handshake", events, nil, nil, "")
	if err != nil {
		return nil
	}
	return b
}

// ping sends "ping <id>" to the clients bound to id; an error when none
// took it.
func (e *Engine) ping(id string) error { return e.push(id, "ping "+id) }

// push sends msg to the clients bound to id, at every process when shared;
// an error when none took it (shared: no process has one bound).
func (e *Engine) push(id, msg string) error {
	if e.cfg.Bus != nil {
		n, err := e.cfg.Bus.Publish(context.Background(), socketChannels+id, msg)
		if !e.busFailed(err) {
			if n == 0 {
				return errNoSocket
			}
			return nil
		}
	}
	return e.pushLocal(id, msg)
}

// pushLocal sends msg to the clients bound to id at this process; an error
// when none took it.
func (e *Engine) pushLocal(id, msg string) error {
	e.socks.mu.Lock()
	defer e.socks.mu.Unlock()
	sent := false
	for ch := range e.socks.bound[id] {
		select {
		case ch <- msg:
			sent = true
		default:
		}
	}
	if !sent {
		return errNoSocket
	}
	return nil
}
