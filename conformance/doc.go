// Package conformance builds the server's CapabilityStatement from the
// routes the server really registers, so the server never claims an
// interaction it does not serve.
package conformance
