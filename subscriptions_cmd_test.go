package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cpis-fhir/cpis/fhir"
	"github.com/cpis-fhir/cpis/fhir/sqlite"
)

func TestSubscriptionsCommand(t *testing.T) {
	dir := t.TempDir()
	store, err := sqlite.Open(filepath.Join(dir, "cpis.db"), sqlite.Config{})
	if err != nil {
		t.Fatal(err)
	}
	codec, err := fhir.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	svc := &fhir.Service{Store: store, Codec: codec, Indexer: fhir.NewIndexer(fhir.NewSearchRegistry())}
	p, err := codec.Parse([]byte(`{"resourceType":"Subscription","meta":{"tag":[{"system":"https://fhir.nhs.uk/Id/ods-organization-code","code":"LA1"}]},
		"status":"error","error":"event 1 not delivered for 72h0m0s: the receiver answered HTTP 503","reason":"t","criteria":"Communication",
		"channel":{"type":"rest-hook","endpoint":"https://la1.example/hook"}}`))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	sub, err := svc.Create(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Enqueue(ctx, 0, sub.Seq, []fhir.Notification{{Subscription: sub.ID, Seq: sub.Seq, Type: "Subscription", ID: sub.ID, Version: 1}}); err != nil {
		t.Fatal(err)
	}
	store.Close()
	var out, errs bytes.Buffer
	if err := run(ctx, []string{"subscriptions", "--data", dir}, &out, &errs); err != nil {
		t.Fatalf("cpis subscriptions: %v: %s", err, errs.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("cpis subscriptions: %q, want a header and one line", out.String())
	}
	f := strings.Fields(lines[1])
	if want := []string{sub.ID, "error", "LA1", "1", "0", "1", "Communication", "event"}; len(f) < len(want) || strings.Join(f[:len(want)], " ") != strings.Join(want, " ") {
		t.Errorf("cpis subscriptions line %q, want fields %v", lines[1], want)
	}
	if !strings.Contains(lines[1], "HTTP 503") {
		t.Errorf("cpis subscriptions line %q, want the last error", lines[1])
	}
}
