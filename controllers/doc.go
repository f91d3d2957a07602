// Package controllers holds one reconciler per hookline kind. Each reconciler reads the
// object and what it refers to, computes the desired state with pure functions from
// internal/, applies it, and writes status once.
package controllers
