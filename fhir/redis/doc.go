// Package redis is a fhir.Bus on Redis (go-redis/v9): streams with consumer
// groups (XADD, XREADGROUP, XAUTOCLAIM, XACK) and pub/sub channels, plus
// what else several server processes share there: one-time values (SET
// NX, for used client assertion jtis) and rate-limit buckets (a GCRA
// script). Nothing it holds is the only copy of anything: the store is the
// source of truth, and losing Redis (stopped, flushed) only costs latency
// or lets each process fall back on its own state. See
// https://redis.io/docs/latest/develop/data-types/streams/.
package redis
