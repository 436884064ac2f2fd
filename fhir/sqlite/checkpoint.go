package sqlite

import (
	"context"
	"database/sql"
	"time"
)

// Checkpoints. SQLite in WAL mode appends each commit's pages to the WAL
// and copies them into the database file at a checkpoint. By default the
// writer checkpoints inside every commit that leaves more than 1,000 pages
// in the WAL, which during an upload is every commit: a council's Bundle
// of a hundred resources dirties several hundred pages, spread over the
// index B-trees, so each commit copied and synced them again. The store
// instead
//   - lets the writer checkpoint only past autoCheckpointPages, so that a
//     page written by many commits is copied once (a national seed's last
//     40,000 children: 2,118 -> 2,587-2,697 resources a second);
//   - checkpoints in the background, on a connection of its own, at most
//     every checkpointGap after commits (PASSIVE: it never blocks the
//     writer or the readers), so that in steady use the WAL is copied in
//     steps and the writer's own checkpoint, when it comes, finds little
//     left: a large checkpoint inside a commit would hold up every write
//     behind it, among them the access history of a flagged child's
//     lookup.
// See https://sqlite.org/wal.html#checkpointing.

// autoCheckpointPages is the writer's wal_autocheckpoint: about 200 MB of
// WAL, in 4 KiB pages.
const autoCheckpointPages = 50000

// checkpointGap is the least time between two background checkpoints.
// A page that several commits wrote in that time (the right edges of the
// B-trees, the interior pages, a busy code's run of index rows) is copied
// once. During an upload 2 s leaves about 100 MB in the WAL, half the
// writer's own threshold; against 200 ms it made 9-10% fewer write system
// calls and used 8% less CPU (20,000 more children onto the national
// set), and 1 s, 3 s and 5 s were no better.
const checkpointGap = 2 * time.Second

// checkpointer runs a PASSIVE checkpoint on db after each kick (a commit
// that wrote), at most every checkpointGap, until stop is closed; then it
// closes db and done.
func checkpointer(db *sql.DB, kick, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	defer db.Close()
	var last time.Time
	for {
		select {
		case <-kick:
		case <-stop:
			return
		}
		if d := checkpointGap - time.Since(last); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-stop:
				t.Stop()
				return
			}
		}
		last = time.Now()
		// A failure (SQLITE_BUSY while another checkpoint runs) leaves the
		// frames for the next one.
		db.ExecContext(context.Background(), `PRAGMA wal_checkpoint(PASSIVE)`)
	}
}

// kickCheckpoint asks the checkpointer for a checkpoint, without waiting.
func (s *Store) kickCheckpoint() {
	select {
	case s.ckKick <- struct{}{}:
	default:
	}
}
