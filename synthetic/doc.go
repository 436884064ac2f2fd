// Package synthetic generates realistic, deterministic CP-IS data at
// England's scale: councils (local authorities) with their contact numbers
// and social workers, unscheduled-care sites, children and pregnant women
// with 999-range NHS numbers, their plans (child protection, looked after,
// unborn) in national proportions, and attendances (Encounters) following
// daily and weekly curves.
//
// The same Config gives the same data, byte for byte: every random draw
// comes from a PCG generator (math/rand/v2) seeded from Config.Seed and the
// index of the thing drawn, never from map order or the clock. Dates are
// days before Config.Now, so a data set is reproduced exactly by the same
// seed, size and reference day.
//
// The resources follow the CP-IS profiles (package profiles), and council
// uploads are transaction Bundles shaped as councils send them: per child a
// Patient created conditionally on its NHS number (ifNoneExist), a Flag, a
// CarePlan and a CareTeam, linked by urn:uuid.
// See DOMAIN.md for the facts behind the proportions and shapes, and
// https://hl7.org/fhir/R4/http.html#transaction for the Bundles.
package synthetic
