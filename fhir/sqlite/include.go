package sqlite

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/cpis-fhir/cpis/fhir"
)

// Bounds of _include and _revinclude: rounds of :iterate after the first,
// and resources added to one page. Past them no more are added.
const (
	maxIncludeRounds = 5
	maxIncluded      = 1000
)

// hit is a resource on the page: its row key and type.
type hit struct {
	rid int64
	typ string
}

// include returns the resources that q's _include and _revinclude add to
// the page's matches: first every include applied to the matches, then,
// for up to maxIncludeRounds rounds, the :iterate ones applied to the
// resources the round before added, until a round adds nothing. Each
// resource is added once and never one that is a match; only current, not
// deleted, versions. The order is by round, then by rid.
// See https://hl7.org/fhir/R4/search.html#include.
func (s *Store) include(ctx context.Context, rd *reader, q *fhir.Search, matches []hit) ([]*fhir.Resource, error) {
	seen := map[int64]bool{}
	for _, h := range matches {
		seen[h.rid] = true
	}
	var c *compiler
	if q.Restrict != nil {
		c = &compiler{s: s, rd: rd, ctx: ctx, now: s.cfg.Now(), restrict: q.Restrict}
	}
	var out []*fhir.Resource
	frontier := matches
	for round := 0; round <= maxIncludeRounds && len(frontier) > 0 && len(out) < maxIncluded; round++ {
		var added []hit
		add := func(hs []hit) error {
			if c != nil {
				var err error
				if hs, err = c.reachable(hs); err != nil {
					return err
				}
			}
			for _, h := range hs {
				if !seen[h.rid] {
					seen[h.rid] = true
					added = append(added, h)
				}
			}
			return nil
		}
		for _, inc := range q.Include {
			if round > 0 && !inc.Iterate {
				continue
			}
			hs, err := s.includeTargets(ctx, rd, inc, frontier)
			if err == nil {
				err = add(hs)
			}
			if err != nil {
				return nil, err
			}
		}
		for _, inc := range q.RevInclude {
			if round > 0 && !inc.Iterate {
				continue
			}
			hs, err := s.revIncludeSources(ctx, rd, inc, frontier)
			if err == nil {
				err = add(hs)
			}
			if err != nil {
				return nil, err
			}
		}
		slices.SortFunc(added, func(a, b hit) int { return cmp.Compare(a.rid, b.rid) })
		if room := maxIncluded - len(out); len(added) > room {
			added = added[:room]
		}
		rs, err := s.fetch(ctx, rd, added)
		if err != nil {
			return nil, err
		}
		out = append(out, rs...)
		frontier = added
	}
	return out, nil
}

// reachable returns the resources of hs that the search's Restriction
// lets it reach, in order: none of a type it does not reach, and of a
// restricted type those that match its filters (one query per such type).
// Included resources are checked before they are added, so that :iterate
// never goes on from one that is not.
func (c *compiler) reachable(hs []hit) ([]hit, error) {
	ok := map[int64]bool{}
	checked := map[string]bool{}
	for _, h := range hs {
		if checked[h.typ] {
			continue
		}
		checked[h.typ] = true
		rc, err := c.restriction(h.typ)
		if err != nil {
			return nil, err
		}
		if rc == nil {
			for _, g := range hs {
				if g.typ == h.typ {
					ok[g.rid] = true
				}
			}
			continue
		}
		if rc == constCond(false) {
			continue
		}
		list, _ := ridList(hs, h.typ)
		var b sqlb
		b.w("SELECT r.rid, r.type FROM json_each(")
		b.arg(list)
		b.w(") j CROSS JOIN res r WHERE r.rid = j.value AND r.deleted = 0 AND ")
		rc.match(&b, "r")
		got, err := queryHits(c.ctx, c.rd, &b)
		if err != nil {
			return nil, err
		}
		for _, g := range got {
			ok[g.rid] = true
		}
	}
	out := hs[:0:0]
	for _, h := range hs {
		if ok[h.rid] {
			out = append(out, h)
		}
	}
	return out, nil
}

