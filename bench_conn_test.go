package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// connCounter is an httptest server that counts the connections it
// accepted.
func connCounter(t *testing.T, tlsOn bool, h http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
	var conns atomic.Int64
	ts := httptest.NewUnstartedServer(h)
	ts.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	if tlsOn {
		ts.StartTLS()
	} else {
		ts.Start()
	}
	t.Cleanup(ts.Close)
	return ts, &conns
}

func benchGet(t *testing.T, c *benchConn, u string) (int, string) {
	t.Helper()
	req, err := newRequest(context.Background(), http.MethodGet, u, nil, "tok")
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	status, err := c.do(context.Background(), req, &body)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	return status, body.String()
}

func TestBenchConn_KeepAliveAndClose(t *testing.T) {
	ts, conns := connCounter(t, false, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		switch r.URL.Path {
		case "/chunked": // no Content-Length: the body comes in chunks
			for i := range 3 {
				io.WriteString(w, strings.Repeat(string(rune('a'+i)), 5000))
				w.(http.Flusher).Flush()
			}
		case "/close":
			w.Header().Set("Connection", "close")
			io.WriteString(w, "bye")
		default:
			io.WriteString(w, "ok "+r.URL.RawQuery)
		}
	})
	c, err := newBenchConn(ts.URL+"/fhir", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	for i := range 50 {
		if status, body := benchGet(t, c, ts.URL+"/x?i="+string(rune('a'+i%26))); status != 200 || body != "ok i="+string(rune('a'+i%26)) {
			t.Fatalf("request %d: %d %q", i, status, body)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("50 requests took %d connections, want 1 kept alive", n)
	}
	want := strings.Repeat("a", 5000) + strings.Repeat("b", 5000) + strings.Repeat("c", 5000)
	if status, body := benchGet(t, c, ts.URL+"/chunked"); status != 200 || body != want {
		t.Errorf("chunked: %d, %d bytes; want 200 and the 15,000 bytes sent", status, len(body))
	}
	// The server closes after its answer: the next request dials again.
	if status, body := benchGet(t, c, ts.URL+"/close"); status != 200 || body != "bye" {
		t.Errorf("close: %d %q", status, body)
	}
	if status, _ := benchGet(t, c, ts.URL+"/x"); status != 200 {
		t.Errorf("after a close: %d", status)
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2 (one more after the server closed)", n)
	}
}

// A kept connection the server closed without saying so: a GET is sent
// again on a new connection, a POST is not (it may have been done).
func TestBenchConn_StaleConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var served atomic.Int64
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { // one answer per connection, then a silent close
				defer conn.Close()
				req, err := http.ReadRequest(bufio.NewReader(conn))
				if err != nil {
					return
				}
				io.Copy(io.Discard, req.Body)
				served.Add(1)
				io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			}()
		}
	}()
	base := "http://" + ln.Addr().String()
	c, err := newBenchConn(base+"/fhir", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	for i := range 3 {
		if status, body := benchGet(t, c, base+"/a"); status != 200 || body != "ok" {
			t.Fatalf("GET %d: %d %q", i, status, body)
		}
	}
	if n := served.Load(); n != 3 {
		t.Errorf("%d GETs served, want 3", n)
	}
	req, _ := newRequest(context.Background(), http.MethodPost, base+"/a", []byte(`{}`), "tok")
	var body bytes.Buffer
	if _, err := c.do(context.Background(), req, &body); err == nil {
		t.Errorf("POST on a connection the server closed: no error, want one (a POST is not sent twice)")
	}
	if n := served.Load(); n != 3 {
		t.Errorf("%d requests served after the POST, want still 3", n)
	}
}

func TestBenchConn_TLS(t *testing.T) {
	ts, conns := connCounter(t, true, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "secure") })
	c, err := newBenchConn(ts.URL+"/fhir", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	pool := x509.NewCertPool()
	pool.AddCert(ts.Certificate())
	c.tls.RootCAs = pool
	c.tls.ServerName = "example.com" // httptest's certificate names it
	for range 3 {
		if status, body := benchGet(t, c, ts.URL+"/x"); status != 200 || body != "secure" {
			t.Fatalf("https: %d %q", status, body)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d TLS connections, want 1 kept alive", n)
	}
	if _, err := newBenchConn("ftp://x/fhir", time.Second); err == nil {
		t.Errorf("an ftp base: no error")
	}
}
