// Package catalog is the event catalog: EventType objects, their JSON Schemas compiled
// once per object generation, and the check of an event's data against them. The
// operator uses Compile and CheckExample to report an EventType's status; the dispatcher
// keeps a live Catalog to enforce schemas at ingest.
package catalog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// schemaURL is where a compiled schema says it came from. Nothing is loaded from it.
const schemaURL = "mem:///eventtype/schema.json"

var printer = message.NewPrinter(language.English)

// refuseLoader loads no document: a schema must be self-contained, so compiling it never
// reads a file or the network.
type refuseLoader struct{}

func (refuseLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("the schema refers to %s; only references within the schema itself (\"#/$defs/...\") are allowed", url)
}

// Compile compiles a JSON Schema, draft 2020-12 unless its $schema names another draft.
// The error says what is wrong in words fit for a condition message.
func Compile(schema []byte) (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schema))
	if err != nil {
		return nil, fmt.Errorf("spec.schema is not valid JSON: %v", err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.UseLoader(refuseLoader{})
	if err := c.AddResource(schemaURL, doc); err != nil {
		return nil, fmt.Errorf("spec.schema: %v", err)
	}
	sch, err := c.Compile(schemaURL)
	if err != nil {
		return nil, fmt.Errorf("spec.schema is not a valid JSON Schema: %s", describeCompileError(err))
	}
	return sch, nil
}

func describeCompileError(err error) string {
	var sve *jsonschema.SchemaValidationError
	if errors.As(err, &sve) {
		var ve *jsonschema.ValidationError
		if errors.As(sve.Err, &ve) {
			v := violation(ve)
			where := "at the top level"
			if v.Path != "" {
				where = "at spec.schema" + v.Path
			}
			return fmt.Sprintf("%s: %s (rule %q of the draft 2020-12 meta-schema)", where, v.Message, v.Rule)
		}
	}
	return strings.ReplaceAll(err.Error(), schemaURL, "spec.schema")
}

// Violation is why data does not match a schema.
type Violation struct {
	// Path is the JSON path of the offending value within the data, "" for the data
	// itself, else like ".amount" or ".lines[2].sku".
	Path string
	// Rule is the schema keyword that failed, e.g. "required", "minimum", "type".
	Rule string
	// KeywordLocation is where the rule is in the schema, as a JSON pointer fragment,
	// e.g. "#/properties/amount/minimum".
	KeywordLocation string
	// Message says what the rule wants.
	Message string
}

// Validate checks data (JSON) against sch. It returns nil when data matches.
func Validate(sch *jsonschema.Schema, data []byte) (*Violation, error) {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("data is not valid JSON: %v", err)
	}
	err = sch.Validate(v)
	if err == nil {
		return nil, nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return nil, err
	}
	out := violation(ve)
	return &out, nil
}

// violation reduces a tree of validation errors to its first leaf: the most precise
// reason, where a producer has to look.
func violation(ve *jsonschema.ValidationError) Violation {
	for len(ve.Causes) > 0 {
		ve = ve.Causes[0]
	}
	kw := ve.ErrorKind.KeywordPath()
	rule := "schema"
	if len(kw) > 0 {
		rule = kw[len(kw)-1]
	}
	loc := ve.SchemaURL
	if i := strings.IndexByte(loc, '#'); i >= 0 {
		loc = loc[i:]
	} else {
		loc = "#"
	}
	for _, k := range kw {
		loc += "/" + k
	}
	return Violation{Path: jsonPath(ve.InstanceLocation), Rule: rule, KeywordLocation: loc, Message: ve.ErrorKind.LocalizedString(printer)}
}

// jsonPath writes instance location tokens as a path: .name for a name that is an
// identifier, [n] for an index, ["odd key"] otherwise.
func jsonPath(tokens []string) string {
	var b strings.Builder
	for _, t := range tokens {
		switch {
		case isIndex(t):
			b.WriteString("[" + t + "]")
		case isIdent(t):
			b.WriteString("." + t)
		default:
			q, _ := json.Marshal(t)
			b.WriteString("[" + string(q) + "]")
		}
	}
	return b.String()
}

func isIndex(t string) bool {
	if t == "" {
		return false
	}
	_, err := strconv.ParseUint(t, 10, 64)
	return err == nil
}

func isIdent(t string) bool {
	if t == "" {
		return false
	}
	for i, c := range t {
		if c == '_' || c == '$' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9' {
			continue
		}
		return false
	}
	return true
}
