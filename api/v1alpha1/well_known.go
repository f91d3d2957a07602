package v1alpha1

// Annotations and labels that hookline reads or writes.
const (
	// AnnotationRotate requests one rotation of a generated signing key with the usual
	// overlap. Set it to a new value (a date, a ticket number) for each rotation; a value
	// that was already handled never rotates again.
	AnnotationRotate = "hookline.io/rotate"

	// AnnotationRotateImmediately requests a rotation without overlap: the previous key stops
	// signing at once. Use it when a key has leaked. Same one-shot value rule as
	// AnnotationRotate.
	AnnotationRotateImmediately = "hookline.io/rotate-immediately"

	// AnnotationEnable re-enables a disabled endpoint (Disabled=True). Set it to a new value
	// each time, e.g. `kubectl annotate whep NAME hookline.io/enable=$(date +%s) --overwrite`;
	// the dispatcher records the value it handled in status.lastHandledEnable, so a value
	// that was already handled does nothing, and re-applying the same manifest (GitOps) never
	// re-enables an endpoint that was disabled again since.
	AnnotationEnable = "hookline.io/enable"

	// LabelSigningSecret marks the Secrets that hold signing keys, generated or referenced,
	// so the dispatcher watches only these.
	LabelSigningSecret = "hookline.io/signing-key"

	// AnnotationReferencedSecrets, on an endpoint's signing Secret, lists the resource
	// versions of the other Secrets the endpoint refers to (auth, headers, CA). The
	// operator updates it when one of them changes, so the dispatcher, which watches only
	// the labelled signing Secrets, knows to re-read them.
	AnnotationReferencedSecrets = "hookline.io/referenced-secrets" //nolint:gosec // G101: an annotation's name, not a credential

	// LabelEndpoint names the WebhookEndpoint a generated Secret belongs to.
	LabelEndpoint = "hookline.io/endpoint"
)
