package jsonstr

import (
	"encoding/json"
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
