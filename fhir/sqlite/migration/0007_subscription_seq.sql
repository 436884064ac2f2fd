-- Which versions a subscription was notified of (Store.Notified): the
-- subscription engine asks when a resource is deleted whose last version
-- matched criteria that only a search decides.
CREATE INDEX sub_event_seq ON sub_event (sub, seq);
