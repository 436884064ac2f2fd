package smart

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ReplayStore remembers one-time values (client assertion jtis, used refresh
// tokens) until they expire, in memory and in an append-only file that is
// fsynced before Use answers, so that a value used once is refused again
// after a restart. Only SHA-256 hashes of the values are kept. It is safe
// for concurrent use.
//
// See https://hl7.org/fhir/smart-app-launch/backend-services.html#signed-authentication-jwt
// (the jti must not be reused).
type ReplayStore struct {
	path   string // "" keeps the values in memory only
	shared Onces  // the values of the other server processes, or nil

	mu   sync.Mutex
	seen map[string]time.Time // hash -> expiry
	f    *os.File
	now  func() time.Time
}

// OpenReplayStore opens (creating) the replay file at path, dropping the
// values that expired; an empty path keeps values in memory only.
func OpenReplayStore(path string, now func() time.Time) (*ReplayStore, error) {
	if now == nil {
		now = time.Now
	}
	r := &ReplayStore{path: path, seen: map[string]time.Time{}, now: now}
	if path == "" {
		return r, nil
	}
	if f, err := os.Open(path); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			exp, h, ok := strings.Cut(sc.Text(), " ")
			sec, err := strconv.ParseInt(exp, 10, 64)
			if !ok || err != nil {
				continue // a line cut short by a crash
			}
			if t := time.Unix(sec, 0); t.After(now()) {
				r.seen[h] = t
			}
		}
		f.Close()
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("replay store: %w", err)
	}
	// Compact: rewrite the live values, then append from there.
	var b strings.Builder
	for h, t := range r.seen {
		fmt.Fprintf(&b, "%d %s\n", t.Unix(), h)
	}
	if err := writeFileAtomic(path, []byte(b.String())); err != nil {
		return nil, fmt.Errorf("replay store: %w", err)
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("replay store: %w", err)
	}
	r.f = f
	return r, nil
}

// Onces is a set of one-time values that several server processes share
// (fhir/redis implements it with SET NX). It is safe for concurrent use.
type Onces interface {
	// Once records key for ttl and reports whether it was new.
	Once(ctx context.Context, key string, ttl time.Duration) (bool, error)
}

// OpenSharedReplayStore is OpenReplayStore whose values are also checked
// against, and recorded in, shared: a value used at another server
// process is refused too. When shared fails (Redis down), Use goes on with
// this process's values alone: a value used at another process may then be
// used once more here, which is logged by shared's implementation; the
// alternative, refusing every token request during the outage, would stop
// every client.
func OpenSharedReplayStore(path string, now func() time.Time, shared Onces) (*ReplayStore, error) {
	r, err := OpenReplayStore(path, now)
	if err != nil {
		return nil, err
	}
	r.shared = shared
	return r, nil
}

// Use records value until exp and reports whether it was fresh (never used
// before, here or, with a shared set, at another process). An error means
// the value could not be recorded durably; the caller must then refuse it.
func (r *ReplayStore) Use(value string, exp time.Time) (bool, error) {
	sum := sha256.Sum256([]byte(value))
	h := hex.EncodeToString(sum[:])
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if t, ok := r.seen[h]; ok && t.After(now) {
		return false, nil
	}
	if r.shared != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		fresh, err := r.shared.Once(ctx, "jti:"+h, exp.Add(time.Second).Sub(now))
		cancel()
		if err == nil && !fresh {
			return false, nil
		}
	}
	if r.f != nil {
		if _, err := fmt.Fprintf(r.f, "%d %s\n", exp.Unix()+1, h); err != nil {
			return false, fmt.Errorf("replay store: %w", err)
		}
		if err := r.f.Sync(); err != nil {
			return false, fmt.Errorf("replay store: %w", err)
		}
	}
	r.seen[h] = exp.Add(time.Second)
	if len(r.seen)%1024 == 0 {
		for k, t := range r.seen {
			if !t.After(now) {
				delete(r.seen, k)
			}
		}
	}
	return true, nil
}

// Close closes the file.
func (r *ReplayStore) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	return err
}
