package fhir

import (
	"encoding/base64"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/cpis-fhir/cpis/fhir/internal/jsonstr"
	apb "github.com/google/fhir/go/proto/google/fhir/proto/annotations_go_proto"
	dtpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
	bcrpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// This file is a JSON marshaller for R4 resources that gives the bytes
// google/fhir's jsonformat.Marshaller (not pretty, R4) gives, without its
// intermediate maps and encoding/json's reflection. What that marshaller
// does, and what this one does the same way:
//
//   - It builds a map per object and encodes it with encoding/json (HTML
//     escaping off), so an object's keys come out sorted bytewise, strings
//     are escaped as encoding/json escapes them, and numbers (raw values) are
//     compacted, which fails on a value that is not JSON.
//   - A set message field is written even when empty ({}); a repeated field
//     only when it has elements.
//   - A choice field (a message with the is_choice_type option) is written
//     as its name and the set alternative's, "value" and "quantity" giving
//     "valueQuantity".
//   - A primitive gives its value under the field's name (unless it carries
//     the primitiveHasNoValue extension, or is a code enum left at 0) and its
//     id and other extensions in an object under "_" and the name; a
//     repeated primitive gives arrays with nulls for the missing halves.
//   - A Reference's fragment or typed id (patient_id and so on) is written
//     as its "reference" string ("#x", "Patient/1", "Patient/1/_history/2"),
//     dropping that element's own id and extensions.
//   - A resource, at the top, in a ContainedResource or in an Any named
//     contained, gets "resourceType".
//
// Whatever google/fhir would fail on, and a few rare things, make
// appendJSON decline (ok false) so that the caller uses google/fhir, which
// then gives its answer or its error.

const (
	fmNoValueURL = "https://g.co/fhir/StructureDefinition/primitiveHasNoValue"
	fmStrideURL  = "https://g.co/fhir/StructureDefinition/base64Binary-separatorStride"
	fmR4CR       = "google.fhir.r4.core.ContainedResource"
	fmR4Ref      = "google.fhir.r4.core.Reference"
)

// appendJSON appends the canonical JSON of an R4 resource to dst, the same bytes
// jsonformat's Marshaller (not pretty, R4) returns for it. ok is false when the
// resource holds something this marshaller does not handle; dst is then
// returned unchanged and the caller uses google/fhir's marshaller.
func appendJSON(dst []byte, m protoreflect.Message) (out []byte, ok bool) {
	if m == nil || !m.IsValid() {
		return dst, false
	}
	md := m.Descriptor()
	mi := fmInfo(md)
	if mi == nil || mi.desc != md {
		return dst, false
	}
	e := fmEncPool.Get().(*fmEnc)
	defer func() {
		if r := recover(); r != nil {
			out, ok = dst, false
		}
		e.release()
	}()
	e.buf = e.scratch[:0]
	switch {
	case mi.kind == fmContained && md.FullName() == fmR4CR:
		ok = e.contained(m, mi)
	case mi.kind == fmRegular && !mi.isAny:
		ok = e.object(m, mi, true)
	}
	if !ok || e.fail {
		return dst, false
	}
	// Written to the encoder's buffer and copied, dst grows once.
	return append(dst, e.buf...), true
}

// Tables, one per message type, built once and then read without locks.

type fmKind uint8

const (
	fmRegular   fmKind = iota // an element or resource: a JSON object
	fmPrimitive               // a primitive type
	fmChoice                  // a value[x] choice
	fmContained               // ContainedResource
	fmBad                     // something google/fhir fails on
)

type fmMsg struct {
	desc protoreflect.MessageDescriptor
	kind fmKind
	// fields is by field index (FieldDescriptor.Index).
	fields []*fmField
	// keys are the object's possible keys, sorted, each quoted with its
	// colon; a field's rank indexes them.
	keys   []string
	rtRank int32
	rtName string // `"Patient"`
	isAny  bool
	isRef  bool
	oneof  protoreflect.OneofDescriptor // of a choice or a ContainedResource
	prim   *fmPrimInfo
}

type fmField struct {
	fd    protoreflect.FieldDescriptor
	msg   *fmMsg
	bad   bool // google/fhir fails when the field is set
	list  bool
	rank  int32
	urank int32 // the "_" key of a primitive
	// contained is an Any named contained.
	contained bool
	// A choice's ranks, by the alternative's field index.
	choiceRank, choiceURank []int32
	// A Reference's fragment (refFrag) or typed id (refTyped, refPrefix
	// "Patient/"), written as "reference".
	ref       uint8
	refPrefix string
	// The history of a typed id (ReferenceId.history and its value).
	histFD, histValFD protoreflect.FieldDescriptor
}

const (
	refNone uint8 = iota
	refFrag
	refTyped
)

type fmPrimKind uint8

const (
	pBad fmPrimKind = iota
	pString
	pBool
	pInt
	pUint
	pDecimal
	pBase64
	pDate
	pDateTime
	pInstant
	pTime
	pEnum
)

// Precisions of Date, DateTime, Instant and Time.
const (
	precNone uint8 = iota
	precYear
	precMonth
	precDay
	precSecond
	precMilli
	precMicro
)

type fmPrimInfo struct {
	kind    fmPrimKind
	valueFD protoreflect.FieldDescriptor
	idFD    protoreflect.FieldDescriptor
	idValFD protoreflect.FieldDescriptor
	extFD   protoreflect.FieldDescriptor
	ext     *fmExt
	// r4 is a primitive whose id and extension are R4 String and
	// Extension, read through fmR4Prim when the Go type has its getters.
	r4 bool
	// Date, DateTime, Instant, Time.
	usFD, tzFD, precFD protoreflect.FieldDescriptor
	prec               map[protoreflect.EnumNumber]uint8
	// Code enums: quoted codes by enum number.
	codes []string
}

// fmExt reads the Extension type of a primitive's extension field.
type fmExt struct {
	msg      *fmMsg
	urlFD    protoreflect.FieldDescriptor
	urlValFD protoreflect.FieldDescriptor
	// For base64Binary's separator and stride.
	subFD                protoreflect.FieldDescriptor
	valueFD              protoreflect.FieldDescriptor
	choice               protoreflect.OneofDescriptor
	strFD, strValFD      protoreflect.FieldDescriptor
	strideFD, strideValF protoreflect.FieldDescriptor
}

var (
	fmInfos   sync.Map // protoreflect.FullName -> *fmMsg
	fmBuildMu sync.Mutex
)

func fmInfo(md protoreflect.MessageDescriptor) *fmMsg {
	if v, ok := fmInfos.Load(md.FullName()); ok {
		return v.(*fmMsg)
	}
	fmBuildMu.Lock()
	defer fmBuildMu.Unlock()
	b := fmBuilder{pending: map[protoreflect.FullName]*fmMsg{}}
	mi := b.msg(md)
	for n, p := range b.pending {
		fmInfos.Store(n, p)
	}
	return mi
}

type fmBuilder struct {
	pending map[protoreflect.FullName]*fmMsg
}

func (b *fmBuilder) msg(md protoreflect.MessageDescriptor) *fmMsg {
	if v, ok := fmInfos.Load(md.FullName()); ok {
		return v.(*fmMsg)
	}
	if mi := b.pending[md.FullName()]; mi != nil {
		return mi
	}
	mi := &fmMsg{desc: md}
	b.pending[md.FullName()] = mi
	opts := md.Options()
	sdk, _ := proto.GetExtension(opts, apb.E_StructureDefinitionKind).(apb.StructureDefinitionKindValue)
	choice, _ := proto.GetExtension(opts, apb.E_IsChoiceType).(bool)
	switch {
	case choice:
		mi.kind = fmChoice
		if md.Oneofs().Len() != 1 {
			mi.kind = fmBad
			return mi
		}
		mi.oneof = md.Oneofs().Get(0)
	case sdk == apb.StructureDefinitionKindValue_KIND_PRIMITIVE_TYPE:
		mi.kind = fmPrimitive
		mi.prim = b.prim(md)
		return mi
	case md.Name() == "ContainedResource":
		mi.kind = fmContained
		mi.oneof = md.Oneofs().ByName("oneof_resource")
		if mi.oneof == nil {
			mi.kind = fmBad
			return mi
		}
	case md.FullName() == "google.protobuf.Any":
		mi.isAny = true
	case proto.HasExtension(opts, apb.E_FhirReferenceType):
		if md.FullName() != fmR4Ref {
			mi.kind = fmBad
			return mi
		}
		mi.isRef = true
	}
	fs := md.Fields()
	mi.fields = make([]*fmField, fs.Len())
	for i := range fs.Len() {
		fd := fs.Get(i)
		fi := &fmField{fd: fd, list: fd.IsList()}
		mi.fields[i] = fi
		if fd.Message() == nil || fd.IsMap() || fd.IsExtension() {
			fi.bad = true
			continue
		}
		fi.msg = b.msg(fd.Message())
		fi.contained = fi.msg.isAny && fd.JSONName() == "contained"
	}
	if mi.kind == fmRegular {
		b.keys(mi)
	}
	return mi
}

// keys fills a regular message's keys and its fields' ranks.
func (b *fmBuilder) keys(mi *fmMsg) {
	type slot struct {
		key string
		set func(int32)
	}
	var slots []slot
	add := func(key string, set func(int32)) { slots = append(slots, slot{key, set}) }
	for _, fi := range mi.fields {
		if fi.bad {
			continue
		}
		fd, sub := fi.fd, fi.msg
		switch {
		case sub.kind == fmChoice:
			if fi.list {
				fi.bad = true
				continue
			}
			alts := sub.desc.Fields()
			fi.choiceRank = make([]int32, alts.Len())
			fi.choiceURank = make([]int32, alts.Len())
			for j := range alts.Len() {
				name := fmLowerCamel(string(fd.Name()) + "_" + fmCamelToSnake(alts.Get(j).JSONName()))
				add(name, func(r int32) { fi.choiceRank[j] = r })
				add("_"+name, func(r int32) { fi.choiceURank[j] = r })
			}
		case mi.isRef && fd.ContainingOneof() != nil && fd.ContainingOneof().Name() == "reference" && fd.Name() != "uri":
			t, _ := proto.GetExtension(fd.Options(), apb.E_ReferencedFhirType).(string)
			switch {
			case fd.Name() == "fragment":
				fi.ref = refFrag
			case strings.HasSuffix(string(fd.Name()), "_id") && t != "":
				fi.ref, fi.refPrefix = refTyped, t+"/"
				if h := fd.Message().Fields().ByName("history"); h != nil && !h.IsList() && h.Message() != nil {
					fi.histFD = h
					fi.histValFD = h.Message().Fields().ByName("value")
					if fi.histValFD == nil || fi.histValFD.Kind() != protoreflect.StringKind {
						fi.bad = true
						continue
					}
				}
			default:
				// google/fhir would write the field as it is; rare enough
				// to leave to it.
				fi.bad = true
				continue
			}
			add("reference", func(r int32) { fi.rank = r })
		default:
			add(fd.JSONName(), func(r int32) { fi.rank = r })
			if sub.kind == fmPrimitive {
				add("_"+fd.JSONName(), func(r int32) { fi.urank = r })
			}
		}
	}
	add("resourceType", func(r int32) { mi.rtRank = r })
	slices.SortStableFunc(slots, func(a, b slot) int { return strings.Compare(a.key, b.key) })
	for i, s := range slots {
		if i == 0 || s.key != slots[i-1].key {
			mi.keys = append(mi.keys, string(jsonstr.AppendQuoted(nil, s.key, false))+":")
		}
		s.set(int32(len(mi.keys) - 1))
	}
	mi.rtName = string(jsonstr.AppendQuoted(nil, string(mi.desc.Name()), false))
}

func (b *fmBuilder) prim(md protoreflect.MessageDescriptor) *fmPrimInfo {
	p := &fmPrimInfo{}
	fs := md.Fields()
	p.valueFD = fs.ByName("value")
	p.idFD = fs.ByName("id")
	if p.idFD == nil || p.idFD.IsList() || p.idFD.Message() == nil {
		return p // google/fhir fails on a primitive without an id field
	}
	p.idValFD = p.idFD.Message().Fields().ByName("value")
	if p.idValFD == nil || p.idValFD.Kind() != protoreflect.StringKind {
		return p
	}
	if ext := fs.ByName("extension"); ext != nil {
		if !ext.IsList() || ext.Message() == nil {
			return p
		}
		p.extFD = ext
		if p.ext = b.ext(ext.Message()); p.ext == nil {
			return p
		}
		p.r4 = ext.Message().FullName() == "google.fhir.r4.core.Extension" && p.idFD.Message().FullName() == "google.fhir.r4.core.String"
	}
	kind := func(k protoreflect.Kind) bool {
		return p.valueFD != nil && !p.valueFD.IsList() && p.valueFD.Kind() == k
	}
	switch md.Name() {
	case "Base64Binary":
		if kind(protoreflect.BytesKind) {
			p.kind = pBase64
		}
	case "Canonical", "Code", "Markdown", "Oid", "String", "Uri", "Url", "Uuid", "Xhtml", "ReferenceId", "Id":
		if kind(protoreflect.StringKind) {
			p.kind = pString
		}
	case "Boolean", "Integer", "PositiveInt", "UnsignedInt", "Decimal":
		switch {
		case kind(protoreflect.BoolKind):
			p.kind = pBool
		case kind(protoreflect.Int32Kind), kind(protoreflect.Int64Kind), kind(protoreflect.Sint32Kind), kind(protoreflect.Sint64Kind):
			p.kind = pInt
		case kind(protoreflect.Uint32Kind), kind(protoreflect.Uint64Kind):
			p.kind = pUint
		case kind(protoreflect.StringKind):
			p.kind = pDecimal
		}
	case "Date":
		p.kind = b.timeLike(p, fs, pDate, true, "YEAR", "MONTH", "DAY")
	case "DateTime":
		p.kind = b.timeLike(p, fs, pDateTime, true, "YEAR", "MONTH", "DAY", "SECOND", "MILLISECOND", "MICROSECOND")
	case "Instant":
		p.kind = b.timeLike(p, fs, pInstant, true, "SECOND", "MILLISECOND", "MICROSECOND")
	case "Time":
		p.kind = b.timeLike(p, fs, pTime, false, "SECOND", "MILLISECOND", "MICROSECOND")
	default:
		if !proto.HasExtension(md.Options(), apb.E_FhirValuesetUrl) || p.valueFD == nil || p.valueFD.IsList() {
			return p
		}
		switch p.valueFD.Kind() {
		case protoreflect.StringKind:
			p.kind = pString
		case protoreflect.EnumKind:
			vals := p.valueFD.Enum().Values()
			maxN := protoreflect.EnumNumber(0)
			for i := range vals.Len() {
				if n := vals.Get(i).Number(); n < 0 || n > 4096 {
					return p
				} else if n > maxN {
					maxN = n
				}
			}
			p.codes = make([]string, maxN+1)
			for i := range vals.Len() {
				v := vals.Get(i)
				code, _ := proto.GetExtension(v.Options(), apb.E_FhirOriginalCode).(string)
				if code == "" {
					code = strings.ReplaceAll(strings.ToLower(string(v.Name())), "_", "-")
				}
				p.codes[v.Number()] = string(jsonstr.AppendQuoted(nil, code, false))
			}
			p.kind = pEnum
		}
	}
	return p
}

var fmPrecNames = map[string]uint8{
	"YEAR": precYear, "MONTH": precMonth, "DAY": precDay,
	"SECOND": precSecond, "MILLISECOND": precMilli, "MICROSECOND": precMicro,
}

func (b *fmBuilder) timeLike(p *fmPrimInfo, fs protoreflect.FieldDescriptors, k fmPrimKind, tz bool, precs ...string) fmPrimKind {
	p.usFD, p.precFD = fs.ByName("value_us"), fs.ByName("precision")
	if p.usFD == nil || p.usFD.Kind() != protoreflect.Int64Kind || p.precFD == nil || p.precFD.Kind() != protoreflect.EnumKind {
		return pBad
	}
	if tz {
		p.tzFD = fs.ByName("timezone")
		if p.tzFD == nil || p.tzFD.Kind() != protoreflect.StringKind {
			return pBad
		}
	}
	vals := p.precFD.Enum().Values()
	p.prec = map[protoreflect.EnumNumber]uint8{}
	for _, n := range precs {
		v := vals.ByName(protoreflect.Name(n))
		if v == nil {
			return pBad
		}
		p.prec[v.Number()] = fmPrecNames[n]
	}
	return k
}

func (b *fmBuilder) ext(md protoreflect.MessageDescriptor) *fmExt {
	x := &fmExt{msg: b.msg(md)}
	fs := md.Fields()
	x.urlFD = fs.ByName("url")
	if x.urlFD == nil || x.urlFD.IsList() || x.urlFD.Message() == nil {
		return nil
	}
	x.urlValFD = x.urlFD.Message().Fields().ByName("value")
	if x.urlValFD == nil || x.urlValFD.Kind() != protoreflect.StringKind {
		return nil
	}
	// The separator and stride of base64Binary: optional, looked for only
	// when met.
	x.subFD, x.valueFD = fs.ByName("extension"), fs.ByName("value")
	if x.subFD == nil || x.subFD.Message() != md || x.valueFD == nil || x.valueFD.Message() == nil {
		x.subFD = nil
		return x
	}
	vd := x.valueFD.Message()
	x.choice = vd.Oneofs().ByName("choice")
	x.strFD, x.strideFD = vd.Fields().ByName("string_value"), vd.Fields().ByName("positive_int")
	if x.choice == nil || x.strFD == nil || x.strideFD == nil || x.strFD.Message() == nil || x.strideFD.Message() == nil {
		x.subFD = nil
		return x
	}
	x.strValFD = x.strFD.Message().Fields().ByName("value")
	x.strideValF = x.strideFD.Message().Fields().ByName("value")
	if x.strValFD == nil || x.strValFD.Kind() != protoreflect.StringKind || x.strideValF == nil || x.strideValF.Kind() != protoreflect.Uint32Kind {
		x.subFD = nil
	}
	return x
}

// fmCamelToSnake puts '_' before every character that is not lower case
// (but the first) and lowers them all: "dateTime" gives "date_time",
// "base64Binary" gives "base_6_4_binary".
func fmCamelToSnake(s string) string {
	var sb strings.Builder
	for _, c := range s {
		if !unicode.IsLower(c) && sb.Len() > 0 {
			sb.WriteByte('_')
		}
		sb.WriteRune(unicode.ToLower(c))
	}
	return sb.String()
}

// fmLowerCamel turns snake_case into lowerCamelCase, upper-casing the
// character after each '_' and lowering the rest.
func fmLowerCamel(s string) string {
	var sb strings.Builder
	upper := false
	for _, c := range s {
		switch {
		case c == '_':
			upper = true
		case upper && sb.Len() > 0:
			upper = false
			sb.WriteRune(unicode.ToUpper(c))
		default:
			upper = false
			sb.WriteRune(unicode.ToLower(c))
		}
	}
	return sb.String()
}

// The encoder.

type fmOp uint8

const (
	opPrim fmOp = iota
	opPrimExt
	opPrimList
	opPrimExtList
	opMsg
	opMsgList
	opContained
	opContainedList
	opAny
	opAnyList
	opResType
	opRef
)

type fmEntry struct {
	rank int32
	op   fmOp
	fi   *fmField
	mi   *fmMsg
	v    protoreflect.Value
}

type fmEnc struct {
	buf     []byte
	scratch []byte // buf's backing array, kept between uses
	ents    []fmEntry
	high    int
	cur     *fmMsg
	fail    bool
	visit   func(protoreflect.FieldDescriptor, protoreflect.Value) bool
}

var fmEncPool = sync.Pool{New: func() any {
	e := &fmEnc{ents: make([]fmEntry, 0, 64)}
	e.visit = e.field
	return e
}}

func (e *fmEnc) release() {
	clear(e.ents[:e.high])
	if cap(e.buf) <= 1<<20 {
		e.scratch = e.buf[:0]
	} else {
		e.scratch = nil // not keeping a large buffer
	}
	e.ents, e.high, e.buf, e.cur, e.fail = e.ents[:0], 0, nil, nil, false
	fmEncPool.Put(e)
}

func (e *fmEnc) push(rank int32, op fmOp, fi *fmField, mi *fmMsg, v protoreflect.Value) {
	e.ents = append(e.ents, fmEntry{rank, op, fi, mi, v})
	if len(e.ents) > e.high {
		e.high = len(e.ents)
	}
}

// field is the Range visitor of object: it queues a set field's keys.
func (e *fmEnc) field(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
	mi := e.cur
	if fd.IsExtension() || fd.Index() >= len(mi.fields) || mi.fields[fd.Index()].fd != fd {
		e.fail = true
		return false
	}
	fi := mi.fields[fd.Index()]
	if fi.bad {
		e.fail = true
		return false
	}
	sub := fi.msg
	if fi.list {
		l := v.List()
		switch {
		case sub.kind == fmPrimitive:
			hasValue, hasExt := false, false
			for i := 0; i < l.Len() && !(hasValue && hasExt); i++ {
				v, x := e.primHas(l.Get(i).Message(), sub.prim)
				hasValue, hasExt = hasValue || v, hasExt || x
			}
			if hasValue {
				e.push(fi.rank, opPrimList, fi, sub, v)
			}
			if hasExt {
				e.push(fi.urank, opPrimExtList, fi, sub, v)
			}
		case sub.kind == fmContained:
			e.push(fi.rank, opContainedList, fi, sub, v)
		case fi.contained:
			e.push(fi.rank, opAnyList, fi, sub, v)
		case sub.kind == fmRegular:
			e.push(fi.rank, opMsgList, fi, sub, v)
		default:
			e.fail = true
		}
		return !e.fail
	}
	m := v.Message()
	rank, urank, vf := fi.rank, fi.urank, fi
	if sub.kind == fmChoice {
		alt := m.WhichOneof(sub.oneof)
		if alt == nil {
			e.fail = true
			return false
		}
		j := alt.Index()
		rank, urank, vf = fi.choiceRank[j], fi.choiceURank[j], sub.fields[j]
		if vf.bad {
			e.fail = true
			return false
		}
		m, sub = m.Get(alt).Message(), vf.msg
	}
	switch {
	case fi.ref != refNone:
		e.push(rank, opRef, fi, sub, protoreflect.ValueOfMessage(m))
	case sub.kind == fmPrimitive:
		hasValue, hasExt := e.primHas(m, sub.prim)
		if hasValue {
			e.push(rank, opPrim, vf, sub, protoreflect.ValueOfMessage(m))
		}
		if hasExt {
			e.push(urank, opPrimExt, vf, sub, protoreflect.ValueOfMessage(m))
		}
	case sub.kind == fmContained:
		e.push(rank, opContained, vf, sub, protoreflect.ValueOfMessage(m))
	case vf.contained:
		e.push(rank, opAny, vf, sub, protoreflect.ValueOfMessage(m))
	case sub.kind == fmRegular:
		e.push(rank, opMsg, vf, sub, protoreflect.ValueOfMessage(m))
	default:
		e.fail = true
	}
	return !e.fail
}

// object writes a regular message (an element or, with resourceType, a
// resource) as a JSON object.
func (e *fmEnc) object(m protoreflect.Message, mi *fmMsg, resourceType bool) bool {
	if mi.kind != fmRegular {
		return false
	}
	base := len(e.ents)
	e.cur = mi
	m.Range(e.visit)
	if e.fail {
		return false
	}
	if resourceType {
		e.push(mi.rtRank, opResType, nil, mi, protoreflect.Value{})
	}
	ents := e.ents[base:]
	// Insertion sort: objects are small and Range's order is close to the
	// keys' order.
	for i := 1; i < len(ents); i++ {
		for j := i; j > 0 && ents[j].rank < ents[j-1].rank; j-- {
			ents[j], ents[j-1] = ents[j-1], ents[j]
		}
	}
	for i := 1; i < len(ents); i++ {
		if ents[i].rank == ents[i-1].rank {
			return false // a key twice: leave it to google/fhir's map
		}
	}
	end := len(e.ents)
	e.buf = append(e.buf, '{')
	for i := base; i < end; i++ {
		ent := e.ents[i]
		if i > base {
			e.buf = append(e.buf, ',')
		}
		e.buf = append(e.buf, mi.keys[ent.rank]...)
		if !e.entry(&ent) {
			return false
		}
	}
	e.buf = append(e.buf, '}')
	e.ents = e.ents[:base]
	return true
}

func (e *fmEnc) entry(ent *fmEntry) bool {
	switch ent.op {
	case opPrim:
		return e.primValue(ent.v.Message(), ent.mi.prim)
	case opPrimExt:
		return e.primExt(ent.v.Message(), ent.mi.prim)
	case opPrimList, opPrimExtList:
		l := ent.v.List()
		e.buf = append(e.buf, '[')
		for i := range l.Len() {
			if i > 0 {
				e.buf = append(e.buf, ',')
			}
			pm, ok := l.Get(i).Message(), true
			hasValue, hasExt := e.primHas(pm, ent.mi.prim)
			switch {
			case ent.op == opPrimList && hasValue:
				ok = e.primValue(pm, ent.mi.prim)
			case ent.op == opPrimExtList && hasExt:
				ok = e.primExt(pm, ent.mi.prim)
			default:
				e.buf = append(e.buf, "null"...)
			}
			if !ok || e.fail {
				return false
			}
		}
		e.buf = append(e.buf, ']')
	case opMsg:
		return e.object(ent.v.Message(), ent.mi, false)
	case opContained:
		return e.contained(ent.v.Message(), ent.mi)
	case opAny:
		return e.any(ent.v.Message())
	case opMsgList, opContainedList, opAnyList:
		l := ent.v.List()
		e.buf = append(e.buf, '[')
		for i := range l.Len() {
			if i > 0 {
				e.buf = append(e.buf, ',')
			}
			var ok bool
			switch em := l.Get(i).Message(); ent.op {
			case opMsgList:
				ok = e.object(em, ent.mi, false)
			case opContainedList:
				ok = e.contained(em, ent.mi)
			default:
				ok = e.any(em)
			}
			if !ok {
				return false
			}
		}
		e.buf = append(e.buf, ']')
	case opResType:
		e.buf = append(e.buf, ent.mi.rtName...)
	case opRef:
		return e.ref(ent.v.Message(), ent.fi, ent.mi)
	default:
		return false
	}
	return !e.fail
}

// contained writes the resource in a ContainedResource.
func (e *fmEnc) contained(m protoreflect.Message, mi *fmMsg) bool {
	fd := m.WhichOneof(mi.oneof)
	if fd == nil {
		return false
	}
	fi := mi.fields[fd.Index()]
	if fi.bad || fi.list {
		return false
	}
	return e.object(m.Get(fd).Message(), fi.msg, true)
}

var fmCRInfo atomic.Pointer[fmMsg]

// any writes a contained resource held in an Any.
func (e *fmEnc) any(m protoreflect.Message) bool {
	a, ok := m.Interface().(*anypb.Any)
	if !ok {
		return false
	}
	cr := &bcrpb.ContainedResource{}
	if err := a.UnmarshalTo(cr); err != nil {
		return false
	}
	mi := fmCRInfo.Load()
	if mi == nil {
		mi = fmInfo(cr.ProtoReflect().Descriptor())
		fmCRInfo.Store(mi)
	}
	return e.contained(cr.ProtoReflect(), mi)
}

// ref writes a Reference's fragment or typed id as its reference string.
func (e *fmEnc) ref(m protoreflect.Message, fi *fmField, mi *fmMsg) bool {
	if mi.kind != fmPrimitive || mi.prim.kind != pString {
		return false
	}
	v := m.Get(mi.prim.valueFD).String()
	if fi.ref == refFrag {
		e.buf = append(e.buf, '"', '#')
		e.buf = jsonstr.AppendEscaped(e.buf, v, false)
		e.buf = append(e.buf, '"')
		return true
	}
	e.buf = append(e.buf, '"')
	e.buf = append(e.buf, fi.refPrefix...)
	e.buf = jsonstr.AppendEscaped(e.buf, v, false)
	if fi.histFD != nil && m.Has(fi.histFD) {
		if h := m.Get(fi.histFD).Message().Get(fi.histValFD).String(); h != "" {
			e.buf = append(e.buf, "/_history/"...)
			e.buf = jsonstr.AppendEscaped(e.buf, h, false)
		}
	}
	e.buf = append(e.buf, '"')
	return true
}

// Primitives.

// extURL is an extension's url, "" when unset.
func (x *fmExt) url(m protoreflect.Message) string {
	if !m.Has(x.urlFD) {
		return ""
	}
	return m.Get(x.urlFD).Message().Get(x.urlValFD).String()
}

// fmR4Prim is what every R4 primitive but xhtml has besides its value:
// reading them through these getters saves protoreflect's Has and Get.
type fmR4Prim interface {
	GetId() *dtpb.String
	GetExtension() []*dtpb.Extension
}

// fmNoGetters makes primExts use protoreflect alone, for the tests.
var fmNoGetters atomic.Bool

// fmPrimExts are the extensions of a primitive, from the getters or, for
// other types, from protoreflect.
type fmPrimExts struct {
	g     []*dtpb.Extension
	l     protoreflect.List
	n     int
	hasID bool
	id    string
	drop  string // the url left out of the "_" object
	kept  int    // the extensions written in the "_" object
	noVal bool   // the primitiveHasNoValue extension is there
}

func (x *fmPrimExts) msg(i int) protoreflect.Message {
	if x.l != nil {
		return x.l.Get(i).Message()
	}
	return x.g[i].ProtoReflect()
}

func (x *fmPrimExts) url(i int, p *fmPrimInfo) string {
	if x.l != nil {
		return p.ext.url(x.l.Get(i).Message())
	}
	return x.g[i].GetUrl().GetValue()
}

// primExts reads a primitive's id and extensions. google/fhir drops the
// primitiveHasNoValue extension when present, else the separator and
// stride of a base64Binary, before writing the others.
func (e *fmEnc) primExts(m protoreflect.Message, p *fmPrimInfo, x *fmPrimExts) {
	*x = fmPrimExts{}
	if r, ok := m.Interface().(fmR4Prim); ok && p.r4 && !fmNoGetters.Load() {
		x.g = r.GetExtension()
		x.n = len(x.g)
		if id := r.GetId(); id != nil {
			x.hasID, x.id = true, id.GetValue()
		}
	} else {
		if p.extFD != nil && m.Has(p.extFD) {
			x.l = m.Get(p.extFD).List()
			x.n = x.l.Len()
		}
		if m.Has(p.idFD) {
			x.hasID, x.id = true, m.Get(p.idFD).Message().Get(p.idValFD).String()
		}
	}
	if x.n == 0 {
		return
	}
	for i := range x.n {
		if x.url(i, p) == fmNoValueURL {
			x.noVal = true
			break
		}
	}
	switch {
	case x.noVal:
		x.drop = fmNoValueURL
	case p.kind == pBase64:
		x.drop = fmStrideURL
	}
	for i := range x.n {
		if x.drop == "" || x.url(i, p) != x.drop {
			x.kept++
		}
	}
}

// primHas reports whether a primitive gives a value and a "_" object.
func (e *fmEnc) primHas(m protoreflect.Message, p *fmPrimInfo) (value, ext bool) {
	if p.kind == pBad {
		e.fail = true
		return false, false
	}
	var x fmPrimExts
	e.primExts(m, p, &x)
	value = !x.noVal && (p.kind != pEnum || m.Get(p.valueFD).Enum() != 0)
	return value, x.hasID || x.kept > 0
}

// primExt writes the "_" object of a primitive: its extensions and id.
func (e *fmEnc) primExt(m protoreflect.Message, p *fmPrimInfo) bool {
	var x fmPrimExts
	e.primExts(m, p, &x)
	e.buf = append(e.buf, '{')
	if x.kept > 0 {
		e.buf = append(e.buf, `"extension":[`...)
		n := 0
		for i := range x.n {
			if x.drop != "" && x.url(i, p) == x.drop {
				continue
			}
			if n > 0 {
				e.buf = append(e.buf, ',')
			}
			n++
			if !e.object(x.msg(i), p.ext.msg, false) {
				return false
			}
		}
		e.buf = append(e.buf, ']')
	}
	if x.hasID {
		if x.kept > 0 {
			e.buf = append(e.buf, ',')
		}
		e.buf = append(e.buf, `"id":`...)
		e.buf = jsonstr.AppendQuoted(e.buf, x.id, false)
	}
	e.buf = append(e.buf, '}')
	return true
}

// primValue writes a primitive's value.
func (e *fmEnc) primValue(m protoreflect.Message, p *fmPrimInfo) bool {
	switch p.kind {
	case pString:
		e.buf = jsonstr.AppendQuoted(e.buf, m.Get(p.valueFD).String(), false)
	case pBool:
		e.buf = strconv.AppendBool(e.buf, m.Get(p.valueFD).Bool())
	case pInt:
		e.buf = strconv.AppendInt(e.buf, m.Get(p.valueFD).Int(), 10)
	case pUint:
		e.buf = strconv.AppendUint(e.buf, m.Get(p.valueFD).Uint(), 10)
	case pDecimal:
		s := m.Get(p.valueFD).String()
		if !fmJSONNumber(s) {
			return false
		}
		e.buf = append(e.buf, s...)
	case pEnum:
		n := m.Get(p.valueFD).Enum()
		if n < 0 || int(n) >= len(p.codes) || p.codes[n] == "" {
			return false
		}
		e.buf = append(e.buf, p.codes[n]...)
	case pBase64:
		return e.base64(m, p)
	case pDate, pDateTime, pInstant, pTime:
		return e.timeLike(m, p)
	default:
		return false
	}
	return true
}

func (e *fmEnc) base64(m protoreflect.Message, p *fmPrimInfo) bool {
	data := m.Get(p.valueFD).Bytes()
	var stride protoreflect.Message
	if p.extFD != nil && m.Has(p.extFD) {
		l := m.Get(p.extFD).List()
		for i := range l.Len() {
			if xm := l.Get(i).Message(); p.ext.url(xm) == fmStrideURL {
				stride = xm
				break
			}
		}
	}
	if stride == nil {
		e.buf = append(e.buf, '"')
		e.buf = base64.StdEncoding.AppendEncode(e.buf, data)
		e.buf = append(e.buf, '"')
		return true
	}
	x := p.ext
	if x.subFD == nil {
		return false
	}
	sep, n := "", 0
	subs := stride.Get(x.subFD).List()
	for i := range subs.Len() {
		sm := subs.Get(i).Message()
		if !sm.Has(x.urlFD) {
			return false
		}
		switch x.url(sm) {
		case "separator", "stride":
			if !sm.Has(x.valueFD) {
				return false
			}
			vm := sm.Get(x.valueFD).Message()
			alt := vm.WhichOneof(x.choice)
			switch {
			case alt == x.strFD && x.url(sm) == "separator":
				sep = vm.Get(alt).Message().Get(x.strValFD).String()
			case alt == x.strideFD && x.url(sm) == "stride":
				n = int(vm.Get(alt).Message().Get(x.strideValF).Uint())
			default:
				return false
			}
		}
	}
	if n <= 0 {
		return false // google/fhir would loop for ever on a stride of 0
	}
	enc := base64.StdEncoding.EncodeToString(data)
	var sb strings.Builder
	pos := 0
	for ; (pos+1)*n < len(enc); pos++ {
		sb.WriteString(enc[pos*n : (pos+1)*n])
		sb.WriteString(sep)
	}
	sb.WriteString(enc[pos*n:])
	e.buf = jsonstr.AppendQuoted(e.buf, sb.String(), false)
	return true
}

var (
	fmLocs  sync.Map // timezone string -> *time.Location
	fmNLocs atomic.Int32
)

// fmLocation is the location of a Date's, DateTime's or Instant's
// timezone, found the way google/fhir finds it: "Z" is UTC, then an IANA
// name (or "", "UTC", "Local"), then a "+hh:mm" or "-hh:mm" offset.
func fmLocation(tz string) (*time.Location, bool) {
	if tz == "Z" {
		return time.UTC, true
	}
	if v, ok := fmLocs.Load(tz); ok {
		return v.(*time.Location), true
	}
	l, err := time.LoadLocation(tz)
	if err != nil {
		off, ok := fmOffset(tz)
		if !ok {
			return nil, false
		}
		l = time.FixedZone(tz, off)
	}
	if fmNLocs.Add(1) <= 1024 {
		fmLocs.Store(tz, l)
	}
	return l, true
}

func fmOffset(tz string) (int, bool) {
	if tz == "" {
		return 0, true
	}
	sign := tz[0]
	if sign != '+' && sign != '-' {
		return 0, false
	}
	hh, mm, ok := strings.Cut(tz[1:], ":")
	if !ok || strings.Contains(mm, ":") {
		return 0, false
	}
	h, err := strconv.Atoi(hh)
	if err != nil {
		return 0, false
	}
	m, err := strconv.Atoi(mm)
	if err != nil {
		return 0, false
	}
	if sign == '-' {
		return -h*3600 - m*60, true
	}
	return h*3600 + m*60, true
}

func (e *fmEnc) timeLike(m protoreflect.Message, p *fmPrimInfo) bool {
	us := m.Get(p.usFD).Int()
	var t time.Time
	tz := ""
	if p.kind == pTime {
		t = time.Unix(us/1e6, (us%1e6)*1000).UTC()
	} else {
		tz = m.Get(p.tzFD).String()
		l, ok := fmLocation(tz)
		if !ok {
			return false
		}
		t = time.Unix(us/1e6, (us%1e6)*1000).In(l)
	}
	prec := p.prec[m.Get(p.precFD).Enum()]
	if prec == precNone {
		return false
	}
	b := append(e.buf, '"')
	if p.kind != pTime {
		y, mo, d := t.Date()
		b = fmAppendInt(b, y, 4)
		if prec >= precMonth {
			b = fmAppendInt(append(b, '-'), int(mo), 2)
		}
		if prec >= precDay {
			b = fmAppendInt(append(b, '-'), d, 2)
		}
		if prec >= precSecond {
			b = append(b, 'T')
		}
	}
	if prec >= precSecond {
		h, mi, s := t.Clock()
		b = fmAppendInt(b, h, 2)
		b = fmAppendInt(append(b, ':'), mi, 2)
		b = fmAppendInt(append(b, ':'), s, 2)
		switch prec {
		case precMilli:
			b = fmAppendInt(append(b, '.'), t.Nanosecond()/1e6, 3)
		case precMicro:
			b = fmAppendInt(append(b, '.'), t.Nanosecond()/1e3, 6)
		}
		if p.kind != pTime {
			if tz == "Z" {
				b = append(b, 'Z')
			} else {
				_, off := t.Zone()
				zone := off / 60
				if zone < 0 {
					b = append(b, '-')
					zone = -zone
				} else {
					b = append(b, '+')
				}
				b = fmAppendInt(b, zone/60, 2)
				b = fmAppendInt(append(b, ':'), zone%60, 2)
			}
		}
	}
	e.buf = append(b, '"')
	return true
}

// fmAppendInt appends x in decimal, zero-padded to width digits, the way
// package time formats a date's fields (a negative year gets its '-'
// before the padding).
func fmAppendInt(b []byte, x, width int) []byte {
	u := uint64(x)
	if x < 0 {
		b = append(b, '-')
		u = uint64(-x)
	}
	var tmp [20]byte
	i := len(tmp)
	for {
		i--
		tmp[i] = byte('0' + u%10)
		u /= 10
		if u == 0 {
			break
		}
	}
	for pad := width - (len(tmp) - i); pad > 0; pad-- {
		b = append(b, '0')
	}
	return append(b, tmp[i:]...)
}

// fmJSONNumber reports whether s is a JSON number, which encoding/json
// writes as it is (google/fhir writes a decimal as a raw JSON value, which
// encoding/json compacts and refuses when it is not JSON).
func fmJSONNumber(s string) bool {
	i, n := 0, len(s)
	digits := func() int {
		j := i
		for i < n && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		return i - j
	}
	if i < n && s[i] == '-' {
		i++
	}
	switch {
	case i < n && s[i] == '0':
		i++
	case i < n && s[i] >= '1' && s[i] <= '9':
		digits()
	default:
		return false
	}
	if i < n && s[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < n && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < n && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == n
}
