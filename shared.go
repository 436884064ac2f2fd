package main

// Several server processes on one data folder: the folder lock and the
// Redis bus they share (see README "Several server processes").

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/cpis-fhir/cpis/fhir/redis"
)

// lockFile is the file of a data folder that its server processes lock.
const lockFile = "cpis.lock"

// lockData locks the data folder dir for this process until it exits (the
// kernel drops the lock of a process that died): alone (exclusive) for a
// server without Redis, whose subscription engine and caches assume they
// are the only ones; shared by the servers given --redis-url, which
// coordinate through the store and Redis. It fails at once, with what to
// do, when another process holds the folder the other way.
func lockData(dir string, shared bool) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock data folder: %w", err)
	}
	how := syscall.LOCK_EX
	if shared {
		how = syscall.LOCK_SH
	}
	if err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB); err != nil {
		f.Close()
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("lock data folder: %w", err)
		}
		if shared {
			return nil, fmt.Errorf("data folder %s is in use by a cpis server without --redis-url; give every server of one folder the same --redis-url", dir)
		}
		return nil, fmt.Errorf("data folder %s is in use by another cpis server; stop it, or give every server of the folder the same --redis-url to share it", dir)
	}
	return f, nil
}

// openBus opens the Redis bus of url (nil for none). A Redis that does not
// answer at start is no reason to refuse: the store holds every
// notification, so the server warns and delivers from the store until
// Redis answers (then the work is shared again).
func openBus(ctx context.Context, url string, logger *slog.Logger, stderr io.Writer) (*redis.Bus, error) {
	if url == "" {
		return nil, nil
	}
	b, err := redis.Open(url, "cpis:")
	if err != nil {
		return nil, fmt.Errorf("--redis-url: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := b.Ping(pctx); err != nil {
		logger.Warn("redis does not answer; subscription notifications are delivered from the store until it does", "error", err)
		fmt.Fprintln(stderr, "cpis: WARNING: Redis (--redis-url) does not answer; delivering subscription notifications from the store until it does")
	}
	return b, nil
}

// loggedOnces is the bus's set of one-time values for smart's replay store,
// logging its failures (after which the store relies on this process's own
// values).
type loggedOnces struct {
	bus *redis.Bus
	log *slog.Logger
}

func (o loggedOnces) Once(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	ok, err := o.bus.Once(ctx, key, ttl)
	if err != nil {
		o.log.Warn("redis: one-time values not shared; checking this process's only", "error", err)
	}
	return ok, err
}
