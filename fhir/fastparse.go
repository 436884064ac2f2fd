package fhir

import (
	"math"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/cpis-fhir/cpis/fhir/internal/jsonstr"
	"github.com/google/fhir/go/jsonformat"
	apb "github.com/google/fhir/go/proto/google/fhir/proto/annotations_go_proto"
	bcrpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// The fast parser reads FHIR R4 JSON into the same ContainedResource proto
// as google/fhir's Unmarshaller, in one pass over the bytes. google/fhir
// decodes every object level into a map of raw JSON, so a Bundle's
// innermost values are scanned once per level above them; on a council's
// upload that was a fifth of the server's CPU.
//
// It is a fast path, not a second parser of record. It takes the common
// shapes of FHIR JSON and gives up (ok false) on anything else: a key it
// does not know, a primitive's "_" extension object, a contained resource,
// a duplicate key, null, an empty array, a number or date written in a way
// it does not parse itself, invalid UTF-8, any JSON it finds malformed.
// The codec then parses the body again with google/fhir, which gives the
// answer and its errors. Whatever the fast path accepts, google/fhir
// accepts too, with an equal proto. The tests compare the two on the R4
// examples (TestFastParse_Examples), the synthetic CP-IS data, which must
// all take the fast path (TestFastParse_Synthetic), altered copies of
// resources (TestFastParse_Variants) and whatever FuzzFastParse makes of
// them. The validation pass
// (fhirvalidate) runs after either parser.

// fastParseMaxDepth bounds nested objects. google/fhir counts depth in
// its element paths (at most 64 parts, Codec's MaxNestingDepth), which
// grow by at most two parts an object level; deeper input takes the slow
// path and its error.
const fastParseMaxDepth = 24

// primKind says how a primitive's JSON value is read.
type primKind uint8

const (
	primNone     primKind = iota // a complex type: an object
	primString                   // string, code, id, uri, url, canonical, oid, uuid, markdown, xhtml
	primEnum                     // a code bound to a value set: an enum value
	primBoolean                  // true or false
	primInteger                  // integer: int32
	primPositive                 // positiveInt: 1 to 2^31-1
	primUnsigned                 // unsignedInt: 0 to 2^31-1
	primDecimal                  // decimal: the number's text
	primDate                     // date
	primDateTime                 // dateTime
	primInstant                  // instant
	primDecline                  // a primitive the fast path leaves to google/fhir
)

// fpMessage is what the fast parser knows of one message type.
type fpMessage struct {
	fields    map[string]*fpField // by JSON key, choice keys included
	reference bool                // a Reference: normalised after its fields
	contained bool                // ContainedResource: resourceType picks the field
	any       bool                // google.protobuf.Any: only for contained resources
	prim      primKind            // for primitive types
	value     protoreflect.FieldDescriptor
	enumNames map[string]protoreflect.EnumNumber // primEnum: original codes
	resources map[string]*fpField                // ContainedResource: by resource type
}

// fpField is one JSON key of a message.
type fpField struct {
	fd     protoreflect.FieldDescriptor // the field of the message
	choice protoreflect.FieldDescriptor // for value[x] keys: the field inside the choice message
	msg    *fpMessage                   // the type of the value (of choice's field for a choice)
	// inline is set for a DomainResource's contained: an Any holding a
	// ContainedResource, as google/fhir reads it.
	inline bool
}

// fpTables holds the table of every message type reachable from
// ContainedResource, built once and only read after.
var (
	fpOnce   sync.Once
	fpTables map[protoreflect.FullName]*fpMessage
)

// fpRoot returns the ContainedResource table, building all tables on
// first use (a few milliseconds).
func fpRoot() *fpMessage {
	d := (&bcrpb.ContainedResource{}).ProtoReflect().Descriptor()
	fpOnce.Do(func() {
		fpTables = make(map[protoreflect.FullName]*fpMessage)
		fpMessageOf(d)
	})
	return fpTables[d.FullName()]
}

// fpMessageOf returns the table of a message type, building it (and the
// types it holds) when absent. Only fpRoot's sync.Once calls it.
func fpMessageOf(d protoreflect.MessageDescriptor) *fpMessage {
	if m, ok := fpTables[d.FullName()]; ok {
		return m
	}
	m := &fpMessage{}
	fpTables[d.FullName()] = m // before filling: Extension holds Extension
	m.fill(d)
	return m
}

func (m *fpMessage) fill(d protoreflect.MessageDescriptor) {
	opts := d.Options()
	switch {
	case d.FullName() == "google.protobuf.Any":
		m.any = true
		return
	case d.FullName() == (&bcrpb.ContainedResource{}).ProtoReflect().Descriptor().FullName():
		m.contained = true
		m.resources = make(map[string]*fpField)
		oneof := d.Oneofs().ByName("oneof_resource")
		for i := 0; i < oneof.Fields().Len(); i++ {
			f := oneof.Fields().Get(i)
			if f.Message() != nil {
				m.resources[string(f.Message().Name())] = &fpField{fd: f, msg: fpMessageOf(f.Message())}
			}
		}
		return
	}
	kind, _ := proto.GetExtension(opts, apb.E_StructureDefinitionKind).(apb.StructureDefinitionKindValue)
	if kind == apb.StructureDefinitionKindValue_KIND_PRIMITIVE_TYPE {
		m.fillPrimitive(d)
		return
	}
	m.reference = proto.HasExtension(opts, apb.E_FhirReferenceType)
	m.fields = make(map[string]*fpField, d.Fields().Len())
	fields := d.Fields()
	for i := 0; i < fields.Len(); i++ {
		f := fields.Get(i)
		if f.Kind() != protoreflect.MessageKind {
			continue // a scalar is never a FHIR element of a complex type
		}
		fm := f.Message()
		if proto.HasExtension(fm.Options(), apb.E_IsChoiceType) {
			cf := fm.Fields()
			for j := 0; j < cf.Len(); j++ {
				c := cf.Get(j)
				if c.Kind() != protoreflect.MessageKind || c.ContainingOneof() == nil {
					continue
				}
				key := f.JSONName() + strings.ToUpper(c.JSONName()[:1]) + c.JSONName()[1:]
				m.fields[key] = &fpField{fd: f, choice: c, msg: fpMessageOf(c.Message())}
			}
			continue
		}
		ff := &fpField{fd: f, msg: fpMessageOf(fm)}
		ff.inline = ff.msg.any && f.JSONName() == "contained"
		m.fields[f.JSONName()] = ff
	}
}

func (m *fpMessage) fillPrimitive(d protoreflect.MessageDescriptor) {
	m.prim = primDecline
	m.value = d.Fields().ByName("value")
	if m.value == nil {
		m.value = d.Fields().ByName("value_us")
	}
	switch d.Name() {
	case "Code", "Id", "Oid", "String", "Url", "Uri", "Canonical", "Markdown", "Xhtml", "Uuid":
		m.prim = primString
	case "Boolean":
		m.prim = primBoolean
	case "Integer":
		m.prim = primInteger
	case "PositiveInt":
		m.prim = primPositive
	case "UnsignedInt":
		m.prim = primUnsigned
	case "Decimal":
		m.prim = primDecimal
	case "Date":
		m.prim = primDate
	case "DateTime":
		m.prim = primDateTime
	case "Instant":
		m.prim = primInstant
	case "Base64Binary", "Time", "ReferenceId":
		return
	default:
		if !proto.HasExtension(d.Options(), apb.E_FhirValuesetUrl) || m.value == nil {
			return
		}
		switch m.value.Kind() {
		case protoreflect.StringKind:
			m.prim = primString
		case protoreflect.EnumKind:
			m.prim = primEnum
			m.enumNames = make(map[string]protoreflect.EnumNumber)
			values := m.value.Enum().Values()
			for i := 0; i < values.Len(); i++ {
				ev := values.Get(i)
				orig, _ := proto.GetExtension(ev.Options(), apb.E_FhirOriginalCode).(string)
				if _, dup := m.enumNames[orig]; orig != "" && !dup {
					m.enumNames[orig] = ev.Number()
				}
			}
		}
	}
	if m.value == nil {
		m.prim = primDecline
	}
}

// fastParse parses a resource, or returns ok false when the body is not
// one the fast path takes (see above).
func fastParse(body []byte) (cr *bcrpb.ContainedResource, ok bool) {
	defer func() {
		// A fault in the fast path must not fail a request that
		// google/fhir can answer.
		if recover() != nil {
			cr, ok = nil, false
		}
	}()
	if !utf8.Valid(body) {
		return nil, false
	}
	p := fastParser{b: body}
	cr = &bcrpb.ContainedResource{}
	m := cr.ProtoReflect()
	p.ws()
	if !p.contained(m, fpRoot()) {
		return nil, false
	}
	p.ws()
	if p.i != len(p.b) {
		return nil, false
	}
	return cr, true
}

type fastParser struct {
	b     []byte
	i     int
	depth int
	buf   []byte // scratch for strings with escapes
}

func (p *fastParser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// eat consumes c after any white space.
func (p *fastParser) eat(c byte) bool {
	p.ws()
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// peek returns the next byte after white space, or 0 at the end.
func (p *fastParser) peek() byte {
	p.ws()
	if p.i < len(p.b) {
		return p.b[p.i]
	}
	return 0
}

// contained reads a resource object into a ContainedResource: its first
// key must be resourceType.
func (p *fastParser) contained(m protoreflect.Message, t *fpMessage) bool {
	if !p.eat('{') || !p.enter() {
		return false
	}
	key, ok := p.key()
	if !ok || string(key) != "resourceType" {
		return false
	}
	rt, ok := p.rawString()
	if !ok {
		return false
	}
	f, ok := t.resources[string(rt)]
	if !ok {
		return false
	}
	if !p.members(m.Mutable(f.fd).Message(), f.msg, true) {
		return false
	}
	p.depth--
	return true
}

func (p *fastParser) enter() bool {
	p.depth++
	return p.depth <= fastParseMaxDepth
}

// object reads a JSON object into m.
func (p *fastParser) object(m protoreflect.Message, t *fpMessage) bool {
	if !p.eat('{') || !p.enter() {
		return false
	}
	if !p.members(m, t, false) {
		return false
	}
	p.depth--
	return true
}

// members reads an object's members up to and including its '}'. After
// is true when a member has already been read (a resource's
// resourceType).
func (p *fastParser) members(m protoreflect.Message, t *fpMessage, after bool) bool {
	if !after && p.eat('}') {
		return true
	}
	for {
		if after {
			if p.eat('}') {
				return true
			}
			if !p.eat(',') {
				return false
			}
		}
		after = true
		key, ok := p.key()
		if !ok {
			return false
		}
		f, ok := t.fields[string(key)]
		if !ok {
			return false
		}
		if !p.field(m, f) {
			return false
		}
	}
}

// field reads one member's value.
func (p *fastParser) field(m protoreflect.Message, f *fpField) bool {
	if f.choice != nil {
		if m.Has(f.fd) {
			return false // a second value[x]
		}
		return p.value(m.Mutable(f.fd).Message().Mutable(f.choice).Message(), f.msg)
	}
	if f.fd.Cardinality() != protoreflect.Repeated {
		if m.Has(f.fd) {
			return false // a duplicate key
		}
		return p.value(m.Mutable(f.fd).Message(), f.msg)
	}
	list := m.Mutable(f.fd).List()
	if list.Len() > 0 || !p.eat('[') || p.peek() == ']' {
		return false
	}
	for {
		if f.inline {
			if !p.inline(list.AppendMutable().Message().Interface().(*anypb.Any)) {
				return false
			}
		} else if !p.value(list.AppendMutable().Message(), f.msg) {
			return false
		}
		if p.eat(']') {
			return true
		}
		if !p.eat(',') {
			return false
		}
	}
}

// inline reads a contained resource into an Any, as google/fhir does: a
// ContainedResource, marshalled.
func (p *fastParser) inline(a *anypb.Any) bool {
	cr := &bcrpb.ContainedResource{}
	if !p.contained(cr.ProtoReflect(), fpRoot()) {
		return false
	}
	return a.MarshalFrom(cr) == nil
}

// value reads one element into the (new, empty) message m of type t.
func (p *fastParser) value(m protoreflect.Message, t *fpMessage) bool {
	switch {
	case t.prim != primNone:
		return p.primitive(m, t)
	case t.any:
		return false
	case t.contained:
		return p.contained(m, t)
	case t.reference:
		return p.object(m, t) && jsonformat.NormalizeReference(m.Interface()) == nil
	}
	return p.object(m, t)
}

func (p *fastParser) primitive(m protoreflect.Message, t *fpMessage) bool {
	switch t.prim {
	case primString:
		s, ok := p.str()
		if !ok {
			return false
		}
		m.Set(t.value, protoreflect.ValueOfString(s))
		return true
	case primEnum:
		s, ok := p.str()
		if !ok {
			return false
		}
		// As google/fhir: the upper-cased code with '-' as '_', then the
		// original codes. A code that is neither is an error: leave it to
		// google/fhir.
		name := strings.ReplaceAll(strings.ToUpper(s), "-", "_")
		if v := t.value.Enum().Values().ByName(protoreflect.Name(name)); v != nil && v.Number() != 0 {
			m.Set(t.value, protoreflect.ValueOfEnum(v.Number()))
			return true
		}
		n, ok := t.enumNames[s]
		if !ok {
			return false
		}
		m.Set(t.value, protoreflect.ValueOfEnum(n))
		return true
	case primBoolean:
		switch {
		case p.literal("true"):
			m.Set(t.value, protoreflect.ValueOfBool(true))
			return true
		case p.literal("false"):
			m.Set(t.value, protoreflect.ValueOfBool(false))
			return true
		}
		return false
	case primInteger, primPositive, primUnsigned:
		n, ok := p.integer()
		if !ok || t.prim == primPositive && n == 0 || t.prim != primInteger && n < 0 {
			return false
		}
		if t.prim == primInteger {
			m.Set(t.value, protoreflect.ValueOfInt32(int32(n)))
		} else {
			m.Set(t.value, protoreflect.ValueOfUint32(uint32(n)))
		}
		return true
	case primDecimal:
		s, ok := p.decimal()
		if !ok {
			return false
		}
		m.Set(t.value, protoreflect.ValueOfString(s))
		return true
	case primDate, primDateTime, primInstant:
		s, ok := p.str()
		if !ok {
			return false
		}
		return setDateTime(m, t.prim, s)
	}
	return false
}

func (p *fastParser) literal(s string) bool {
	p.ws()
	if len(p.b)-p.i < len(s) || string(p.b[p.i:p.i+len(s)]) != s {
		return false
	}
	p.i += len(s)
	return p.delimited()
}

// delimited reports whether a literal or number ends where it should.
func (p *fastParser) delimited() bool {
	if p.i == len(p.b) {
		return true
	}
	switch p.b[p.i] {
	case ',', '}', ']', ' ', '\t', '\n', '\r':
		return true
	}
	return false
}

// integer reads -?(0|[1-9][0-9]*) within ±(2^31-1), no fraction or
// exponent (google/fhir's own reading of those is left to it).
func (p *fastParser) integer() (int64, bool) {
	p.ws()
	start := p.i
	neg := false
	if p.i < len(p.b) && p.b[p.i] == '-' {
		neg = true
		p.i++
	}
	digits := p.i
	var n int64
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		n = n*10 + int64(p.b[p.i]-'0')
		p.i++
		if n > 1<<31-1 {
			return 0, false
		}
	}
	switch {
	case p.i == digits, p.i-digits > 1 && p.b[digits] == '0', neg && n == 0, p.i-start > 11:
		return 0, false
	}
	if !p.delimited() {
		return 0, false
	}
	if neg {
		n = -n
	}
	return n, true
}

// decimal reads -?(0|[1-9][0-9]*)(\.[0-9]+)? and returns its text, which
// google/fhir keeps as the value.
func (p *fastParser) decimal() (string, bool) {
	p.ws()
	start := p.i
	if p.i < len(p.b) && p.b[p.i] == '-' {
		p.i++
	}
	digits := p.i
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		p.i++
	}
	if p.i == digits || p.i-digits > 1 && p.b[digits] == '0' {
		return "", false
	}
	if p.i < len(p.b) && p.b[p.i] == '.' {
		p.i++
		frac := p.i
		for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
			p.i++
		}
		if p.i == frac {
			return "", false
		}
	}
	if p.i-start > 40 || !p.delimited() {
		return "", false
	}
	return string(p.b[start:p.i]), true
}

