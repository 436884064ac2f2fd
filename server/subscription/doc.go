// Package subscription is the subscription engine: it turns committed
// changes into durable, numbered notifications for each active R4
// Subscription and delivers them through the rest-hook and websocket
// channels, at least once, in order per subscription, and only while the
// subscription's owner may see the resource. See https://hl7.org/fhir/R4/subscription.html.
//
// # How it works
//
//   - The store gives every committed version a gap-free sequence number
//     (the outbox). The matcher follows it from a durable cursor, after
//     commit and outside the store's writer, in batches.
//   - Criteria made only of token filters (code, system|code, |code,
//     system|) and reference :identifier filters, such as
//     Communication?recipient:identifier=<ods>|<code>, are decided in
//     memory on the version's own index rows (fhir.Indexer), exactly as the
//     SQL compares them: no query per subscription. Those filters also rule
//     out versions for every other criteria.
//   - Any other criteria (chains, dates, strings, modifiers) match a
//     version when the store's own search finds it: the criteria plus
//     _id=<the batch's candidate ids of that type>, run on the committed
//     state, so they work exactly as in a search. A version that a later
//     commit already replaced is then judged by the resource's state when
//     the matcher reads it (normally milliseconds after its commit).
//   - A delete is matched on the version it removed: by its index rows
//     when the criteria are decided in memory, else when that version was
//     notified to the subscription (a search no longer finds it). At
//     delivery the policy judges it by that version too.
//   - The notifications of one batch, numbered per subscription on from
//     the last, are stored in the same transaction that moves the cursor:
//     after a crash the matcher takes up where the durable cursor is, and
//     nothing is lost or numbered twice.
//   - One delivery worker per active subscription sends its notifications
//     in event-number order; a failing receiver is retried with
//     exponential backoff and jitter until Config.Horizon passes, then the
//     Subscription goes to status error with the reason. Workers never
//     wait for one another.
//   - At delivery the version and the resource's current version are read
//     with the owner's rights (access.Policy.Store with the owner's
//     principal: the council whose ODS code is the Subscription's meta.tag,
//     else an administrator). What the owner may not see is withheld
//     (counted as delivered, never sent).
//
// With Config.Bus (fhir/redis), several server processes of one store
// share the engine: leases in the store say which process matches and
// which delivers each subscription, the bus carries the work, wake-ups and
// websocket pings, and the store stays the source of truth (shared.go).
//
// Topic-based Subscriptions of the Subscriptions R5 Backport IG (topic.go)
// use the same queue and workers; their notifications are history Bundles
// led by the SubscriptionStatus Parameters, after a handshake, posted to a
// rest-hook or sent to the websocket clients bound (socket.go). A topic of
// several resource types matches one set of criteria per type under the
// same subscription (spec.more).
//
// Rest-hooks call only the endpoints Config.Endpoints allows (endpoint.go):
// by default public addresses, checked after DNS resolution on every
// connection.
package subscription
