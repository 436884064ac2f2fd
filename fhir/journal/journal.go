// Package journal is an append-only, hash-chained file of records that
// several goroutines and several processes append to: each Append returns
// once its record is durable (fsync), concurrent appends share one write
// and one fsync (group commit), and an exclusive file lock (flock) orders
// the appends of different processes into one chain.
//
// Each line of the file is one entry:
//
//	<seq> <recorded> <hash> <record>\n
//
// seq counts from 1 without gaps, recorded is the Unix milliseconds of the
// append, hash is the hex SHA-256 of the previous entry's hash (32 zero
// bytes for the first), seq (8 bytes, big-endian) and the record (see
// Hash), and the record is the caller's bytes, which must not hold a
// newline or zero byte (compact JSON never does). Editing, deleting or
// reordering lines breaks the chain, which Verify reports. The file grows
// in steps of zero bytes that later entries overwrite (so that a sync
// seldom has metadata to write); the entries end at the first zero byte. A
// line cut short by a crash was never acknowledged: Open and the next
// append clear it.
package journal

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Hash is the hash of entry seq with record rec whose predecessor has the
// hash prev: SHA-256 over prev, seq as 8 bytes big-endian, and rec.
func Hash(prev [sha256.Size]byte, seq int64, rec []byte) [sha256.Size]byte {
	h := sha256.New()
	h.Write(prev[:])
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(seq))
	h.Write(b[:])
	h.Write(rec)
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

// ErrClosed is the error of an Append after Close.
var ErrClosed = errors.New("journal: closed")

// Journal is an open journal file. It is safe for concurrent use.
type Journal struct {
	now func() time.Time

	mu       sync.Mutex
	open     *batch // the batch new records join
	flushing bool
	closed   bool

	// Owned by the flusher (the goroutine whose flushing is true).
	f     *os.File
	end   int64 // where the entries end, as this process knows
	alloc int64 // the file's size, as this process knows
	head  head
	line  []byte
	// lastSync is when the last batch was taken.
	lastSync time.Time

	// durable is end as the flusher last left it, for End.
	durable atomic.Int64
}

// minSyncGap is the least time between two batches: a sync costs about
// 60 us of CPU here whatever it holds, so under load records gather for a
// moment rather than a few paying for each. On the national lookup bench
// (README "Performance") 1 ms gave the most lookups per second: 300 us and
// 2 ms fewer.
const minSyncGap = time.Millisecond

// head is the last entry of the chain.
type head struct {
	seq  int64
	hash [sha256.Size]byte
}

// batch is the records of one write and fsync; done is closed once err is
// set.
type batch struct {
	recs [][]byte
	done chan struct{}
	err  error
}

func newBatch() *batch { return &batch{done: make(chan struct{})} }

// Open opens (creating it, mode 0600) the journal at path. now stamps the
// entries; nil means time.Now.
func Open(path string, now func() time.Time) (*Journal, error) {
	if now == nil {
		now = time.Now
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	j := &Journal{now: now, f: f, open: newBatch()}
	err = j.locked(func() error {
		st, err := f.Stat()
		if err != nil {
			return fmt.Errorf("journal: %w", err)
		}
		return j.readTail(st.Size())
	})
	if err != nil {
		f.Close()
		return nil, err
	}
	j.durable.Store(j.end)
	return j, nil
}

// Append appends rec and returns once it is durable, or the error that
// kept it from being so.
func (j *Journal) Append(rec []byte) error {
	if bytes.IndexByte(rec, '\n') >= 0 || bytes.IndexByte(rec, 0) >= 0 {
		return errors.New("journal: a record must not hold a newline or a zero byte")
	}
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return ErrClosed
	}
	b := j.open
	b.recs = append(b.recs, rec)
	lead := !j.flushing
	j.flushing = true
	j.mu.Unlock()
	if lead {
		j.flush()
	}
	<-b.done
	return b.err
}

// flush writes the open batch, which holds the leader's record, and hands
// the batches that filled meanwhile to a goroutine of its own (drain), so
// that the leader's Append returns with its batch: under a steady load
// there is always a record waiting, and a leader that wrote them all would
// wait for a lull (hundreds of ms on the national lookup bench).
func (j *Journal) flush() {
	j.writeOpen()
	j.mu.Lock()
	more := len(j.open.recs) > 0
	j.flushing = more
	j.mu.Unlock()
	if more {
		go j.drain()
	}
}

