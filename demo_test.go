package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// shellWords splits a command line as a POSIX shell does for the forms the
// demo prints: words separated by spaces, single-quoted strings (a quote
// inside one closes it, adds an escaped quote and opens it again),
// double-quoted strings without expansions, backslash escapes.
func shellWords(line string) ([]string, error) {
	var words []string
	var w strings.Builder
	in, quote := false, byte(0)
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			} else {
				w.WriteByte(c)
			}
		case c == '\'' || c == '"':
			quote, in = c, true
		case c == '\\' && i+1 < len(line):
			i++
			w.WriteByte(line[i])
			in = true
		case c == ' ' || c == '\t':
			if in {
				words = append(words, w.String())
				w.Reset()
				in = false
			}
		case c == '#' && !in:
			i = len(line) // a comment
		default:
			w.WriteByte(c)
			in = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unclosed quote in %q", line)
	}
	if in {
		words = append(words, w.String())
	}
	return words, nil
}

// curlRequest is what a printed curl command asks for.
type curlRequest struct {
	method, url string
	header      http.Header
	body        []byte
}

// parseCurl reads the curl options the demo uses: -s, -i, -si, -X, -H, -d.
func parseCurl(words []string) (*curlRequest, error) {
	if len(words) == 0 || words[0] != "curl" {
		return nil, fmt.Errorf("not a curl command: %q", words)
	}
	r := &curlRequest{method: http.MethodGet, header: http.Header{}}
	for i := 1; i < len(words); i++ {
		switch w := words[i]; w {
		case "-s", "-i", "-si":
		case "-X", "-H", "-d":
			if i+1 >= len(words) {
				return nil, fmt.Errorf("%s without a value", w)
			}
			i++
			switch w {
			case "-X":
				r.method = words[i]
			case "-H":
				k, v, _ := strings.Cut(words[i], ":")
				r.header.Set(k, strings.TrimSpace(v))
			case "-d":
				r.body = []byte(words[i])
				if r.method == http.MethodGet {
					r.method = http.MethodPost
				}
			}
		default:
			if strings.HasPrefix(w, "-") {
				return nil, fmt.Errorf("option %s not understood by the test", w)
			}
			r.url = w
		}
	}
	return r, nil
}

// demoCurls returns the curl commands in the demo's output.
func demoCurls(out string) []string {
	var cmds []string
	for _, line := range strings.Split(out, "\n") {
		if l := strings.TrimSpace(line); strings.HasPrefix(l, "curl ") {
			cmds = append(cmds, l)
		}
	}
	return cmds
}

func TestServe_Demo(t *testing.T) {
	dir := t.TempDir()
	for _, start := range []string{"first start (seeds)", "second start (seeded already)"} {
		t.Run(start, func(t *testing.T) {
			m := newMain(t, dir)
			m.Demo = true
			ctx, cancel := context.WithCancel(context.Background())
			_, done := startMain(t, ctx, m)
			defer func() {
				cancel()
				if err := waitRun(t, done); err != nil {
					t.Errorf("Run: %v", err)
				}
			}()
			out := m.Stdout.(*syncBuffer).String()
			if want := "seeded 3 councils, 6 sites, 300 children"; start[0] == 'f' && !strings.Contains(out, want) {
				t.Errorf("demo output has no %q:\n%s", want, out)
			}
			if want := "holds 300 Patients already"; start[0] == 's' && !strings.Contains(out, want) {
				t.Errorf("second demo start: output has no %q:\n%s", want, out)
			}
			cmds := demoCurls(out)
			// The commands use the token of the printed export line.
			_, token, ok := strings.Cut(out, "\n  export TOKEN=")
			token, _, _ = strings.Cut(token, "\n")
			if !ok || token == "" {
				t.Fatalf("demo printed no export TOKEN= line:\n%s", out)
			}
			if len(cmds) != 7 {
				t.Fatalf("demo printed %d curl commands, want 7:\n%s", len(cmds), out)
			}
			client := &http.Client{Timeout: time.Minute}
			var totals []int
			for i, cmd := range cmds {
				words, err := shellWords(cmd)
				if err != nil {
					t.Fatal(err)
				}
				cr, err := parseCurl(words)
				if err != nil {
					t.Fatalf("command %d: %v", i, err)
				}
				req, err := http.NewRequest(cr.method, cr.url, bytes.NewReader(cr.body))
				if err != nil {
					t.Fatalf("command %d %s: %v", i, cmd, err)
				}
				req.Header = cr.header
				for k, vs := range req.Header {
					for j, v := range vs {
						req.Header[k][j] = strings.ReplaceAll(v, "$TOKEN", token)
					}
				}
				res, err := client.Do(req)
				if err != nil {
					t.Fatalf("command %d %s: %v", i, cmd, err)
				}
				var b struct {
					Total *int `json:"total"`
				}
				json.NewDecoder(res.Body).Decode(&b)
				res.Body.Close()
				if res.StatusCode/100 != 2 {
					t.Errorf("command %d %s: status %d, want 2xx", i, cmd, res.StatusCode)
				}
				if cr.method == http.MethodPost && res.StatusCode != http.StatusCreated {
					t.Errorf("command %d (the attendance): status %d, want 201", i, res.StatusCode)
				}
				total := -1
				if b.Total != nil {
					total = *b.Total
				}
				totals = append(totals, total)
			}
			// The flagged child's lookup finds its record and its team; the
			// unknown child's finds nothing; the attendances include the one
			// just posted and the seeded one; one council; 158 current records.
			if totals[0] < 1 || totals[1] < 1 || totals[2] != 0 || totals[4] < 2 || totals[5] != 1 || totals[6] < 100 {
				t.Errorf("demo command totals %v: want >=1, >=1, 0, (post), >=2, 1, >=100", totals)
			}

			// With curl on the machine, the commands also run as printed,
			// through a shell.
			if _, err := exec.LookPath("curl"); err != nil {
				t.Log("curl is not installed: the commands ran through the Go client only")
				return
			}
			for i, cmd := range cmds {
				got, err := exec.Command("sh", "-c", "export TOKEN="+token+"\n"+cmd+" --fail-with-body").CombinedOutput()
				if err != nil {
					t.Errorf("sh -c %s: %v\n%s", cmd, err, got)
				}
				if i == 3 && !bytes.Contains(got, []byte("201 Created")) {
					t.Errorf("curl command %d: output %s, want 201 Created", i, got)
				}
			}
		})
	}
}

func TestShellWords(t *testing.T) {
	got, err := shellWords(`curl -s 'a b' -H 'X: it'\''s' "c d" e\ f # comment`)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"curl", "-s", "a b", "-H", "X: it's", "c d", "e f"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("shellWords = %q, want %q", got, want)
	}
	if got := shellQuote("it's"); got != `'it'\''s'` {
		t.Errorf("shellQuote(it's) = %s", got)
	}
}
