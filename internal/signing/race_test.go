//go:build race

package signing

// raceEnabled skips allocation checks: under the race detector sync.Pool
// drops items on purpose, so pooled code allocates.
const raceEnabled = true
