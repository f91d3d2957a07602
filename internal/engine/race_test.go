//go:build race

package engine

// raceDetector: the race detector is on, which multiplies memory and time.
const raceDetector = true
