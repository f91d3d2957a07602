// Package workload renders the dispatcher's Kubernetes objects (Deployment, Service,
// ServiceAccount, RBAC, PodDisruptionBudget and, with the embedded queue, the
// PersistentVolumeClaim holding it) from the operator's dispatcher Settings.
//
// Everything here is a pure function of the Settings, table-tested without a cluster. The
// dispatcher controller applies the result with server-side apply and keeps it in shape;
// the operator's command line and config file fill in and validate the Settings.
package workload
