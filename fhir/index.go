package fhir

// Index holds the search index values of one resource version: for each
// search parameter of the resource's type, the values its expression
// selects, turned into typed rows that the stores keep in index tables
// written in the same transaction as the resource. A delete has no index.
//
// Rows are deduplicated: the same value of the same parameter appears once.
// Param is the parameter's code (Name), except for the derived rows that
// serve modifiers, whose Param is the code followed by the modifier:
//
//   - "<code>:identifier" (IndexToken): Reference.identifier of a reference
//     parameter, as system and value, for [code]:identifier=system|value.
//   - "<code>:text" (IndexString): the display text of a token parameter
//     (CodeableConcept.text, Coding.display, Identifier.type.text), for
//     [code]:text=....
//   - "<code>:of-type" (IndexToken): Identifier.type coding system as
//     System, and Code "typecode|value", for [code]:of-type=system|code|value.
//
// See https://hl7.org/fhir/R4/search.html.
type Index struct {
	Strings    []IndexString
	Tokens     []IndexToken
	References []IndexReference
	Dates      []IndexDate
	Numbers    []IndexNumber
	Quantities []IndexQuantity
	URIs       []IndexURI
	Composites []IndexComposite
}

// IndexString is a string parameter value. Norm is the value with accents
// removed, case folded and runs of white space made one space, which the
// default (starts-with) and :contains searches compare; Exact is the value as
// written, for :exact. For HumanName and Address every part (family, given,
// prefix, suffix, text; line, city, district, state, postalCode, country,
// text) is a row of its own.
type IndexString struct {
	Param string
	Norm  string
	Exact string
}

// IndexToken is a token parameter value: Coding system and code,
// Identifier system and value, ContactPoint value (System is the
// ContactPoint.system), a code, boolean ("true", "false"), id or string
// (System empty). System is empty when the element has none.
type IndexToken struct {
	Param  string
	System string
	Code   string
}

// IndexReference is a reference parameter value. A relative reference
// (Patient/123, or Patient/123/_history/2) has Type and ID and an empty URL;
// an absolute URL or a canonical keeps the URL (without a version suffix
// |1.0 in Version) and has Type and ID only when they can be told from the
// URL's last two segments being a resource type and an id, so that a
// reference to this server written absolutely still matches Type/ID.
// Local references (#id) to contained resources are not indexed.
type IndexReference struct {
	Param   string
	Type    string
	ID      string
	URL     string
	Version string
}

// IndexDate is a date parameter value as the range of instants it covers,
// in Unix milliseconds, both ends inclusive: a date 2020-01-02 covers
// [2020-01-02T00:00:00.000, 2020-01-02T23:59:59.999] in the time zone of
// the value (UTC when it has none); an instant covers its millisecond; a
// Period covers [start's low, end's high], with an absent start at
// MinDate and an absent end at MaxDate. Timing is indexed by its events
// and bounds.
type IndexDate struct {
	Param string
	Low   int64
	High  int64
}

// The ends of open date ranges.
const (
	MinDate int64 = -1 << 62
	MaxDate int64 = 1 << 62
)

// IndexNumber is a number parameter value as the range its precision
// implies: 100 covers [99.5, 100.5), 1.50 covers [1.495, 1.505). Value is
// the number itself, used for sorting. A Range covers [low, high].
type IndexNumber struct {
	Param string
	Value float64
	Low   float64
	High  float64
}

// IndexQuantity is a quantity parameter value: as IndexNumber, plus the
// Quantity's system and code and its unit (human text). A Range is indexed
// as one row from low to high.
type IndexQuantity struct {
	Param  string
	System string
	Code   string
	Unit   string
	Value  float64
	Low    float64
	High   float64
}

// IndexURI is a uri parameter value, as written.
type IndexURI struct {
	Param string
	URI   string
}

// IndexComposite is one value of a composite parameter: the values of its
// components, taken from the same item that the composite's expression
// selects, in the order of SearchParam.Components. Every combination of
// the components' values is a row of its own.
type IndexComposite struct {
	Param string
	Parts []IndexPart
}

// IndexPart is the value of one component of a composite: the fields of the
// component's type are set as in the matching Index* type (Token: System,
// Code; String: Norm, Exact; Reference: Type, ID, URL; Date: DateLow,
// DateHigh; Number and Quantity: Value, Low, High, and System and Code for
// the unit; URI: URI).
type IndexPart struct {
	Type     SearchParamType
	System   string
	Code     string
	Norm     string
	Exact    string
	RefType  string
	RefID    string
	URL      string
	URI      string
	DateLow  int64
	DateHigh int64
	Value    float64
	Low      float64
	High     float64
}

// IndexVersion names the version of the index extraction rules. Change it
// whenever Indexer would produce different rows for the same resource; a
// server started on a data folder indexed under another version rebuilds
// the index before it serves (cpis reindex does it by hand).
const IndexVersion = "2"

// HasToken reports whether x has a token row of param equal to one of the
// search values vs, as the stores compare them: the code when one is
// given, the system when one is given (system| alone: any code of that
// system; a value with neither matches any row of param).
func (x *Index) HasToken(param string, vs []Value) bool {
	for _, v := range vs {
		for _, t := range x.Tokens {
			if t.Param == param && (!v.HasSystem || t.System == v.System) && (v.Code == "" || t.Code == v.Code) {
				return true
			}
		}
	}
	return false
}
