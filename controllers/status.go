package controllers

import (
	"context"

	"sigs.k8s.io/controller-runtime/pkg/client"
)

// patchStatus writes the change from base to obj to the status subresource as a merge
// patch, and nothing when there is no change, so a reconcile that observes nothing new
// causes no write (and no watch event for everyone else). Reconcilers only change status,
// so the patch holds status alone.
func patchStatus(ctx context.Context, c client.Client, obj, base client.Object) error {
	patch := client.MergeFrom(base)
	data, err := patch.Data(obj)
	if err != nil {
		return err
	}
	if string(data) == "{}" {
		return nil
	}
	return c.Status().Patch(ctx, obj, client.RawPatch(patch.Type(), data))
}
