package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// progress draws a progress bar with the rate and the time left: redrawn
// in place on a terminal, as a plain line every ten seconds otherwise (a
// log file, a pipe).
type progress struct {
	out   io.Writer
	label string
	total int
	start time.Time
	tty   bool

	mu             sync.Mutex
	done, children int
}

func newProgress(out io.Writer, label string, total int, start time.Time) *progress {
	return &progress{out: out, label: label, total: max(total, 1), start: start, tty: isTerminal(out)}
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func (p *progress) set(done, children int) {
	p.mu.Lock()
	p.done, p.children = done, children
	p.mu.Unlock()
}

// run redraws from poll until the returned stop is called, which draws the
// last state.
func (p *progress) run(poll func() (done, children int)) (stop func()) {
	every := 10 * time.Second
	if p.tty {
		every = 250 * time.Millisecond
	}
	quit, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				p.set(poll())
				p.draw(false)
			case <-quit:
				p.set(poll())
				p.draw(true)
				return
			}
		}
	}()
	return func() {
		close(quit)
		<-finished
	}
}

// line formats the state.
func (p *progress) line() string {
	p.mu.Lock()
	done, children := p.done, p.children
	p.mu.Unlock()
	elapsed := time.Since(p.start)
	rate := float64(done) / max(elapsed.Seconds(), 1e-3)
	frac := min(float64(done)/float64(p.total), 1)
	const width = 30
	bar := strings.Repeat("#", int(frac*width)) + strings.Repeat(".", width-int(frac*width))
	eta := "-"
	if rate > 0 && done < p.total {
		eta = (time.Duration(float64(p.total-done)/rate) * time.Second).Round(time.Second).String()
	}
	return fmt.Sprintf("%s [%s] %5.1f%%  %d/%d resources  %d children  %.0f resources/s  %s elapsed  ETA %s",
		p.label, bar, 100*frac, done, p.total, children, rate, elapsed.Round(time.Second), eta)
}

func (p *progress) draw(last bool) {
	if !p.tty {
		fmt.Fprintln(p.out, p.line())
		return
	}
	end := ""
	if last {
		end = "\n"
	}
	fmt.Fprintf(p.out, "\r%s\x1b[K%s", p.line(), end)
}
