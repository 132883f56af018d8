package argocd

// A replica of how Argo CD runs resource customizations, written from its
// util/lua/lua.go and util/lua/oslib_safe.go (v3.5 and v3.6) and
// gitops-engine/pkg/health/health.go. Argo CD's own packages do not build
// from the module proxy here (github.com/argoproj/argo-cd/gitops-engine/v3
// fails for every version tried), so the parts that decide what a script
// sees and what its answer becomes are reproduced:
//
//   - lua.NewState with SkipOpenLibs unless useOpenLibs (argocd-cm scripts:
//     resource.customizations.useOpenLibs.<group_kind>, false by default;
//     built-in scripts under resource_customizations/: true);
//   - then package, base, table and Argo CD's "safe" os opened by name, the
//     safe os (time and date only) also preloaded for require("os");
//   - a one-second context;
//   - the global actionParams (a table of the action's parameters) and the
//     global obj, converted from the unstructured object by decodeValue;
//   - the script compiled with LoadString and run with PCall; a run-time
//     error loses its stack trace (that text is what the user sees);
//   - the returned table encoded to JSON as layeh.com/gopher-json does
//     (an empty table is []), then decoded into what Argo CD expects.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"
)

type argoVM struct {
	useOpenLibs bool
}

func (vm argoVM) run(obj map[string]any, script string, params map[string]string) (*lua.LState, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: !vm.useOpenLibs})
	defer l.Close() // as Argo CD does: the stack stays readable
	for _, pair := range []struct {
		n string
		f lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		{lua.OsLibName, openSafeOs},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(pair.f), NRet: 0, Protect: true}, lua.LString(pair.n)); err != nil {
			panic(err)
		}
	}
	l.PreloadModule(lua.OsLibName, safeOsLoader)

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)

	actionParams := l.CreateTable(0, len(params))
	for name, value := range params {
		actionParams.RawSetH(lua.LString(name), decodeValue(l, value))
	}
	l.SetGlobal("actionParams", actionParams)
	l.SetGlobal("obj", decodeValue(l, obj))

	fn, err := l.LoadString(script)
	if err == nil {
		l.Push(fn)
		err = l.PCall(0, lua.MultRet, nil)
	}
	var apiErr *lua.ApiError
	if errors.As(err, &apiErr) && apiErr.Type == lua.ApiErrorRun {
		apiErr.StackTrace = ""
		err = apiErr
	}
	return l, err
}

// healthStatus is gitops-engine's health.HealthStatus: whatever else a
// script returns (hs.deletionMessage, say) is dropped by json.Unmarshal.
type healthStatus struct {
	Status  string `json:"status,omitempty"`
	Message string `json:"message,omitempty"`
}

var validHealth = []string{"Unknown", "Progressing", "Suspended", "Healthy", "Degraded", "Missing"}

// executeHealthLua is VM.ExecuteHealthLua.
func (vm argoVM) executeHealthLua(obj map[string]any, script string) (*healthStatus, error) {
	l, err := vm.run(obj, script, nil)
	if err != nil {
		return nil, err
	}
	ret := l.Get(-1)
	switch ret.Type() {
	case lua.LTTable:
		data, err := encodeLuaJSON(ret)
		if err != nil {
			return nil, err
		}
		hs := &healthStatus{}
		if err := json.Unmarshal(data, hs); err != nil {
			var typeErr *json.UnmarshalTypeError
			if errors.As(err, &typeErr) {
				return &healthStatus{}, nil // an empty table: []
			}
			return nil, err
		}
		if !slices.Contains(validHealth, hs.Status) {
			return &healthStatus{Status: "Unknown", Message: "Lua returned an invalid health status"}, nil
		}
		return hs, nil
	case lua.LTNil:
		return &healthStatus{}, nil
	}
	return nil, fmt.Errorf("expect table output from Lua script, not %s", ret.Type().String())
}

