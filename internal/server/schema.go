package server

import (
	"fmt"
	"net/http"
)

// DataChecker checks an event's data against its namespace's event catalog: the
// EventTypes with spec.enforce set. The dispatcher's is internal/catalog's live view.
type DataChecker interface {
	// CheckData returns nil when data may be published as eventType in ns.
	CheckData(ns, eventType string, data []byte) *DataViolation
}

// DataViolation is why an event's data does not match its type's schema.
type DataViolation struct {
	// EventType is the name of the EventType object whose schema refused the data.
	EventType string
	// Path is the JSON path of the offending value within data: "" for data itself, else
	// like ".amount" or ".lines[2].sku".
	Path string
	// Rule is the schema keyword that failed ("required", "minimum", ...) and
	// KeywordLocation where it is in the schema ("#/properties/amount/minimum").
	Rule, KeywordLocation string
	// Message says what the rule wants.
	Message string
}

// checkData refuses ev with 422 when the catalog enforces a schema its data does not
// match. prefix is the event's path within a batch, empty for a single event.
func (h *Handler) checkData(prefix string, ev *Event) *fieldError {
	if h.opts.Schemas == nil {
		return nil
	}
	v := h.opts.Schemas.CheckData(ev.Namespace, ev.Type, ev.Data)
	if v == nil {
		return nil
	}
	field := "data" + v.Path
	if prefix != "" {
		field = prefix + "." + field
	}
	return &fieldError{status: http.StatusUnprocessableEntity, field: field, message: fmt.Sprintf(
		"%s does not match the schema of event type %s (EventType %s/%s): %s (rule %q at %s). Nothing was stored; fix the data, or see kubectl get eventtype %s -n %s -o yaml for the schema",
		field, ev.Type, ev.Namespace, v.EventType, v.Message, v.Rule, v.KeywordLocation, v.EventType, ev.Namespace)}
}
