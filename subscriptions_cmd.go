package main

// cpis subscriptions: the subscriptions of a data folder with their status,
// lag and last error (README "Subscriptions").

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"text/tabwriter"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/fhir/sqlite"
)

func subscriptionsCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("cpis subscriptions", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("data", "./cpis-data", "data folder")
	if err := fs.Parse(args); err != nil {
		return err
	}
	store, err := sqlite.Open(filepath.Join(*dir, "cpis.db"), sqlite.Config{})
	if err != nil {
		return err
	}
	defer store.Close()
	return listSubscriptions(ctx, store, stdout)
}

// listSubscriptions prints one line per Subscription: id, status, owner
// (the council's ODS code, or admin), events given, delivered, lag
// (events not yet delivered), criteria and the last error.
func listSubscriptions(ctx context.Context, store *sqlite.Store, w io.Writer) error {
	states, err := store.SubscriptionStates(ctx)
	if err != nil {
		return err
	}
	byID := make(map[string]fhir.SubscriptionState, len(states))
	for _, st := range states {
		byID[st.ID] = st
	}
	q, err := fhir.ParseSearch("Subscription", nil, fhir.SearchOptions{Registry: fhir.NewSearchRegistry(), DefaultCount: 500, MaxCount: 500})
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATUS\tOWNER\tEVENTS\tDELIVERED\tLAG\tCRITERIA\tLAST ERROR")
	var cur fhir.Cursor
	for {
		page, err := store.Search(ctx, q, cur, false)
		if err != nil {
			return err
		}
		for _, r := range page.Matches {
			var sub struct {
				Status, Criteria, Error string
				Meta                    struct {
					Tag []struct{ System, Code string }
				}
			}
			if err := json.Unmarshal(r.JSON, &sub); err != nil {
				return fmt.Errorf("Subscription/%s: %w", r.ID, err)
			}
			owner := "admin"
			for _, t := range sub.Meta.Tag {
				if t.System == "https://fhir.nhs.uk/Id/ods-organization-code" {
					owner = t.Code
				}
			}
			st := byID[r.ID]
			last := sub.Error
			if last == "" {
				last = st.Error
			}
			if last == "" {
				last = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\n", r.ID, sub.Status, owner, st.Events, st.Delivered, st.Events-st.Delivered, sub.Criteria, last)
		}
		if page.Next == nil {
			break
		}
		cur = page.Next
	}
	return tw.Flush()
}