// key reads a member's name and its ':'.
func (p *fastParser) key() ([]byte, bool) {
	k, ok := p.rawString()
	if !ok || !p.eat(':') {
		return nil, false
	}
	return k, true
}

// rawString reads a string without escapes and returns its bytes, for
// names; one with escapes is declined.
func (p *fastParser) rawString() ([]byte, bool) {
	if !p.eat('"') {
		return nil, false
	}
	start := p.i
	for p.i < len(p.b) {
		switch c := p.b[p.i]; {
		case c == '"':
			p.i++
			return p.b[start : p.i-1], true
		case c == '\\' || c < 0x20:
			return nil, false
		}
		p.i++
	}
	return nil, false
}

// str reads a JSON string. The body is valid UTF-8 (checked up front).
func (p *fastParser) str() (string, bool) {
	if !p.eat('"') {
		return "", false
	}
	start := p.i
	for p.i < len(p.b) {
		c := p.b[p.i]
		if c == '"' {
			s := string(p.b[start:p.i])
			p.i++
			return s, true
		}
		if c == '\\' {
			return p.escaped(start)
		}
		if c < 0x20 {
			return "", false
		}
		p.i++
	}
	return "", false
}

// escaped finishes a string holding escapes, from its first one at p.i.
func (p *fastParser) escaped(start int) (string, bool) {
	buf, next, ok := jsonstr.AppendUnescaped(append(p.buf[:0], p.b[start:p.i]...), p.b, p.i)
	p.buf = buf
	if !ok {
		return "", false
	}
	p.i = next
	return string(buf), true
}

