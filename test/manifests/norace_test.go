//go:build !race

package manifests

// raceEnabled says the test binary runs with the race detector, so that
// helper builds use the same flag and reuse the build cache.
const raceEnabled = false
