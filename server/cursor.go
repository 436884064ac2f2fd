package server

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"

	"github.com/cpis-fhir/cpis/fhir"
)

// pageState is what a paging link carries: the search as the server
// understood it (its query parameters, without values the server ignored)
// and the position in it. It is sealed with AES-GCM under the server's
// cursor key, so links are opaque (no NHS number or other search value can
// be read from them, or from the proxy logs that record them) and
// tamper-proof (a changed link fails to open and is refused).
type pageState struct {
	// Type is the searched type ("" for a system search), Compartment the
	// compartment ("Patient/123") or "".
	Type        string `json:"t,omitempty"`
	Compartment string `json:"c,omitempty"`
	// Query is the url.Values encoding of the search parameters.
	Query string `json:"q"`
	// Cursor and Backward are the store's position.
	Cursor   []byte `json:"p,omitempty"`
	Backward bool   `json:"b,omitempty"`
}

// cursorSealer seals and opens page states. It is safe for concurrent use.
type cursorSealer struct {
	aead cipher.AEAD
}

func newCursorSealer(key []byte) (*cursorSealer, error) {
	if len(key) == 0 {
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, fmt.Errorf("cursor key: %w", err)
		}
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("cursor key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("cursor key: %w", err)
	}
	return &cursorSealer{aead: aead}, nil
}

func (cs *cursorSealer) seal(st pageState) string {
	return cs.sealBytes(st.appendJSON(make([]byte, 0, 64+len(st.Query)+len(st.Cursor)*2)), nil)
}

// appendJSON appends st's JSON, the bytes json.Marshal writes for it
// (TestPageState_JSONAsMarshal), without reflection.
func (st *pageState) appendJSON(dst []byte) []byte {
	dst = append(dst, '{')
	if st.Type != "" {
		dst = append(dst, `"t":`...)
		dst = fhir.AppendJSONString(dst, st.Type)
		dst = append(dst, ',')
	}
	if st.Compartment != "" {
		dst = append(dst, `"c":`...)
		dst = fhir.AppendJSONString(dst, st.Compartment)
		dst = append(dst, ',')
	}
	dst = append(dst, `"q":`...)
	dst = fhir.AppendJSONString(dst, st.Query)
	if len(st.Cursor) > 0 {
		dst = append(dst, `,"p":"`...)
		dst = base64.StdEncoding.AppendEncode(dst, st.Cursor)
		dst = append(dst, '"')
	}
	if st.Backward {
		dst = append(dst, `,"b":true`...)
	}
	return append(dst, '}')
}

// sealBytes seals plain with the additional data purpose (which keeps
// what is sealed for one purpose from opening for another).
func (cs *cursorSealer) sealBytes(plain, purpose []byte) string {
	nonce := make([]byte, cs.aead.NonceSize(), cs.aead.NonceSize()+len(plain)+cs.aead.Overhead())
	rand.Read(nonce)
	return base64.RawURLEncoding.EncodeToString(cs.aead.Seal(nonce, nonce, plain, purpose))
}

// openBytes opens what sealBytes sealed for purpose; false when s is not
// that.
func (cs *cursorSealer) openBytes(s string, purpose []byte) ([]byte, bool) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	ns := cs.aead.NonceSize()
	if err != nil || len(b) < ns+cs.aead.Overhead() {
		return nil, false
	}
	plain, err := cs.aead.Open(nil, b[:ns], b[ns:], purpose)
	return plain, err == nil
}

var errBadCursor = fhir.Errorf(fhir.IssueInvalid, "_cursor is not a paging link this server made (or it was made with another key); run the search again")

func (cs *cursorSealer) open(s string) (pageState, url.Values, error) {
	var st pageState
	plain, ok := cs.openBytes(s, nil)
	if !ok {
		return st, nil, errBadCursor
	}
	if err := json.Unmarshal(plain, &st); err != nil {
		return st, nil, errBadCursor
	}
	q, err := url.ParseQuery(st.Query)
	if err != nil {
		return st, nil, errBadCursor
	}
	return st, q, nil
}
