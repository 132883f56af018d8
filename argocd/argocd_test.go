package argocd

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"sigs.k8s.io/yaml"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
	"github.com/loquent/twilio-voice-operator/controllers"
)

const (
	group       = "twilio.loquent.io"
	numberKind  = "TwilioPhoneNumber"
	accountKind = "TwilioAccount"
	actionsDir  = "actions/" + group + "/" + numberKind
)

func healthScript(t *testing.T, kind string) string {
	return readFile(t, filepath.Join("health", group, kind, "health.lua"))
}

// Expected messages that are a condition's own message, word for word.
const (
	readyMessage  = "<Ready message>"
	syncedMessage = "<Synced message>"
)

func TestHealth(t *testing.T) {
	tests := []struct {
		fixture, status, message string
	}{
		// Reconciling.
		{"number-new.yaml", "Progressing", "Waiting for the operator to reconcile the number"},
		{"number-generation-not-observed.yaml", "Progressing", "Waiting for the operator to reconcile generation 3"},
		{"number-progressing.yaml", "Progressing", readyMessage},
		// Retried Twilio errors keep the number out of Healthy, even with Ready=True.
		{"number-twilio-api-error.yaml", "Progressing", syncedMessage},
		{"number-rate-limited.yaml", "Progressing", syncedMessage},
		{"number-takeover-paced.yaml", "Progressing", readyMessage},
		{"number-disabled-retrying.yaml", "Progressing", syncedMessage},
		{"number-configured.yaml", "Healthy", readyMessage},
		{"number-original-unknown.yaml", "Healthy", readyMessage},
		{"number-disabled.yaml", "Suspended", readyMessage},
		// Someone has to act.
		{"number-conflict.yaml", "Degraded", readyMessage},
		{"number-account-not-ready.yaml", "Degraded", readyMessage},
		{"number-not-found.yaml", "Degraded", readyMessage},
		{"number-trunk-attached.yaml", "Degraded", readyMessage},
		{"number-restore-blocked.yaml", "Degraded", readyMessage},
		{"number-twilio-rejected.yaml", "Degraded", syncedMessage},
		{"number-no-agent.yaml", "Degraded", readyMessage},
		{"number-agent-not-allowed.yaml", "Degraded", readyMessage},
		{"number-webhook-unreachable.yaml", "Degraded", readyMessage},
		{"number-contested.yaml", "Degraded", readyMessage},

		{"account-new.yaml", "Progressing", "Waiting for the operator to verify the credentials"},
		{"account-generation-not-observed.yaml", "Progressing", "Waiting for the operator to reconcile generation 2"},
		{"account-api-error.yaml", "Progressing", syncedMessage},
		{"account-verified.yaml", "Healthy", readyMessage},
		{"account-deleting-numbers-handed-back.yaml", "Healthy", readyMessage},
		{"account-deleting-numbers-still-routed.yaml", "Progressing", "2 TwilioPhoneNumber(s) still hold saved originals and are handed back first: sales-line, support-line. Delete them or set voiceRouting: Disabled (deletionPolicy: Orphan deletes one without restoring)"},
		{"account-invalid-credentials.yaml", "Degraded", readyMessage},
		{"account-twilio-rejected.yaml", "Degraded", readyMessage},
		{"account-secret-not-found.yaml", "Degraded", readyMessage},
		{"account-secret-invalid.yaml", "Degraded", readyMessage},
		{"account-conflict.yaml", "Degraded", readyMessage},
		{"account-api-url-not-allowed.yaml", "Degraded", readyMessage},
	}
	scripts := map[string]string{numberKind: healthScript(t, numberKind), accountKind: healthScript(t, accountKind)}
	for _, tt := range tests {
		t.Run(strings.TrimSuffix(tt.fixture, ".yaml"), func(t *testing.T) {
			g := NewWithT(t)
			obj := loadObject(t, filepath.Join("testdata", tt.fixture))
			want := health{Status: tt.status, Message: tt.message}
			switch tt.message {
			case readyMessage:
				want.Message = conditionMessage(t, obj, twiliov1.ConditionReady)
			case syncedMessage:
				want.Message = conditionMessage(t, obj, twiliov1.ConditionSynced)
			}
			g.Expect(runHealth(t, scripts[obj["kind"].(string)], obj)).To(Equal(want))
		})
	}
}

func conditionMessage(t *testing.T, obj map[string]any, typ string) string {
	t.Helper()
	status, _ := obj["status"].(map[string]any)
	conds, _ := status["conditions"].([]any)
	for _, c := range conds {
		if c := c.(map[string]any); c["type"] == typ {
			return c["message"].(string)
		}
	}
	t.Fatalf("fixture has no %s condition", typ)
	return ""
}

