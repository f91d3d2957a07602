// Package argocd holds hookline's Argo CD health check, one Lua script configured for each
// kind (both follow the same status contract), and evaluates it the way Argo CD does
// (gopher-lua, the script's global obj set to the object), so tests run the shipped
// script against real objects.
package argocd

import (
	_ "embed"
	"fmt"

	lua "github.com/yuin/gopher-lua"
)

//go:embed health.lua
var script string

// Script returns the health check of a hookline kind, "WebhookEndpoint" or "Subscription".
func Script(kind string) (string, error) {
	switch kind {
	case "WebhookEndpoint", "Subscription":
		return script, nil
	}
	return "", fmt.Errorf("no Argo CD health check for kind %q", kind)
}

// Health runs the kind's script on obj (an object as JSON decodes it) and returns Argo
// CD's health status (Healthy, Progressing, Degraded, Suspended) and message.
func Health(kind string, obj map[string]any) (status, message string, err error) {
	script, err := Script(kind)
	if err != nil {
		return "", "", err
	}
	L := lua.NewState(lua.Options{SkipOpenLibs: false})
	defer L.Close()
	L.SetGlobal("obj", toLua(L, obj))
	if err := L.DoString(script); err != nil {
		return "", "", fmt.Errorf("running the %s health check: %w", kind, err)
	}
	hs, ok := L.Get(-1).(*lua.LTable)
	if !ok {
		return "", "", fmt.Errorf("the %s health check returned %s, not a table", kind, L.Get(-1).Type())
	}
	return lua.LVAsString(hs.RawGetString("status")), lua.LVAsString(hs.RawGetString("message")), nil
}

// toLua converts decoded JSON into Lua values as Argo CD does: objects and arrays become
// tables (arrays 1-based), numbers become Lua numbers.
func toLua(L *lua.LState, v any) lua.LValue {
	switch v := v.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(v)
	case string:
		return lua.LString(v)
	case int64:
		return lua.LNumber(v)
	case int:
		return lua.LNumber(v)
	case float64:
		return lua.LNumber(v)
	case []any:
		t := L.NewTable()
		for _, e := range v {
			t.Append(toLua(L, e))
		}
		return t
	case map[string]any:
		t := L.NewTable()
		for k, e := range v {
			t.RawSetString(k, toLua(L, e))
		}
		return t
	}
	return lua.LString(fmt.Sprint(v))
}