// setDateTime sets a date, dateTime or instant as google/fhir does
// (value_us, precision, timezone), for the forms it reads in the same
// way: YYYY, YYYY-MM and YYYY-MM-DD (not for instant), in UTC, the
// codec's time zone; and YYYY-MM-DDThh:mm:ss with up to 6 digits of
// fraction and Z or an offset (not for date). Others are declined.
func setDateTime(m protoreflect.Message, kind primKind, s string) bool {
	fields := m.Descriptor().Fields()
	precFd, tzFd, usFd := fields.ByName("precision"), fields.ByName("timezone"), fields.ByName("value_us")
	if precFd == nil || tzFd == nil || usFd == nil {
		return false
	}
	var (
		t    time.Time
		prec string
		tz   string
	)
	if len(s) <= 10 {
		if kind == primInstant {
			return false
		}
		y, mo, d, ok := datePart(s)
		if !ok {
			return false
		}
		switch {
		case mo == 0:
			prec = "YEAR"
			mo, d = 1, 1
		case d == 0:
			prec = "MONTH"
			d = 1
		default:
			prec = "DAY"
		}
		t = time.Date(y, time.Month(mo), d, 0, 0, 0, 0, time.UTC)
		if t.Day() != d || int(t.Month()) != mo {
			return false // 31 April: time.Parse's error in google/fhir
		}
		tz = "UTC"
	} else {
		if kind == primDate || len(s) < 20 || s[10] != 'T' {
			return false
		}
		y, mo, d, ok := datePart(s[:10])
		if !ok || d == 0 {
			return false
		}
		var frac int
		t, frac, tz, ok = timePart(s[11:], y, mo, d)
		if !ok {
			return false
		}
		switch {
		case frac == 0:
			prec = "SECOND"
		case frac <= 3:
			prec = "MILLISECOND"
		default:
			prec = "MICROSECOND"
		}
	}
	pv := precFd.Enum().Values().ByName(protoreflect.Name(prec))
	if pv == nil {
		return false
	}
	m.Set(usFd, protoreflect.ValueOfInt64(timestampUsec(t)))
	m.Set(precFd, protoreflect.ValueOfEnum(pv.Number()))
	m.Set(tzFd, protoreflect.ValueOfString(tz))
	return true
}