// resourceHealth is gitops-engine's GetResourceHealth with a Lua override,
// as in Argo CD v3.5 and v3.6: a terminating object (without Argo CD's hook
// finalizer) is Progressing "Pending deletion" and its script never runs.
func (vm argoVM) resourceHealth(obj map[string]any, script string) (*healthStatus, error) {
	metadata, _ := obj["metadata"].(map[string]any)
	if metadata["deletionTimestamp"] != nil && !hasHookFinalizer(metadata) {
		return &healthStatus{Status: "Progressing", Message: "Pending deletion"}, nil
	}
	return vm.executeHealthLua(obj, script)
}

func hasHookFinalizer(metadata map[string]any) bool {
	finalizers, _ := metadata["finalizers"].([]any)
	return slices.Contains(finalizers, any("argocd.argoproj.io/hook-finalizer"))
}

// resourceAction is appv1.ResourceAction.
type resourceAction struct {
	Name        string                `json:"name,omitempty"`
	Params      []resourceActionParam `json:"params,omitempty"`
	Disabled    bool                  `json:"disabled,omitempty"`
	IconClass   string                `json:"iconClass,omitempty"`
	DisplayName string                `json:"displayName,omitempty"`
}

type resourceActionParam struct {
	Name    string `json:"name,omitempty"`
	Value   string `json:"value,omitempty"`
	Type    string `json:"type,omitempty"`
	Default string `json:"default,omitempty"`
}

// executeResourceActionDiscovery is VM.ExecuteResourceActionDiscovery.
func (vm argoVM) executeResourceActionDiscovery(obj map[string]any, scripts []string) ([]resourceAction, error) {
	if len(scripts) == 0 {
		return nil, errors.New("no action discovery script provided")
	}
	available := map[string]resourceAction{}
	for _, script := range scripts {
		l, err := vm.run(obj, script, nil)
		if err != nil {
			return nil, err
		}
		ret := l.Get(-1)
		if ret.Type() != lua.LTTable {
			return nil, fmt.Errorf("expect table output from Lua script, not %s", ret.Type().String())
		}
		data, err := encodeLuaJSON(ret)
		if err != nil {
			return nil, fmt.Errorf("error in converting to lua table: %w", err)
		}
		if string(data) == "[]" {
			continue // no available actions
		}
		actions := map[string]any{}
		if err := json.Unmarshal(data, &actions); err != nil {
			return nil, fmt.Errorf("error unmarshaling action table: %w", err)
		}
		for name, value := range actions {
			action := resourceAction{Name: name, Disabled: isActionDisabled(value)}
			if _, exists := available[name]; exists {
				continue
			}
			if _, empty := value.([]any); empty {
				available[name] = action
				continue
			}
			b, err := json.Marshal(value)
			if err != nil {
				return nil, fmt.Errorf("error marshaling resource action: %w", err)
			}
			if err := json.Unmarshal(b, &action); err != nil {
				return nil, fmt.Errorf("error unmarshaling resource action: %w", err)
			}
			available[name] = action
		}
	}
	out := make([]resourceAction, 0, len(available))
	for _, a := range available {
		out = append(out, a)
	}
	return out, nil
}

func isActionDisabled(v any) bool {
	m, ok := v.(map[string]any)
	if !ok {
		return false
	}
	d, ok := m["disabled"].(bool)
	return ok && d
}

// impactedResource is util/lua.ImpactedResource.
type impactedResource struct {
	UnstructuredObj map[string]any `json:"resource"`
	K8SOperation    string         `json:"operation"`
}

// executeResourceAction is VM.ExecuteResourceAction: an object returned by
// the script (an old-style action) is a patch of the source object, cleaned
// of the empty arrays that stand for empty objects.
func (vm argoVM) executeResourceAction(obj map[string]any, script string, params map[string]string) ([]impactedResource, error) {
	l, err := vm.run(obj, script, params)
	if err != nil {
		return nil, err
	}
	ret := l.Get(-1)
	if ret.Type() != lua.LTTable {
		return nil, fmt.Errorf("expect table output from Lua script, not %s", ret.Type().String())
	}
	data, err := encodeLuaJSON(ret)
	if err != nil {
		return nil, err
	}
	s := bytes.NewBuffer(data).String()
	if len(s) < 2 {
		return nil, errors.New("Lua output was not a valid json object or array") //nolint:staticcheck // Argo CD's message
	}
	var out []impactedResource
	if s[0] == '[' && s[len(s)-1] == ']' {
		if err := json.Unmarshal(data, &out); err != nil {
			return nil, err
		}
	} else {
		newObj := map[string]any{}
		if err := json.Unmarshal(data, &newObj); err != nil {
			return nil, err
		}
		out = append(out, impactedResource{UnstructuredObj: newObj, K8SOperation: "patch"})
	}
	for _, r := range out {
		if r.K8SOperation == "patch" {
			cleanReturnedObj(r.UnstructuredObj, obj)
		}
	}
	return out, nil
}

