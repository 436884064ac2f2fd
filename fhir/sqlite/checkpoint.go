package sqlite

import (
	"database/sql"
	"sync/atomic"
	"time"
)

// The WAL checkpoint, in the background: the writer's connection has
// SQLite's automatic checkpoint off (wal_autocheckpoint(0)), which would
// otherwise copy the WAL into the database file inside the COMMIT of every
// write that crosses 1,000 pages, holding up that write and every write
// queued behind it. Instead a goroutine runs a PASSIVE checkpoint on a
// connection of its own at most every checkpointEvery after commits: it
// never blocks the writer or the readers, and the writer restarts the WAL
// from its beginning once a checkpoint has copied all of it.
// See https://www.sqlite.org/wal.html#ckpt.

// checkpointEvery is the most often the WAL is checkpointed.
const checkpointEvery = 100 * time.Millisecond

// checkpoint is the Store's background checkpoint.
type checkpoint struct {
	db    *sql.DB
	dirty atomic.Bool // a commit wrote since the last checkpoint
	stop  chan struct{}
	done  chan struct{}
}

// start opens the checkpoint's connection and starts its goroutine.
func (c *checkpoint) start(dsn string) error {
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return err
	}
	db.SetMaxOpenConns(1)
	c.db, c.stop, c.done = db, make(chan struct{}), make(chan struct{})
	go c.run()
	return nil
}

func (c *checkpoint) run() {
	defer close(c.done)
	t := time.NewTicker(checkpointEvery)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		if !c.dirty.Swap(false) {
			continue
		}
		var busy, frames, copied int
		if err := c.db.QueryRow(`PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &frames, &copied); err != nil {
			c.dirty.Store(true) // try again next time
		}
	}
}

// close stops the goroutine and closes its connection (the last
// connection to close checkpoints the WAL fully).
func (c *checkpoint) close() error {
	if c.db == nil {
		return nil
	}
	close(c.stop)
	<-c.done
	return c.db.Close()
}
