package jsonstr

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// TestAppendUnescaped compares the decoding with encoding/json's on
// strings it accepts, and checks what is declined.
func TestAppendUnescaped(t *testing.T) {
	taken := []string{
		`""`, `"plain"`, `"a\"b"`, `"\\\/\b\f\n\r\t"`, `"\u00e9t\u00C9"`,
		`"\ud83d\ude00 smile"`, `"caf\u00e9 and more"`, `"\u0000"`, `"é直接"`,
	}
	for _, lit := range taken {
		var want string
		if err := json.Unmarshal([]byte(lit), &want); err != nil {
			t.Fatalf("%s: encoding/json: %v", lit, err)
		}
		b := []byte(lit + `,"next"`)
		got, next, ok := AppendUnescaped([]byte("pre:"), b, 1)
		if !ok || string(got) != "pre:"+want || next != len(lit) {
			t.Errorf("%s: got %q, %d, %v; want %q, %d", lit, got, next, ok, "pre:"+want, len(lit))
		}
	}
	declined := []string{
		`"unterminated`, `"tab	inside"`, `"\x"`, `"\u12"`, `"\u12g4"`, `"\ud83d"`,
		`"\ud83d\u0041"`, `"\ude00\ud83d"`, `"ends in \`, `"\ud83d\`,
	}
	for _, lit := range declined {
		if got, _, ok := AppendUnescaped(nil, []byte(lit), 1); ok {
			t.Errorf("%s: taken as %q; want declined", lit, got)
		}
	}
}

// quotedStrings are the strings TestAppendQuoted compares, and the fuzz
// target's seeds.
func quotedStrings() []string {
	ss := []string{
		"", "plain ASCII text", "a\"b", `back\slash`, `"\"`, "/slash/",
		"<script>&amp;</script>", "a<b>c&d", "<", ">", "&",
		"\u2028", "\u2029", "line\u2028sep\u2029para", "\u2027\u202a",
		"é", "café", "直接", "😀 smile", "mixed é<直>&😀\n",
		"\xff", "a\xffb", "\xff\xfe", "\xe2", "\xe2\x80", "x\xe2\x80y",
		"\xf0\x9f\x98", "\xc3", "\x80", "\xed\xa0\x80", "\xc0\xaf",
		"\xe2\x80\xa8\xff", "\U0010ffff", "\x7f", "\x00",
	}
	var all strings.Builder
	for c := 0; c < 0x20; c++ {
		ss = append(ss, string(rune(c)), "a"+string(rune(c))+"b")
		all.WriteByte(byte(c))
	}
	return append(ss, all.String())
}

// wantQuoted is what encoding/json writes for s: json.Marshal's bytes
// with html, a json.Encoder's with SetEscapeHTML(false) without.
func wantQuoted(t testing.TB, s string, html bool) string {
	if html {
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatalf("%q: json.Marshal: %v", s, err)
		}
		return string(b)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		t.Fatalf("%q: json.Encoder: %v", s, err)
	}
	return strings.TrimSuffix(buf.String(), "\n")
}

// checkQuoted compares AppendQuoted and AppendEscaped with encoding/json
// in both modes, appending to a non-empty dst.
func checkQuoted(t testing.TB, s string) {
	for _, html := range []bool{true, false} {
		want := wantQuoted(t, s, html)
		if got := AppendQuoted([]byte("pre:"), s, html); string(got) != "pre:"+want {
			t.Errorf("AppendQuoted(%q, html=%v) = %q; want %q", s, html, got, "pre:"+want)
		}
		body := want[1 : len(want)-1]
		if got := AppendEscaped([]byte("pre:"), s, html); string(got) != "pre:"+body {
			t.Errorf("AppendEscaped(%q, html=%v) = %q; want %q", s, html, got, "pre:"+body)
		}
	}
}

// TestAppendQuoted compares the encoding with encoding/json's, with and
// without HTML escaping.
func TestAppendQuoted(t *testing.T) {
	for _, s := range quotedStrings() {
		checkQuoted(t, s)
	}
	// The modes differ on < > & alone.
	if got := string(AppendQuoted(nil, "<&>", true)); got != `"\u003c\u0026\u003e"` {
		t.Errorf("html: got %s", got)
	}
	if got := string(AppendQuoted(nil, "<&>", false)); got != `"<&>"` {
		t.Errorf("no html: got %s", got)
	}
}

// TestAppendQuotedAllocs checks that appending to a buffer with room
// allocates nothing.
func TestAppendQuotedAllocs(t *testing.T) {
	s := "mixed é<直>&😀\n\u2028\xff and some plain ASCII"
	buf := make([]byte, 0, 256)
	for _, html := range []bool{true, false} {
		if n := testing.AllocsPerRun(100, func() { _ = AppendQuoted(buf[:0], s, html) }); n != 0 {
			t.Errorf("html=%v: %v allocations; want 0", html, n)
		}
	}
}

// FuzzAppendQuoted compares the encoding with encoding/json's in both
// modes on arbitrary strings.
//
//	go test ./fhir/internal/jsonstr -run '^$' -fuzz FuzzAppendQuoted -fuzztime 30s
func FuzzAppendQuoted(f *testing.F) {
	for _, s := range quotedStrings() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { checkQuoted(t, s) })
}

// BenchmarkAppendQuoted measures a typical FHIR value, mostly plain ASCII.
func BenchmarkAppendQuoted(b *testing.B) {
	s := "urn:uuid:6f1c2a3e-9b7d-4e21-a0c5-3d8f2b1e7a90 Smith, José <home> & \"work\""
	buf := make([]byte, 0, 256)
	for _, html := range []bool{false, true} {
		name := "plain"
		if html {
			name = "html"
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(s)))
			for b.Loop() {
				buf = AppendQuoted(buf[:0], s, html)
			}
		})
	}
}
