package fhirpath

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// stdDecode decodes body as Decode did before the fast path: with
// encoding/json and UseNumber.
func stdDecode(body []byte) (map[string]any, error) {
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	var m map[string]any
	err := d.Decode(&m)
	return m, err
}

// TestDecodeObject checks that the fast decoder gives what encoding/json
// gives, and leaves to encoding/json what it does not take on.
func TestDecodeObject(t *testing.T) {
	tests := []struct {
		name, body string
		fast       bool // whether the fast path takes it
	}{
		{"empty object", `{}`, true},
		{"white space", " \t\r\n{ \"a\" : [ 1 , -2.50e+3 , 0 , 0.5 , 1E9 ] , \"b\" : { } , \"c\" : [ ] } \n", true},
		{"literals", `{"t":true,"f":false,"n":null,"a":[null,true]}`, true},
		{"escapes", `{"s":"a\"b\\c\/d\b\f\n\r\t\u00e9\u20AC\ud83d\ude00x"}`, true},
		{"utf-8", `{"name":"Zoë 上海 😀"}`, true},
		{"duplicate key, last wins", `{"a":1,"a":2}`, true},
		{"nested", `{"a":{"b":{"c":[{"d":[[]]}]}}}`, true},
		{"trailing data", `{"a":1} {"b":2}`, false},
		{"array at top", `[{"a":1}]`, false},
		{"string at top", `"a"`, false},
		{"trailing comma", `{"a":1,}`, false},
		{"leading zero", `{"a":01}`, false},
		{"bare dot", `{"a":1.}`, false},
		{"plus sign", `{"a":+1}`, false},
		{"lone surrogate", `{"a":"\ud83d"}`, false},
		{"invalid utf-8", "{\"a\":\"\xff\"}", false},
		{"control character", "{\"a\":\"\x01\"}", false},
		{"bad escape", `{"a":"\x"}`, false},
		{"unterminated", `{"a":"b`, false},
		{"truncated", `{"a":`, false},
		{"bad literal", `{"a":tru}`, false},
		{"missing colon", `{"a" 1}`, false},
		{"empty", ``, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := decodeObject([]byte(tt.body))
			if ok != tt.fast {
				t.Fatalf("decodeObject(%q): ok %v, want %v", tt.body, ok, tt.fast)
			}
			if !ok {
				return
			}
			want, err := stdDecode([]byte(tt.body))
			if err != nil {
				t.Fatalf("encoding/json on %q: %v", tt.body, err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("decodeObject(%q) = %#v, want %#v", tt.body, got, want)
			}
		})
	}
}

// TestDecodeObject_Examples compares the fast decoder with encoding/json
// on every example resource.
func TestDecodeObject_Examples(t *testing.T) {
	files, err := filepath.Glob("testdata/examples/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples in testdata/examples: %v", err)
	}
	more, _ := filepath.Glob("../../testdata/r4-examples/*.json")
	for _, f := range append(files, more...) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		want, err := stdDecode(b)
		if err != nil {
			continue
		}
		got, ok := decodeObject(b)
		if !ok {
			t.Errorf("decodeObject(%s): not taken", filepath.Base(f))
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("decodeObject(%s) differs from encoding/json", filepath.Base(f))
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	body, err := os.ReadFile("../../testdata/cpis/patient.json")
	if err != nil {
		b.Fatal(err)
	}
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := decodeObject(body); !ok {
				b.Fatal("not taken")
			}
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := stdDecode(body); err != nil {
				b.Fatal(err)
			}
		}
	})
}
