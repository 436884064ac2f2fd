package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"time"
)

// benchConn is one bench client's keep-alive connection. It writes a
// request and reads its answer on the calling goroutine, with net/http's
// own request writer and response parser (Request.Write,
// http.ReadResponse). An http.Transport runs two goroutines per
// connection, one writing and one reading, and hands every request and
// answer between them and the caller: with 32 clients sharing two cores
// with the server, those hand-overs (a thread woken for each) cost the
// bench about twice the CPU of the requests themselves, CPU the server
// under test then lacks (README "Performance").
type benchConn struct {
	addr    string // host:port
	tls     *tls.Config
	timeout time.Duration
	conn    net.Conn
	br      *bufio.Reader
	bw      *bufio.Writer
	used    bool // a request was answered on conn
}

func newBenchConn(base string, timeout time.Duration) (*benchConn, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, err
	}
	c := &benchConn{addr: u.Host, timeout: timeout}
	switch u.Scheme {
	case "http":
		if u.Port() == "" {
			c.addr = net.JoinHostPort(u.Hostname(), "80")
		}
	case "https":
		if u.Port() == "" {
			c.addr = net.JoinHostPort(u.Hostname(), "443")
		}
		c.tls = &tls.Config{ServerName: u.Hostname()}
	default:
		return nil, fmt.Errorf("--base must be an http or https URL, not %q", base)
	}
	return c, nil
}

// do sends req and reads the whole answer into body; it returns the
// status. A GET whose connection, kept from an earlier answer, fails
// before anything is read is sent once more on a new connection, as
// http.Transport does: the server may have closed an idle connection.
func (c *benchConn) do(ctx context.Context, req *http.Request, body *bytes.Buffer) (int, error) {
	status, err := c.try(ctx, req, body)
	if err != nil && c.retryable(req, err) {
		status, err = c.try(ctx, req, body)
	}
	return status, err
}

// errStaleConn marks an error of a kept connection before any answer.
var errStaleConn = errors.New("bench: connection closed before the answer")

func (c *benchConn) retryable(req *http.Request, err error) bool {
	return errors.Is(err, errStaleConn) && req.Method == http.MethodGet
}

func (c *benchConn) try(ctx context.Context, req *http.Request, body *bytes.Buffer) (int, error) {
	if c.conn == nil {
		if err := c.dial(ctx); err != nil {
			return 0, err
		}
	}
	kept := c.used
	c.conn.SetDeadline(time.Now().Add(c.timeout))
	err := req.Write(c.bw)
	if err == nil {
		err = c.bw.Flush()
	}
	var res *http.Response
	if err == nil {
		res, err = http.ReadResponse(c.br, req)
	}
	if err != nil {
		c.close()
		if kept {
			return 0, fmt.Errorf("%w: %w", errStaleConn, err)
		}
		return 0, err
	}
	body.Reset()
	_, err = body.ReadFrom(res.Body)
	res.Body.Close()
	if err != nil || res.Close {
		c.close()
	} else {
		c.used = true
	}
	return res.StatusCode, err
}

func (c *benchConn) dial(ctx context.Context) error {
	d := &net.Dialer{Timeout: c.timeout}
	var conn net.Conn
	var err error
	if c.tls != nil {
		conn, err = (&tls.Dialer{NetDialer: d, Config: c.tls}).DialContext(ctx, "tcp", c.addr)
	} else {
		conn, err = d.DialContext(ctx, "tcp", c.addr)
	}
	if err != nil {
		return err
	}
	c.conn, c.used = conn, false
	if c.br == nil {
		c.br, c.bw = bufio.NewReaderSize(conn, 32<<10), bufio.NewWriterSize(conn, 8<<10)
	} else {
		c.br.Reset(conn)
		c.bw.Reset(conn)
	}
	return nil
}

func (c *benchConn) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}