// drain writes the open batch, and the ones that fill meanwhile, until
// none is left.
func (j *Journal) drain() {
	for j.writeOpen() {
	}
}

// writeOpen writes and syncs the open batch, minSyncGap after the last
// one was taken at the earliest, and reports whether it held records; if
// not, the flusher's turn ends. A record waits for the write under way
// and its own at most.
func (j *Journal) writeOpen() bool {
	if d := minSyncGap - time.Since(j.lastSync); d > 0 {
		time.Sleep(d)
	}
	j.mu.Lock()
	b := j.open
	if len(b.recs) == 0 {
		j.flushing = false
		j.mu.Unlock()
		return false
	}
	j.open = newBatch()
	j.mu.Unlock()
	j.lastSync = time.Now()
	b.err = j.locked(func() error { return j.write(b.recs) })
	close(b.done)
	return true
}

// locked runs fn holding the file's exclusive lock.
func (j *Journal) locked(fn func() error) error {
	fd := int(j.f.Fd())
	if err := syscall.Flock(fd, syscall.LOCK_EX); err != nil {
		return fmt.Errorf("journal: lock: %w", err)
	}
	defer syscall.Flock(fd, syscall.LOCK_UN)
	return fn()
}

// write appends recs after the entries other processes appended, then
// syncs. It holds the lock.
func (j *Journal) write(recs [][]byte) error {
	if err := j.catchUp(); err != nil {
		return err
	}
	ms := j.now().UnixMilli()
	h := j.head
	buf := j.line[:0]
	for _, rec := range recs {
		h.seq++
		h.hash = Hash(h.hash, h.seq, rec)
		buf = appendEntry(buf, h.seq, ms, h.hash, rec)
	}
	j.line = buf
	if err := j.reserve(j.end + int64(len(buf))); err != nil {
		return err
	}
	if _, err := j.f.WriteAt(buf, j.end); err != nil {
		// A part written is cleared by the next catchUp (no newline) or
		// is whole and unacknowledged; either way nobody was told it is.
		return fmt.Errorf("journal: write: %w", err)
	}
	if err := j.sync(); err != nil {
		return err
	}
	j.end += int64(len(buf))
	j.head = h
	j.durable.Store(j.end)
	return nil
}

// End returns the byte position after the last entry this process knows
// to be durable: every Append that returned before End was called is
// before it (another process's appends may be after it).
func (j *Journal) End() int64 { return j.durable.Load() }

// sync makes the writes durable. The file's size changes only when it
// grows (reserve), so fdatasync has no metadata to write on most appends,
// which halves its time and CPU here.
func (j *Journal) sync() error {
	if err := syscall.Fdatasync(int(j.f.Fd())); err != nil {
		return fmt.Errorf("journal: sync: %w", err)
	}
	return nil
}

// growBy is how much the file grows by when it is full: zero bytes past
// the last entry, overwritten by later appends.
const growBy = 16 << 20

var zeros = make([]byte, 1<<20)

// reserve makes the file at least size bytes long, writing zeros past its
// end (synced with the entries written next). It holds the lock.
func (j *Journal) reserve(size int64) error {
	if size <= j.alloc {
		return nil
	}
	st, err := j.f.Stat() // another process may have grown it
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	j.alloc = st.Size()
	for j.alloc < size {
		for range growBy / len(zeros) {
			if _, err := j.f.WriteAt(zeros, j.alloc); err != nil {
				return fmt.Errorf("journal: grow: %w", err)
			}
			j.alloc += int64(len(zeros))
		}
	}
	return nil
}

func appendEntry(buf []byte, seq, ms int64, hash [sha256.Size]byte, rec []byte) []byte {
	buf = strconv.AppendInt(buf, seq, 10)
	buf = append(buf, ' ')
	buf = strconv.AppendInt(buf, ms, 10)
	buf = append(buf, ' ')
	buf = hex.AppendEncode(buf, hash[:])
	buf = append(buf, ' ')
	buf = append(buf, rec...)
	return append(buf, '\n')
}