// TestFixturesAreRealObjects decodes every fixture strictly into the API
// types, so a fixture cannot carry a field (or a shape) the operator never
// writes, and checks that every condition reason the API defines has a
// fixture: a new reason fails here until someone decides its health.
func TestFixturesAreRealObjects(t *testing.T) {
	g := NewWithT(t)
	files, err := filepath.Glob("testdata/*.yaml")
	g.Expect(err).NotTo(HaveOccurred())
	seen := map[string]bool{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		g.Expect(err).NotTo(HaveOccurred())
		var conds []struct{ Reason string }
		switch kind := loadObject(t, f)["kind"]; kind {
		case numberKind:
			var n twiliov1.TwilioPhoneNumber
			g.Expect(yaml.UnmarshalStrict(data, &n)).To(Succeed(), f)
			for _, c := range n.Status.Conditions {
				conds = append(conds, struct{ Reason string }{c.Reason})
			}
		case accountKind:
			var a twiliov1.TwilioAccount
			g.Expect(yaml.UnmarshalStrict(data, &a)).To(Succeed(), f)
			for _, c := range a.Status.Conditions {
				conds = append(conds, struct{ Reason string }{c.Reason})
			}
		default:
			t.Fatalf("%s: unexpected kind %v", f, kind)
		}
		for _, c := range conds {
			seen[c.Reason] = true
		}
	}
	reasons := apiReasons(t)
	g.Expect(reasons).NotTo(BeEmpty())
	for _, r := range reasons {
		g.Expect(seen).To(HaveKey(r), "no fixture in testdata/ has reason %s (api/v1alpha1/conditions.go)", r)
	}
	for r := range seen {
		g.Expect(reasons).To(ContainElement(r), "fixtures use reason %s, which api/v1alpha1 does not define", r)
	}
}

// apiReasons returns the values of the Reason* constants in api/v1alpha1.
func apiReasons(t *testing.T) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "../api/v1alpha1/conditions.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var reasons []string
	ast.Inspect(f, func(n ast.Node) bool {
		spec, ok := n.(*ast.ValueSpec)
		if !ok {
			return true
		}
		for i, name := range spec.Names {
			if lit, ok := spec.Values[i].(*ast.BasicLit); ok && strings.HasPrefix(name.Name, "Reason") {
				v, err := strconv.Unquote(lit.Value)
				if err != nil {
					t.Fatal(err)
				}
				reasons = append(reasons, v)
			}
		}
		return true
	})
	return reasons
}

func TestActionDiscovery(t *testing.T) {
	script := readFile(t, filepath.Join(actionsDir, "discovery.lua"))
	withoutRouting := loadObject(t, "testdata/number-configured.yaml")
	delete(withoutRouting["spec"].(map[string]any), "voiceRouting") // the CRD defaults it to Enabled
	tests := []struct {
		name                               string
		obj                                map[string]any
		restoreDisabled, configureDisabled bool
	}{
		{"enabled", loadObject(t, "testdata/number-configured.yaml"), false, true},
		{"disabled", loadObject(t, "testdata/number-disabled.yaml"), true, false},
		{"defaulted", withoutRouting, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			actions, ok := runLua(t, script, tt.obj).(map[string]any)
			g.Expect(ok).To(BeTrue(), "discovery.lua must return a table of actions")
			g.Expect(actions).To(HaveLen(2))
			g.Expect(actions).To(HaveKeyWithValue("restore", HaveKeyWithValue("disabled", tt.restoreDisabled)))
			g.Expect(actions).To(HaveKeyWithValue("configure", HaveKeyWithValue("disabled", tt.configureDisabled)))
			for _, a := range actions {
				g.Expect(a).To(HaveKeyWithValue("displayName", Not(BeEmpty())))
				g.Expect(a).To(HaveKeyWithValue("iconClass", HavePrefix("fa ")))
			}
		})
	}
}

// TestActions checks that each action changes spec.voiceRouting and nothing
// else: Argo CD patches the live object with the difference.
func TestActions(t *testing.T) {
	tests := []struct {
		action, fixture, want string
	}{
		{"restore", "number-configured.yaml", string(twiliov1.VoiceRoutingDisabled)},
		{"configure", "number-disabled.yaml", string(twiliov1.VoiceRoutingEnabled)},
		// Idempotent: Argo CD may run an action twice.
		{"restore", "number-disabled.yaml", string(twiliov1.VoiceRoutingDisabled)},
	}
	for _, tt := range tests {
		t.Run(tt.action+"/"+tt.fixture, func(t *testing.T) {
			g := NewWithT(t)
			obj := loadObject(t, filepath.Join("testdata", tt.fixture))
			want := normalise(t, obj)
			want.(map[string]any)["spec"].(map[string]any)["voiceRouting"] = tt.want
			got := runLua(t, readFile(t, filepath.Join(actionsDir, tt.action, "action.lua")), obj)
			g.Expect(normalise(t, got)).To(Equal(want))
		})
	}
}

