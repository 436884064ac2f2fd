package fhir

import "time"

// Notification is one event of a subscription's durable queue: a committed
// version that matched the subscription's criteria.
// See https://hl7.org/fhir/R4/subscription.html.
type Notification struct {
	// Subscription is the Subscription's id.
	Subscription string
	// Number is the subscription's event number: gap-free from 1, in the
	// order the versions were committed.
	Number int64
	// Seq is the store's commit sequence number of the version.
	Seq int64
	// Type, ID and Version name the version notified.
	Type, ID string
	Version  int64
}

// SubscriptionState is what the subscription engine keeps about one
// Subscription beside the resource itself.
type SubscriptionState struct {
	ID string
	// Events is the last event number given; Delivered the last one
	// delivered (acknowledged by the receiver, or withheld because the
	// owner may not see it). Events - Delivered is the lag.
	Events, Delivered int64
	// Status and Error are the engine's last decision (such as "error"
	// with the reason); empty when it made none.
	Status, Error string
	// UpdatedAt is when Status or Error last changed.
	UpdatedAt time.Time
}