// catchUp reads the entries other processes appended since this one last
// looked, to find the head, and clears a line one of them left cut short.
// It holds the lock.
func (j *Journal) catchUp() error {
	if !j.dirtyAt(j.end) {
		return nil
	}
	end := j.end
	err := scan(io.NewSectionReader(j.f, j.end, 1<<62), func(e Entry) error {
		j.head = head{seq: e.Seq, hash: e.Hash}
		end = j.end + e.Next
		return nil
	})
	if err != nil {
		return err
	}
	return j.clear(end)
}

// dirtyAt reports whether the file has a byte other than zero at pos.
func (j *Journal) dirtyAt(pos int64) bool {
	var b [1]byte
	n, _ := j.f.ReadAt(b[:], pos)
	return n == 1 && b[0] != 0
}

// clear makes end the end of the entries: it overwrites with zeros the
// bytes from end up to the next zero byte (a line cut short), if any. It
// holds the lock.
func (j *Journal) clear(end int64) error {
	j.end = end
	dirty := end
	for j.dirtyAt(dirty) {
		b := make([]byte, 64<<10)
		n, _ := j.f.ReadAt(b, dirty)
		if i := bytes.IndexByte(b[:n], 0); i >= 0 {
			n = i
		}
		dirty += int64(n)
	}
	if dirty == end {
		return nil
	}
	for p := end; p < dirty; {
		n := min(int64(len(zeros)), dirty-p)
		if _, err := j.f.WriteAt(zeros[:n], p); err != nil {
			return fmt.Errorf("journal: clear an unfinished entry: %w", err)
		}
		p += n
	}
	return j.sync()
}

// readTail finds the end of the entries of a file of size bytes and the
// head in the last of them, reading backwards past the zeros.
func (j *Journal) readTail(size int64) error {
	j.alloc = size
	const chunk = 64 << 10
	from := size
	var tail []byte
	for from > 0 {
		n := min(int64(chunk), from)
		from -= n
		b := make([]byte, n, int(n)+len(tail))
		if _, err := j.f.ReadAt(b, from); err != nil {
			return fmt.Errorf("journal: read: %w", err)
		}
		tail = append(b, tail...)
		last := len(tail) - 1
		for last >= 0 && tail[last] == 0 {
			last--
		}
		if last < 0 {
			tail = tail[:0] // zeros only, so far
			continue
		}
		end := bytes.LastIndexByte(tail[:last+1], '\n')
		if end < 0 {
			continue // the last line begins in an earlier chunk
		}
		start := bytes.LastIndexByte(tail[:end], '\n') + 1
		if start == 0 && from > 0 {
			continue
		}
		e, err := parseEntry(tail[start:end])
		if err != nil {
			return fmt.Errorf("journal: last entry at byte %d: %w", from+int64(start), err)
		}
		j.head = head{seq: e.Seq, hash: e.Hash}
		return j.clear(from + int64(end) + 1)
	}
	return j.clear(0)
}

// Close waits for the appends under way and closes the file; later
// Appends fail with ErrClosed.
func (j *Journal) Close() error {
	j.mu.Lock()
	j.closed = true
	busy := j.flushing
	j.mu.Unlock()
	for busy {
		time.Sleep(time.Millisecond)
		j.mu.Lock()
		busy = j.flushing
		j.mu.Unlock()
	}
	return j.f.Close()
}

// Entry is one entry of a journal.
type Entry struct {
	Seq      int64
	Recorded int64 // Unix milliseconds
	Hash     [sha256.Size]byte
	Record   []byte // valid only during the callback
	// Next is the byte position after the entry, where reading may go on.
	Next int64
}

// parseEntry parses one line without its newline.
func parseEntry(line []byte) (Entry, error) {
	var e Entry
	f := bytes.SplitN(line, []byte{' '}, 4)
	if len(f) != 4 {
		return e, errors.New("not an entry")
	}
	var err error
	if e.Seq, err = strconv.ParseInt(string(f[0]), 10, 64); err != nil {
		return e, fmt.Errorf("seq: %w", err)
	}
	if e.Recorded, err = strconv.ParseInt(string(f[1]), 10, 64); err != nil {
		return e, fmt.Errorf("recorded: %w", err)
	}
	if len(f[2]) != 2*sha256.Size {
		return e, errors.New("hash: not 64 hex digits")
	}
	if _, err := hex.Decode(e.Hash[:], f[2]); err != nil {
		return e, fmt.Errorf("hash: %w", err)
	}
	e.Record = f[3]
	return e, nil
}

