// Package readiness decides the Ready condition of hookline's resources from what their
// reconcilers observed. The decisions are pure functions so they are table-tested without
// a cluster; the reconcilers only gather the inputs and write the result.
package readiness