// cleanReturnedObj turns back into {} what Lua returned as [] where the
// source object had an object.
func cleanReturnedObj(newObj, obj map[string]any) {
	for key, oldValue := range obj {
		switch newValue := newObj[key].(type) {
		case map[string]any:
			if old, ok := oldValue.(map[string]any); ok {
				cleanReturnedObj(newValue, old)
			}
		case []any:
			switch old := oldValue.(type) {
			case map[string]any:
				if len(newValue) == 0 {
					newObj[key] = map[string]any{}
				}
			case []any:
				cleanReturnedArray(newValue, old)
			}
		}
	}
}

func cleanReturnedArray(newArr, arr []any) {
	for i := range newArr {
		if i >= len(arr) {
			break
		}
		switch newValue := newArr[i].(type) {
		case map[string]any:
			if old, ok := arr[i].(map[string]any); ok {
				cleanReturnedObj(newValue, old)
			}
		case []any:
			if old, ok := arr[i].([]any); ok {
				cleanReturnedArray(newValue, old)
			}
		}
	}
}

// decodeValue is Argo CD's decodeValue: the unstructured object's integers
// (int64 from the API server, float64 from YAML) become numbers, a
// json.Number a string, anything else nil.
func decodeValue(l *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case json.Number:
		return lua.LString(v)
	case int:
		return lua.LNumber(v)
	case int32:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case []any:
		arr := l.CreateTable(len(v), 0)
		for _, item := range v {
			arr.Append(decodeValue(l, item))
		}
		return arr
	case map[string]any:
		tbl := l.CreateTable(0, len(v))
		for key, item := range v {
			tbl.RawSetH(lua.LString(key), decodeValue(l, item))
		}
		return tbl
	}
	return lua.LNil
}

// encodeLuaJSON encodes a Lua value with layeh.com/gopher-json's rules: a
// table whose first key is a number must be the array 1..n, one whose
// first key is a string must have only string keys, and an empty table is
// the empty array; functions and other values cannot be encoded.
func encodeLuaJSON(v lua.LValue) ([]byte, error) {
	return json.Marshal(luaJSON{v, map[*lua.LTable]bool{}})
}

type luaJSON struct {
	v       lua.LValue
	visited map[*lua.LTable]bool
}

func (j luaJSON) MarshalJSON() ([]byte, error) {
	switch v := j.v.(type) {
	case lua.LBool:
		return json.Marshal(bool(v))
	case lua.LNumber:
		return json.Marshal(float64(v))
	case *lua.LNilType:
		return []byte("null"), nil
	case lua.LString:
		return json.Marshal(string(v))
	case *lua.LTable:
		if j.visited[v] {
			return nil, errors.New("cannot encode recursively nested tables to JSON")
		}
		j.visited[v] = true
		key, value := v.Next(lua.LNil)
		switch key.Type() {
		case lua.LTNil:
			return []byte("[]"), nil
		case lua.LTNumber:
			var arr []luaJSON
			want := lua.LNumber(1)
			for key != lua.LNil {
				if key.Type() != lua.LTNumber {
					return nil, errors.New("cannot encode mixed or invalid key types")
				}
				if key != want {
					return nil, errors.New("cannot encode sparse array")
				}
				arr = append(arr, luaJSON{value, j.visited})
				want++
				key, value = v.Next(key)
			}
			return json.Marshal(arr)
		case lua.LTString:
			m := map[string]luaJSON{}
			for key != lua.LNil {
				if key.Type() != lua.LTString {
					return nil, errors.New("cannot encode mixed or invalid key types")
				}
				m[key.String()] = luaJSON{value, j.visited}
				key, value = v.Next(key)
			}
			return json.Marshal(m)
		}
		return nil, errors.New("cannot encode mixed or invalid key types")
	}
	return nil, fmt.Errorf("cannot encode %s to JSON", j.v.Type().String())
}