// timestampUsec is t in microseconds as google/fhir counts them: past
// about the year 2262 it drops the fraction of a second.
func timestampUsec(t time.Time) int64 {
	sec := t.Unix()
	if sec < math.MaxInt64/int64(time.Second) && sec > math.MinInt64/int64(time.Second) {
		return sec*1e6 + int64(t.Nanosecond()/1000)
	}
	return sec * 1e6
}

// datePart reads YYYY, YYYY-MM or YYYY-MM-DD (month and day 0 when
// absent), years 0001 to 9999.
func datePart(s string) (y, mo, d int, ok bool) {
	if len(s) != 4 && len(s) != 7 && len(s) != 10 {
		return 0, 0, 0, false
	}
	if y, ok = digits(s[0:4]); !ok || y == 0 {
		return 0, 0, 0, false
	}
	if len(s) >= 7 {
		if s[4] != '-' {
			return 0, 0, 0, false
		}
		if mo, ok = digits(s[5:7]); !ok || mo < 1 || mo > 12 {
			return 0, 0, 0, false
		}
	}
	if len(s) == 10 {
		if s[7] != '-' {
			return 0, 0, 0, false
		}
		if d, ok = digits(s[8:10]); !ok || d < 1 || d > 31 {
			return 0, 0, 0, false
		}
	}
	return y, mo, d, true
}