// ridList returns the rids of hs (of type typ unless typ is empty) as a
// JSON array, for json_each.
func ridList(hs []hit, typ string) (string, int) {
	var b strings.Builder
	b.WriteByte('[')
	n := 0
	for _, h := range hs {
		if typ != "" && h.typ != typ {
			continue
		}
		if n > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(h.rid, 10))
		n++
	}
	b.WriteByte(']')
	return b.String(), n
}

// includeTargets follows inc.Param (every reference parameter when nil)
// of the resources of type inc.Source in hs to the current resources they
// refer to (of inc.TargetType when set).
func (s *Store) includeTargets(ctx context.Context, rd *reader, inc fhir.Include, hs []hit) ([]hit, error) {
	list, n := ridList(hs, inc.Source)
	if n == 0 {
		return nil, nil
	}
	var b sqlb
	b.w("SELECT DISTINCT t.rid, t.type FROM json_each(")
	b.arg(list)
	b.w(") j CROSS JOIN idx_reference x CROSS JOIN res t WHERE x.rid = j.value")
	if inc.Param != nil {
		pid, err := rd.pid(ctx, inc.Source, inc.Param.Name)
		if err != nil {
			return nil, err
		}
		b.w(" AND x.pid = ")
		b.key(pid)
	}
	b.w(" AND t.type = x.ref_type AND t.id = x.ref_id AND t.deleted = 0")
	if inc.TargetType != "" {
		b.w(" AND t.type = ")
		b.key(inc.TargetType)
	}
	return queryHits(ctx, rd, &b)
}

// revIncludeSources finds the current resources of type inc.Source whose
// parameter inc.Param (any parameter when nil) refers to one in hs.
func (s *Store) revIncludeSources(ctx context.Context, rd *reader, inc fhir.Include, hs []hit) ([]hit, error) {
	list, _ := ridList(hs, "")
	var b sqlb
	b.w("SELECT DISTINCT o.rid, o.type FROM json_each(")
	b.arg(list)
	b.w(") j CROSS JOIN res t CROSS JOIN idx_reference x CROSS JOIN res o WHERE t.rid = j.value AND x.pid")
	if inc.Param != nil {
		pid, err := rd.pid(ctx, inc.Source, inc.Param.Name)
		if err != nil {
			return nil, err
		}
		b.w(" = ")
		b.key(pid)
	} else {
		b.w(" IN (SELECT pid FROM search_param WHERE type = ")
		b.key(inc.Source)
		b.w(")")
	}
	b.w(" AND x.ref_id = t.id AND x.ref_type = t.type AND o.rid = x.rid AND o.type = ")
	b.key(inc.Source)
	b.w(" AND o.deleted = 0")
	return queryHits(ctx, rd, &b)
}

func queryHits(ctx context.Context, rd *reader, b *sqlb) ([]hit, error) {
	rows, err := rd.query(ctx, b.String(), b.args)
	if err != nil {
		return nil, fmt.Errorf("search include: %w", err)
	}
	defer rows.Close()
	var hs []hit
	for rows.Next() {
		var h hit
		if err := rows.Scan(&h.rid, &h.typ); err != nil {
			return nil, fmt.Errorf("search include: %w", err)
		}
		hs = append(hs, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("search include: %w", err)
	}
	return hs, nil
}

// fetch reads the current versions of hs, in their order.
func (s *Store) fetch(ctx context.Context, rd *reader, hs []hit) ([]*fhir.Resource, error) {
	if len(hs) == 0 {
		return nil, nil
	}
	list, _ := ridList(hs, "")
	rows, err := rd.query(ctx, `SELECT r.type, r.id, r.version, r.seq, r.last_updated, h.method, h.body
		FROM json_each(?) j CROSS JOIN res r CROSS JOIN history h
		WHERE r.rid = j.value AND h.seq = r.seq ORDER BY j.key`, []any{list})
	if err != nil {
		return nil, fmt.Errorf("search include: %w", err)
	}
	out, err := scanVersions(rows)
	if err != nil {
		return nil, fmt.Errorf("search include: %w", err)
	}
	return out, nil
}