// normalise gives v the shape of a JSON round trip (numbers as float64).
func normalise(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// snippet is argocd-cm-snippet.yaml: a ConfigMap.
type snippet struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   map[string]any    `json:"metadata"`
	Data       map[string]string `json:"data"`
}

type actionsConfig struct {
	Discovery   string `json:"discovery.lua"`
	Definitions []struct {
		Name   string `json:"name"`
		Action string `json:"action.lua"`
	} `json:"definitions"`
}

type ignoreDifferences struct {
	JSONPointers      []string `json:"jsonPointers"`
	JQPathExpressions []string `json:"jqPathExpressions"`
}

func loadSnippet(t *testing.T) snippet {
	t.Helper()
	var s snippet
	if err := yaml.UnmarshalStrict([]byte(readFile(t, "argocd-cm-snippet.yaml")), &s); err != nil {
		t.Fatalf("argocd-cm-snippet.yaml: %v", err)
	}
	if s.Kind != "ConfigMap" || s.Metadata["name"] != "argocd-cm" {
		t.Fatalf("argocd-cm-snippet.yaml is a %s named %v, want the ConfigMap argocd-cm", s.Kind, s.Metadata["name"])
	}
	return s
}

// TestSnippetEmbedsTheFiles keeps the argocd-cm snippet and the Lua files
// from drifting apart: every Lua file is in the snippet, word for word, and
// the snippet has no Lua of its own.
func TestSnippetEmbedsTheFiles(t *testing.T) {
	g := NewWithT(t)
	data := loadSnippet(t).Data
	embedded := map[string]string{} // file path -> the snippet's copy
	for _, kind := range []string{numberKind, accountKind} {
		key := "resource.customizations.health." + group + "_" + kind
		g.Expect(data).To(HaveKey(key))
		embedded[filepath.Join("health", group, kind, "health.lua")] = data[key]
	}
	key := "resource.customizations.actions." + group + "_" + numberKind
	g.Expect(data).To(HaveKey(key))
	var actions actionsConfig
	g.Expect(yaml.UnmarshalStrict([]byte(data[key]), &actions)).To(Succeed())
	embedded[filepath.Join(actionsDir, "discovery.lua")] = actions.Discovery
	for _, d := range actions.Definitions {
		embedded[filepath.Join(actionsDir, d.Name, "action.lua")] = d.Action
	}

	var files []string
	for _, root := range []string{"health", "actions"} {
		g.Expect(filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err == nil && strings.HasSuffix(path, ".lua") {
				files = append(files, path)
			}
			return err
		})).To(Succeed())
	}
	slices.Sort(files)
	g.Expect(files).To(ConsistOf(keys(embedded)), "Lua files and the snippet's Lua must match one to one")
	for _, f := range files {
		g.Expect(embedded[f]).To(Equal(readFile(t, f)), "the snippet's copy of %s differs from the file", f)
	}
}

// TestSnippetIgnoresControllerFields: what the operator writes (status, the
// saved-routing annotation, the finalizer) must never make an Application
// OutOfSync.
func TestSnippetIgnoresControllerFields(t *testing.T) {
	g := NewWithT(t)
	data := loadSnippet(t).Data
	parse := func(kind string) ignoreDifferences {
		key := "resource.customizations.ignoreDifferences." + group + "_" + kind
		g.Expect(data).To(HaveKey(key))
		var d ignoreDifferences
		g.Expect(yaml.UnmarshalStrict([]byte(data[key]), &d)).To(Succeed())
		return d
	}
	number := parse(numberKind)
	// JSON pointers escape "/" in a key as "~1" (RFC 6901).
	annotation := "/metadata/annotations/" + strings.ReplaceAll(twiliov1.AnnotationSavedRouting, "/", "~1")
	g.Expect(number.JSONPointers).To(ContainElements("/status", annotation))
	g.Expect(number.JQPathExpressions).To(ContainElement(
		`.metadata.finalizers[]? | select(. == "` + controllers.Finalizer + `")`))
	g.Expect(parse(accountKind).JSONPointers).To(ContainElement("/status"))
}

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