// timePart reads hh:mm:ss(.f{1,6})?(Z|[+-]hh:mm) on the given day.
func timePart(s string, y, mo, d int) (t time.Time, frac int, tz string, ok bool) {
	if len(s) < 9 || s[2] != ':' || s[5] != ':' {
		return t, 0, "", false
	}
	h, ok1 := digits(s[0:2])
	mi, ok2 := digits(s[3:5])
	sec, ok3 := digits(s[6:8])
	if !ok1 || !ok2 || !ok3 || h > 23 || mi > 59 || sec > 59 {
		return t, 0, "", false
	}
	rest := s[8:]
	ns := 0
	if rest[0] == '.' {
		i := 1
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		frac = i - 1
		if frac == 0 || frac > 6 {
			return t, 0, "", false
		}
		f, _ := digits(rest[1:i])
		for k := frac; k < 9; k++ {
			f *= 10
		}
		ns = f
		rest = rest[i:]
	}
	var loc *time.Location
	switch {
	case rest == "Z":
		tz, loc = "Z", time.UTC
	case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':':
		oh, ok1 := digits(rest[1:3])
		om, ok2 := digits(rest[4:6])
		if !ok1 || !ok2 || oh > 13 || om > 59 {
			return t, 0, "", false
		}
		off := oh*3600 + om*60
		if rest[0] == '-' {
			off = -off
		}
		// As google/fhir writes the zone of the time it parsed: -00:00
		// is +00:00.
		sign := rest[:1]
		if off == 0 {
			sign = "+"
		}
		tz, loc = sign+rest[1:], time.FixedZone("", off)
	default:
		return t, 0, "", false
	}
	t = time.Date(y, time.Month(mo), d, h, mi, sec, ns, loc)
	if t.Day() != d || int(t.Month()) != mo {
		return t, 0, "", false
	}
	return t, frac, tz, true
}

func digits(s string) (int, bool) {
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}
