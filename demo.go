package main

// cpis serve --demo: a data folder without children gets a small synthetic
// data set at start (three councils, a few hundred children, some
// attendances), and the server prints curl commands to try it, which work
// as printed. See README.md, "Synthetic data, seed and bench".

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/cpis-fhir/cpis/server/smart"
	"github.com/cpis-fhir/cpis/synthetic"
)

// The demo data set.
var demoConfig = synthetic.Config{Seed: 1, Children: 300, Councils: 3, Sites: 6}

const demoAttendances = 60

// seedDemo loads the demo data set through h when the store holds no
// Patient yet, and returns its generator; out receives the progress.
func seedDemo(ctx context.Context, h http.Handler, out io.Writer) (*synthetic.Generator, error) {
	cfg := demoConfig
	cfg.Now = time.Now()
	g, err := synthetic.New(cfg)
	if err != nil {
		return nil, err
	}
	p := handlerPoster{h}
	n, err := countOf(ctx, p, "Patient")
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	if n > 0 {
		fmt.Fprintf(out, "cpis: demo: the data folder holds %d Patients already; not seeding\n", n)
		return g, nil
	}
	if err := seed(ctx, g, p, 2, demoAttendances, io.Discard, io.Discard); err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	fmt.Fprintf(out, "cpis: demo: seeded %d councils, %d sites, %d children and %d attendances (cpis seed --seed %d --children %d --councils %d --sites %d)\n",
		cfg.Councils, cfg.Sites, cfg.Children, demoAttendances, cfg.Seed, cfg.Children, cfg.Councils, cfg.Sites)
	return g, nil
}

// demoCommand is one example of the demo: what it shows and the command.
type demoCommand struct{ say, cmd string }

// demoCommands returns the example curl commands of the demo data set
// against the FHIR base.
func demoCommands(g *synthetic.Generator, base string) []demoCommand {
	// The child: one with a current plan and, when the seeded attendances
	// have one, an attendance already.
	child := g.Subject(int(g.FlaggedSubjects()[0]))
	for k := range demoAttendances {
		if a := g.Attendance(k); a.Subject < g.Config().Children {
			child = g.Subject(a.Subject)
			break
		}
	}
	nhs := synthetic.SystemNHSNumber + "|" + child.NHSNumber
	// A child the data set holds nothing on.
	unknown := synthetic.SystemNHSNumber + "|" + g.NHSNumber(g.Config().Children)
	a := g.Attendance(0)
	a.Subject, a.NHSNumber = child.Index, child.NHSNumber
	a.Start, a.End = time.Now().UTC().Truncate(time.Second), time.Now().UTC().Truncate(time.Second).Add(time.Hour)
	council := g.Councils()[child.Records[0].Council]
	q := shellQuote
	return []demoCommand{
		{"Is this child known to children's social care? (the lookup of every unscheduled attendance)",
			"curl -s -H \"Authorization: Bearer $TOKEN\" " + q(base+"/Flag?subject:identifier="+nhs+"&status=active&_pretty=true")},
		{"Whom to call: the council's team with office-hours and emergency-duty numbers (the national CP-IS query)",
			"curl -s -H \"Authorization: Bearer $TOKEN\" " + q(base+"/CareTeam?patient:identifier="+nhs+"&_pretty=true")},
		{"A child with no CP-IS record: an empty result means no record is held, not that the child is safe",
			"curl -s -H \"Authorization: Bearer $TOKEN\" " + q(base+"/Flag?subject:identifier="+unknown+"&status=active")},
		{"Record the attendance (201, Location names the new Encounter)",
			"curl -si -H \"Authorization: Bearer $TOKEN\" -X POST " + q(base+"/Encounter") + " -H 'Content-Type: application/fhir+json' -H 'Prefer: return=minimal' -d " + q(string(g.EncounterJSON(a)))},
		{"The child's attendances",
			"curl -s -H \"Authorization: Bearer $TOKEN\" " + q(base+"/Encounter?subject:identifier="+nhs+"&_summary=count")},
		{"The council",
			"curl -s -H \"Authorization: Bearer $TOKEN\" " + q(base+"/Organization?identifier="+synthetic.SystemODS+"|"+council.ODSCode+"&_pretty=true")},
		{"How many current records the demo holds",
			"curl -s -H \"Authorization: Bearer $TOKEN\" " + q(base+"/Flag?status=active&_summary=count")},
	}
}

// printDemo prints how to try the demo data set, with an administrator's
// access token (token) for the commands.
func printDemo(w io.Writer, g *synthetic.Generator, base, token string) {
	var b strings.Builder
	b.WriteString("\nTry the demo data set (test NHS numbers from the 999 range), in one shell:\n")
	fmt.Fprintf(&b, "\n  # An administrator's access token for these commands (valid %s)\n  export TOKEN=%s\n", smart.MaxTokenTTL, token)
	for _, c := range demoCommands(g, base) {
		fmt.Fprintf(&b, "\n  # %s\n  %s\n", c.say, c.cmd)
	}
	cfg := g.Config()
	fmt.Fprintf(&b, "\n  # Load it (from another terminal, after the export above)\n  cpis bench --base %s --seed %d --children %d --scenario lookup --duration 10s --token \"$TOKEN\"\n\n", base, cfg.Seed, cfg.Children)
	io.WriteString(w, b.String())
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// demoToken returns an administrator's access token for the demo commands,
// signed with the folder's key for the FHIR base and audited as cpis token
// is.
func demoToken(dir, base string) (string, error) {
	keys, err := smart.OpenKeySet(filepath.Join(dir, keysFile))
	if err != nil {
		return "", err
	}
	tok, jti, err := keys.Sign(smart.AccessToken{Issuer: base, Subject: "demo-admin", ClientID: "cpis-demo", Role: smart.RoleAdmin,
		Scope: smart.DefaultScope(smart.RoleAdmin), IssuedAt: time.Now(), TTL: smart.MaxTokenTTL})
	if err != nil {
		return "", err
	}
	return tok, auditAdmin(dir, "token-issued", map[string]string{"jti": jti, "sub": "demo-admin", "role": string(smart.RoleAdmin),
		"scope": smart.DefaultScope(smart.RoleAdmin), "ttl": smart.MaxTokenTTL.String(), "aud": base, "for": "demo commands"})
}
