//go:build race

package query

// The race detector slows SQLite (transpiled C) about tenfold; the property
// test runs fewer datasets under it.
const raceEnabled = true