// scan calls fn with each whole entry of r, Next counted from r's start.
// It stops at a last line without a newline.
func scan(r io.Reader, fn func(Entry) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var pos int64
	for {
		if b, err := br.Peek(1); err == io.EOF || (err == nil && b[0] == 0) {
			return nil // the end: the file's, or the zeros past the entries
		}
		line, err := br.ReadSlice('\n')
		for err == bufio.ErrBufferFull && bytes.IndexByte(line, 0) < 0 {
			// A record longer than the buffer: gather it.
			long := append([]byte(nil), line...)
			line, err = br.ReadSlice('\n')
			line = append(long, line...)
		}
		if err == io.EOF || bytes.IndexByte(line, 0) >= 0 {
			return nil // a line cut short
		}
		if err != nil {
			return fmt.Errorf("journal: read: %w", err)
		}
		e, perr := parseEntry(line[:len(line)-1])
		if perr != nil {
			return &FormatError{Pos: pos, Err: perr}
		}
		pos += int64(len(line))
		e.Next = pos
		if err := fn(e); err != nil {
			return err
		}
	}
}

// Each calls fn with the entries of the journal at path from byte position
// from (0, or an Entry's Next), in order, until fn returns ErrStop or the
// entries end. The chain is not checked (see Verify). A
// journal that does not exist has no entries.
func Each(path string, from int64, fn func(Entry) error) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	err = scan(f, func(e Entry) error {
		e.Next += from
		return fn(e)
	})
	var fe *FormatError
	if errors.As(err, &fe) {
		fe.Pos += from
	}
	if errors.Is(err, ErrStop) {
		return nil
	}
	return err
}

// ErrStop, returned by an Each callback, ends the reading without error.
var ErrStop = errors.New("journal: stop")

// Break is the first place where the chain does not hold.
type Break struct {
	// Seq is the seq of the first entry that does not follow from the
	// entries before it (or the seq that is missing).
	Seq    int64
	Reason string
}

// Report is the result of Verify.
type Report struct {
	// Entries is the number of entries that hold; HeadSeq and HeadHash
	// those of the last, which a copy kept elsewhere can be compared with
	// (the chain alone cannot show that entries were cut off its end).
	Entries  int64
	HeadSeq  int64
	HeadHash [sha256.Size]byte
	Break    *Break // nil when the chain holds
}

// Verify reads the journal at path and checks the chain: seq counts up
// from 1 without gaps and each hash is Hash of the entry over the hash
// before. It stops at the first break; each, when set, is called with
// every entry that holds, in order.
func Verify(path string, each func(Entry) error) (*Report, error) {
	rep := &Report{}
	err := Each(path, 0, func(e Entry) error {
		want := rep.HeadSeq + 1
		switch {
		case e.Seq != want:
			rep.Break = &Break{Seq: want, Reason: fmt.Sprintf("entry %d is missing (the next entry is %d)", want, e.Seq)}
		case Hash(rep.HeadHash, e.Seq, e.Record) != e.Hash:
			rep.Break = &Break{Seq: e.Seq, Reason: "hash does not match the entry and the one before (an entry was changed, removed or moved)"}
		}
		if rep.Break != nil {
			return ErrStop
		}
		if each != nil {
			if err := each(e); err != nil {
				return err
			}
		}
		rep.Entries++
		rep.HeadSeq, rep.HeadHash = e.Seq, e.Hash
		return nil
	})
	var fe *FormatError
	switch {
	case errors.As(err, &fe):
		rep.Break = &Break{Seq: rep.HeadSeq + 1, Reason: fe.Error()}
	case err != nil:
		return nil, err
	}
	return rep, nil
}

// FormatError is a line that is not an entry.
type FormatError struct {
	Pos int64 // its byte position, from where reading began
	Err error
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("journal: the line at byte %d is not an entry: %v", e.Pos, e.Err)
}

func (e *FormatError) Unwrap() error { return e.Err }
