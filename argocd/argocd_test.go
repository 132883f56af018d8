package argocd

import (
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
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
	"github.com/loquent/twilio-voice-operator/controllers"
)

// fixtures lists every testdata file of every kind.
func fixtures(t *testing.T) []string {
	t.Helper()
	var files []string
	for _, dir := range kindDirs(t) {
		f, _ := filepath.Glob(filepath.Join(dir, "testdata", "*.yaml"))
		a, _ := filepath.Glob(filepath.Join(dir, "actions", "testdata", "*.yaml"))
		files = append(append(files, f...), a...)
	}
	if len(files) == 0 {
		t.Fatal("no fixtures")
	}
	return files
}

// TestFixturesAreRealObjects decodes every fixture strictly into the API
// types, so a fixture cannot carry a field (or a shape) the operator never
// writes, and checks that every condition reason the API defines has a
// fixture: a new reason fails here until someone decides its health.
func TestFixturesAreRealObjects(t *testing.T) {
	g := NewWithT(t)
	seen := map[string]bool{}
	for _, f := range fixtures(t) {
		data, err := os.ReadFile(f)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(string(data)).To(HavePrefix(recordedHeader), "%s is not recorded from a real reconcile", f)
		var reasons []string
		switch kind := loadObject(t, f)["kind"]; kind {
		case numberKind:
			var n twiliov1.TwilioPhoneNumber
			g.Expect(yaml.UnmarshalStrict(data, &n)).To(Succeed(), f)
			for _, c := range n.Status.Conditions {
				reasons = append(reasons, c.Reason)
			}
		case accountKind:
			var a twiliov1.TwilioAccount
			g.Expect(yaml.UnmarshalStrict(data, &a)).To(Succeed(), f)
			for _, c := range a.Status.Conditions {
				reasons = append(reasons, c.Reason)
			}
		default:
			t.Fatalf("%s: unexpected kind %v", f, kind)
		}
		for _, r := range reasons {
			seen[r] = true
		}
	}
	reasons := apiReasons(t)
	g.Expect(reasons).NotTo(BeEmpty())
	for _, r := range reasons {
		g.Expect(seen).To(HaveKey(r), "no fixture has reason %s (api/v1alpha1/conditions.go)", r)
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

// condition returns a fixture's condition of this type, and whether it
// describes the object's current generation.
func condition(u *unstructured.Unstructured, typ string) (c map[string]any, current bool) {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, item := range conds {
		if m := item.(map[string]any); m["type"] == typ {
			og, _ := m["observedGeneration"].(int64)
			return m, og >= u.GetGeneration()
		}
	}
	return nil, false
}

// TestHealthRules states the rules of the issue in Go, independently of
// the Lua, over every fixture the health checks are tested on:
//   - Degraded exactly when Stalled=True for the current generation (a
//     human must act); for objects without kstatus conditions, exactly when
//     the Ready or Synced reason is one that Stalled would carry;
//   - never Suspended: a sync with waves or hooks would wait forever;
//   - Progressing while not reconciled, the generation not observed, or
//     Reconciling=True;
//   - a number handed back (Ready=True RoutingDisabled) is Healthy and says so.
func TestHealthRules(t *testing.T) {
	legacyStalled := map[string]bool{
		twiliov1.ReasonConflict: true, twiliov1.ReasonNumberNotFound: true, twiliov1.ReasonTrunkAttached: true,
		twiliov1.ReasonNoAgent: true, twiliov1.ReasonAgentNotAllowed: true, twiliov1.ReasonWebhookUnreachable: true,
		twiliov1.ReasonContested: true, twiliov1.ReasonTwilioRejected: true, twiliov1.ReasonInvalidCredentials: true,
		twiliov1.ReasonSecretNotFound: true, twiliov1.ReasonSecretInvalid: true, twiliov1.ReasonAPIURLNotAllowed: true,
	}
	for _, dir := range kindDirs(t) {
		script := readFile(t, filepath.Join(dir, "health.lua"))
		for _, tc := range loadHealthTests(t, dir).Tests {
			file := filepath.Join(dir, tc.InputPath)
			t.Run(file, func(t *testing.T) {
				g := NewWithT(t)
				u := loadUnstructured(t, file)
				got, err := argoVM{}.executeHealthLua(u.Object, script)
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(got.Status).NotTo(Equal("Suspended"))
				g.Expect(got.Message).NotTo(BeEmpty())

				observed, found, _ := unstructured.NestedInt64(u.Object, "status", "observedGeneration")
				stalled, stalledCurrent := condition(u, twiliov1.ConditionStalled)
				reconciling, reconcilingCurrent := condition(u, twiliov1.ConditionReconciling)
				ready, readyCurrent := condition(u, twiliov1.ConditionReady)
				synced, syncedCurrent := condition(u, twiliov1.ConditionSynced)
				deleting := u.GetDeletionTimestamp() != nil

				var wantDegraded bool
				switch {
				case stalled != nil:
					wantDegraded = stalledCurrent && stalled["status"] == "True"
				case !deleting && (!found || observed < u.GetGeneration()):
					wantDegraded = false
				default: // written before Stalled existed
					wantDegraded = !deleting && (readyCurrent && ready["status"] == "False" && legacyStalled[ready["reason"].(string)] ||
						syncedCurrent && synced["status"] == "False" && synced["reason"] == twiliov1.ReasonTwilioRejected)
				}
				g.Expect(got.Status == "Degraded").To(Equal(wantDegraded), "Degraded only (and always) when a human must act: %+v", got)

				if !deleting && (!found || observed == 0 || observed < u.GetGeneration()) {
					g.Expect(got.Status).To(Equal("Progressing"), "not reconciled yet")
				}
				if !wantDegraded && reconcilingCurrent && reconciling["status"] == "True" {
					g.Expect(got.Status).To(Equal("Progressing"), "Reconciling=True")
				}
				if !deleting && stalled != nil && !wantDegraded && reconcilingCurrent && reconciling["status"] == "False" && observed == u.GetGeneration() {
					g.Expect(got.Status).To(Equal("Healthy"), "settled")
				}
				if !deleting && readyCurrent && ready["status"] == "True" && ready["reason"] == twiliov1.ReasonRoutingDisabled && !wantDegraded &&
					(reconciling == nil || reconciling["status"] == "False") {
					g.Expect(got.Status).To(Equal("Healthy"), "handed back")
					g.Expect(got.Message).To(ContainSubstring("Handed back"))
				}
			})
		}
	}
}

// TestDeletingObjectsInArgoCD documents what each side shows for an object
// being deleted. Argo CD v3.5 and v3.6 answer Progressing "Pending
// deletion" without running the script (gitops-engine health.go,
// GetResourceHealth); the script's own answer, which names what blocks the
// deletion (RestoreBlocked, numbers still routed), is what Argo CD shows
// once it runs health checks for terminating objects (argoproj/argo-cd#27595).
func TestDeletingObjectsInArgoCD(t *testing.T) {
	deleting := 0
	for _, dir := range kindDirs(t) {
		script := readFile(t, filepath.Join(dir, "health.lua"))
		for _, tc := range loadHealthTests(t, dir).Tests {
			u := loadUnstructured(t, filepath.Join(dir, tc.InputPath))
			if u.GetDeletionTimestamp() == nil {
				continue
			}
			deleting++
			t.Run(tc.InputPath, func(t *testing.T) {
				g := NewWithT(t)
				inArgoCD, err := argoVM{}.resourceHealth(u.Object, script)
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(*inArgoCD).To(Equal(healthStatus{Status: "Progressing", Message: "Pending deletion"}))
				own, err := argoVM{}.executeHealthLua(u.Object, script)
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(own.Message).NotTo(Equal("Pending deletion"), "the script says what the deletion waits for")
				if ready, current := condition(u, twiliov1.ConditionReady); current && ready["reason"] == twiliov1.ReasonRestoreBlocked {
					g.Expect(own.Message).To(Equal(ready["message"]), "RestoreBlocked is shown as the operator wrote it")
				}
			})
		}
	}
	if deleting == 0 {
		t.Fatal("no fixture of a deleting object")
	}
}

// TestArgoVMReplica pins the behaviours of Argo CD's VM that the scripts
// rely on or must not rely on.
func TestArgoVMReplica(t *testing.T) {
	obj := map[string]any{"metadata": map[string]any{"name": "x", "generation": int64(3)}}
	run := func(vm argoVM, script string) (*healthStatus, error) { return vm.executeHealthLua(obj, script) }
	g := NewWithT(t)

	// argocd-cm without useOpenLibs: no string, math or os globals; table and require("os") are there.
	hs, err := run(argoVM{}, `return {status = "Healthy", message = type(string) .. " " .. type(os) .. " " .. type(math) .. " " ..
		type(table.concat) .. " " .. type(require("os").time()) .. " " .. type(actionParams)}`)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(hs.Message).To(Equal("nil nil nil function number table"))
	hs, err = run(argoVM{useOpenLibs: true}, `return {status = "Healthy", message = type(string) .. " " .. type(os)}`)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(hs.Message).To(Equal("table table"))

	// Numbers arrive as Lua numbers; unknown fields of the answer are dropped.
	hs, err = run(argoVM{}, `return {status = "Progressing", message = "gen " .. obj.metadata.generation, deletionMessage = "ignored"}`)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(*hs).To(Equal(healthStatus{Status: "Progressing", Message: "gen 3"}))

	// An empty table or nil is no health; an unknown status is Unknown.
	for _, script := range []string{"return {}", "return nil"} {
		hs, err = run(argoVM{}, script)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(*hs).To(Equal(healthStatus{}))
	}
	hs, err = run(argoVM{}, `return {status = "Paused"}`)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(*hs).To(Equal(healthStatus{Status: "Unknown", Message: "Lua returned an invalid health status"}))

	// A run-time error reaches the user without a stack trace.
	_, err = run(argoVM{}, `error("no such thing", 0)`)
	g.Expect(err).To(MatchError("no such thing"))
	_, err = run(argoVM{}, `local s = string.format("%d", 1)`)
	g.Expect(err).To(HaveOccurred(), "string is not opened for argocd-cm scripts")

	// A script that never ends is stopped after a second.
	_, err = run(argoVM{}, `while true do end`)
	g.Expect(err).To(HaveOccurred())
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
// from drifting apart: every Lua file under resource_customizations/ is in
// the snippet, word for word, under the key argocd-cm gives its group and
// kind, and the snippet has no Lua of its own.
func TestSnippetEmbedsTheFiles(t *testing.T) {
	g := NewWithT(t)
	data := loadSnippet(t).Data
	embedded := map[string]string{} // file path -> the snippet's copy
	for _, dir := range kindDirs(t) {
		key := filepath.Base(filepath.Dir(dir)) + "_" + filepath.Base(dir)
		g.Expect(data).To(HaveKey("resource.customizations.health." + key))
		embedded[filepath.Join(dir, "health.lua")] = data["resource.customizations.health."+key]
		if _, err := os.Stat(filepath.Join(dir, "actions")); err != nil {
			g.Expect(data).NotTo(HaveKey("resource.customizations.actions." + key))
			continue
		}
		g.Expect(data).To(HaveKey("resource.customizations.actions." + key))
		var actions actionsConfig
		g.Expect(yaml.UnmarshalStrict([]byte(data["resource.customizations.actions."+key]), &actions)).To(Succeed())
		embedded[filepath.Join(dir, "actions", "discovery.lua")] = actions.Discovery
		for _, d := range actions.Definitions {
			embedded[filepath.Join(dir, "actions", d.Name, "action.lua")] = d.Action
		}
	}
	var files []string
	g.Expect(filepath.WalkDir(customizations, func(path string, _ fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(path, ".lua") {
			files = append(files, path)
		}
		return err
	})).To(Succeed())
	keys := make([]string, 0, len(embedded))
	for k := range embedded {
		keys = append(keys, k)
	}
	g.Expect(files).To(ConsistOf(keys), "Lua files and the snippet's Lua must match one to one")
	for _, f := range files {
		g.Expect(embedded[f]).To(Equal(readFile(t, f)), "the snippet's copy of %s differs from the file", f)
	}
	for key := range data {
		g.Expect(slices.ContainsFunc([]string{"resource.customizations.health.", "resource.customizations.actions.",
			"resource.customizations.ignoreDifferences."}, func(p string) bool { return strings.HasPrefix(key, p) })).To(BeTrue(), key)
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
	account := parse(accountKind)
	g.Expect(account.JSONPointers).To(ContainElement("/status"))
	g.Expect(account.JQPathExpressions).To(ContainElement(
		`.metadata.finalizers[]? | select(. == "` + twiliov1.AccountFinalizer + `")`))
}
