package sqlite

import (
	"encoding/binary"
	"math"

	"github.com/cpis-fhir/cpis/fhir"
)

// position is a place in a search result: the sort values and rid of one
// resource.
type position struct {
	keys []any // nil, int64, float64 or string, one per sort key
	rid  int64
	// incl makes the page start at the resource itself rather than after
	// (or before) it: the way back from an empty page.
	incl bool
}

// Cursor encoding: the version byte (cursorVersion, or cursorIncl for a
// position with incl), the number of keys (uvarint), each key as a tag
// byte and its value, then the rid (varint). The server seals the bytes
// with the query, so they need to be compact and deterministic, not
// secret.
const (
	cursorVersion = 1
	cursorIncl    = 2

	tagNull   = 0
	tagInt    = 1 // varint
	tagFloat  = 2 // 8 bytes, IEEE 754 big-endian
	tagString = 3 // uvarint length, bytes
)

func (p position) encode() fhir.Cursor {
	b := []byte{cursorVersion}
	if p.incl {
		b[0] = cursorIncl
	}
	b = binary.AppendUvarint(b, uint64(len(p.keys)))
	for _, k := range p.keys {
		switch v := k.(type) {
		case nil:
			b = append(b, tagNull)
		case int64:
			b = append(b, tagInt)
			b = binary.AppendVarint(b, v)
		case float64:
			b = append(b, tagFloat)
			b = binary.BigEndian.AppendUint64(b, math.Float64bits(v))
		case string:
			b = append(b, tagString)
			b = binary.AppendUvarint(b, uint64(len(v)))
			b = append(b, v...)
		default:
			panic("sqlite: sort value of an unexpected type")
		}
	}
	return binary.AppendVarint(b, p.rid)
}

var errBadCursor = fhir.Errorf(fhir.IssueInvalid, "the paging cursor is not valid for this search")

// decodeCursor reads a cursor made by encode for a search with nkeys sort
// keys; IssueInvalid if it is not one.
func decodeCursor(c fhir.Cursor, nkeys int) (*position, error) {
	b := []byte(c)
	if len(b) == 0 || (b[0] != cursorVersion && b[0] != cursorIncl) {
		return nil, errBadCursor
	}
	incl := b[0] == cursorIncl
	b = b[1:]
	n, k := binary.Uvarint(b)
	if k <= 0 || n != uint64(nkeys) {
		return nil, errBadCursor
	}
	b = b[k:]
	p := &position{keys: make([]any, nkeys), incl: incl}
	for i := range p.keys {
		if len(b) == 0 {
			return nil, errBadCursor
		}
		tag := b[0]
		b = b[1:]
		switch tag {
		case tagNull:
		case tagInt:
			v, k := binary.Varint(b)
			if k <= 0 {
				return nil, errBadCursor
			}
			p.keys[i], b = v, b[k:]
		case tagFloat:
			if len(b) < 8 {
				return nil, errBadCursor
			}
			f := math.Float64frombits(binary.BigEndian.Uint64(b))
			if math.IsNaN(f) {
				return nil, errBadCursor
			}
			p.keys[i], b = f, b[8:]
		case tagString:
			l, k := binary.Uvarint(b)
			if k <= 0 || uint64(len(b)-k) < l {
				return nil, errBadCursor
			}
			p.keys[i], b = string(b[k:k+int(l)]), b[k+int(l):]
		default:
			return nil, errBadCursor
		}
	}
	rid, k := binary.Varint(b)
	if k <= 0 || k != len(b) || rid <= 0 {
		return nil, errBadCursor
	}
	p.rid = rid
	return p, nil
}
