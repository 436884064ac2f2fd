package subscription

// In-memory matching of the simple criteria filters against a version's
// own index rows (fhir.Indexer), so that most changes are decided without a
// search, and a thousand subscriptions cost a thousand map looks, not a
// thousand queries. See https://hl7.org/fhir/R4/search.html#token.

import "github.com/cpis-fhir/cpis/fhir"

// simple reports whether the store decides f exactly as tokenMatch does: a
// token parameter without modifier, or a reference's :identifier, with
// values that each name a code or a system.
func simple(f *fhir.Filter) bool {
	if f.Param == nil || f.Has != nil || len(f.Chain) > 0 || len(f.Any) > 0 || len(f.Values) == 0 {
		return false
	}
	if f.Param.Name == "_id" {
		return false
	}
	switch {
	case f.Param.Type == fhir.SearchParamToken && f.Modifier == "":
	case f.Param.Type == fhir.SearchParamReference && f.Modifier == "identifier":
	default:
		return false
	}
	for _, v := range f.Values {
		if v.Code == "" && (!v.HasSystem || v.System == "") {
			return false
		}
	}
	return true
}

// tokenMatch reports whether idx has a row of f's parameter (its
// :identifier rows for a reference) equal to one of f's values: the code
// and, when a system is given, the system (system| alone: any code in the
// system), as the SQL stores compare them.
func tokenMatch(f *fhir.Filter, idx *fhir.Index) bool {
	param := f.Param.Name
	if f.Param.Type == fhir.SearchParamReference {
		param += ":identifier"
	}
	return idx.HasToken(param, f.Values)
}

// compile sets s.simple (the filters tokenMatch decides) and s.exact
// (whether they are all of the criteria, so that no search is needed).
func (s *spec) compile(q *fhir.Search) {
	s.simple, s.exact = nil, len(q.Filters) > 0
	for i := range q.Filters {
		if simple(&q.Filters[i]) {
			s.simple = append(s.simple, q.Filters[i])
		} else {
			s.exact = false
		}
	}
}

// prefilter reports whether the version with index idx may match s: false
// when one of s's simple filters rules it out.
func (s *spec) prefilter(idx *fhir.Index) bool {
	for i := range s.simple {
		if !tokenMatch(&s.simple[i], idx) {
			return false
		}
	}
	return true
}