// openSafeOs is Argo CD's OpenSafeOs, registration quirk included: it
// registers its functions as the module "table", which package.loaded
// already holds, so the call changes nothing and the global os stays unset
// unless useOpenLibs opened the whole os library.
func openSafeOs(l *lua.LState) int {
	l.Push(l.RegisterModule(lua.TabLibName, safeOsFuncs))
	return 1
}

// safeOsLoader is Argo CD's SafeOsLoader: require("os") gives time and date.
func safeOsLoader(l *lua.LState) int {
	l.Push(l.SetFuncs(l.NewTable(), safeOsFuncs))
	return 1
}

var safeOsFuncs = map[string]lua.LGFunction{"time": osTime, "date": osDate}

func osTime(l *lua.LState) int {
	if l.GetTop() == 0 {
		l.Push(lua.LNumber(time.Now().Unix()))
		return 1
	}
	tbl := l.CheckTable(1)
	field := func(name string, def int) int {
		if n, ok := tbl.RawGetString(name).(lua.LNumber); ok {
			return int(n)
		}
		return def
	}
	t := time.Date(field("year", -1), time.Month(field("month", -1)), field("day", -1),
		field("hour", 12), field("min", 0), field("sec", 0), 0, time.Local)
	l.Push(lua.LNumber(t.Unix()))
	return 1
}

// osDate supports os.date(), os.date(format[, time]) with the strftime
// conversions Argo CD's copy knows, and "*t".
func osDate(l *lua.LState) int {
	t := time.Now()
	format := "%c"
	if l.GetTop() >= 1 {
		format = l.CheckString(1)
		if rest, ok := strings.CutPrefix(format, "!"); ok {
			t, format = t.UTC(), rest
		}
		if l.GetTop() >= 2 {
			t = time.Unix(l.CheckInt64(2), 0)
		}
		if strings.HasPrefix(format, "*t") {
			ret := l.NewTable()
			for k, v := range map[string]int{"year": t.Year(), "month": int(t.Month()), "day": t.Day(), "hour": t.Hour(),
				"min": t.Minute(), "sec": t.Second(), "wday": int(t.Weekday()) + 1, "yday": 0} {
				ret.RawSetString(k, lua.LNumber(v))
			}
			ret.RawSetString("isdst", lua.LFalse)
			l.Push(ret)
			return 1
		}
	}
	l.Push(lua.LString(strftime(t, format)))
	return 1
}

var strftimeLayouts = map[byte]string{
	'a': "mon", 'A': "Monday", 'b': "Jan", 'B': "January", 'c': "02 Jan 06 15:04 MST", 'd': "02",
	'F': "2006-01-02", 'H': "15", 'I': "03", 'm': "01", 'M': "04", 'p': "PM", 'P': "pm", 'S': "05",
	'x': "15/04/05", 'X': "15:04:05", 'y': "06", 'Y': "2006", 'z': "-0700", 'Z': "MST",
}

func strftime(t time.Time, format string) string {
	var b strings.Builder
	for i := 0; i < len(format); i++ {
		c := format[i]
		if c != '%' || i == len(format)-1 {
			b.WriteByte(c)
			continue
		}
		i++
		switch f := format[i]; {
		case f == '%':
			b.WriteByte('%')
		case f == 'w':
			fmt.Fprint(&b, int(t.Weekday()))
		case strftimeLayouts[f] != "":
			b.WriteString(t.Format(strftimeLayouts[f]))
		default:
			b.WriteByte('%')
			b.WriteByte(f)
		}
	}
	return b.String()
}
