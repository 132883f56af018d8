package argocd

// The tests Argo CD runs on every folder of its resource_customizations/
// (util/lua/health_test.go TestLuaHealthScript and
// util/lua/custom_actions_test.go TestLuaResourceActionsScript), run here on
// ours with the replica of its Lua VM (argovm_test.go), so that the folder
// can be contributed upstream as it is.

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

const (
	customizations = "resource_customizations"
	group          = "twilio.loquent.io"
	numberKind     = "TwilioPhoneNumber"
	accountKind    = "TwilioAccount"
	numberDir      = customizations + "/" + group + "/" + numberKind
	accountDir     = customizations + "/" + group + "/" + accountKind
)

// healthTestFile is health_test.yaml.
type healthTestFile struct {
	Tests []struct {
		HealthStatus healthStatus `json:"healthStatus"`
		InputPath    string       `json:"inputPath"`
	} `json:"tests"`
}

// actionTestFile is actions/action_test.yaml.
type actionTestFile struct {
	DiscoveryTests []struct {
		InputPath string           `json:"inputPath"`
		Result    []resourceAction `json:"result"`
	} `json:"discoveryTests"`
	ActionTests []struct {
		Action               string            `json:"action"`
		InputPath            string            `json:"inputPath"`
		ExpectedOutputPath   string            `json:"expectedOutputPath"`
		ExpectedErrorMessage string            `json:"expectedErrorMessage"`
		Parameters           map[string]string `json:"parameters"`
	} `json:"actionTests"`
}

func loadHealthTests(t *testing.T, dir string) healthTestFile {
	t.Helper()
	var f healthTestFile
	if err := yaml.UnmarshalStrict([]byte(readFile(t, filepath.Join(dir, "health_test.yaml"))), &f); err != nil {
		t.Fatalf("%s/health_test.yaml: %v", dir, err)
	}
	return f
}

func loadActionTests(t *testing.T, dir string) actionTestFile {
	t.Helper()
	var f actionTestFile
	if err := yaml.UnmarshalStrict([]byte(readFile(t, filepath.Join(dir, "action_test.yaml"))), &f); err != nil {
		t.Fatalf("%s/action_test.yaml: %v", dir, err)
	}
	return f
}

// kindDirs lists resource_customizations/<group>/<kind> folders.
func kindDirs(t *testing.T) []string {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(customizations, "*", "*"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no folders in %s: %v", customizations, err)
	}
	return dirs
}

// objectForms gives a fixture the two shapes Argo CD hands to a script:
// from YAML (numbers as float64, as its tests read testdata) and from the
// API server (integers as int64, as its controller's cache holds them).
func objectForms(t *testing.T, path string) map[string]map[string]any {
	return map[string]map[string]any{"yaml": loadObject(t, path), "live": loadUnstructured(t, path).Object}
}

// TestLuaHealthScript runs every health_test.yaml as Argo CD's test does
// (useOpenLibs on, as for built-in scripts), and also as argocd-cm runs a
// health check by default (useOpenLibs off).
func TestLuaHealthScript(t *testing.T) {
	for _, dir := range kindDirs(t) {
		script := readFile(t, filepath.Join(dir, "health.lua"))
		for _, tc := range loadHealthTests(t, dir).Tests {
			for _, vm := range []argoVM{{useOpenLibs: true}, {useOpenLibs: false}} {
				for form, obj := range objectForms(t, filepath.Join(dir, tc.InputPath)) {
					name := filepath.Join(strings.TrimPrefix(dir, customizations+"/"), tc.InputPath)
					t.Run(name+"/openLibs="+boolName(vm.useOpenLibs)+"/"+form, func(t *testing.T) {
						g := NewWithT(t)
						checkKindMatchesDir(g, dir, obj)
						got, err := vm.executeHealthLua(obj, script)
						g.Expect(err).NotTo(HaveOccurred())
						g.Expect(*got).To(Equal(tc.HealthStatus))
					})
				}
			}
		}
	}
}

// TestLuaResourceActionsScript runs every action_test.yaml as Argo CD's
// test does: discovery with useOpenLibs on (and here off too, as the API
// server runs argocd-cm actions), actions with it off.
func TestLuaResourceActionsScript(t *testing.T) {
	found := 0
	for _, kindDir := range kindDirs(t) {
		dir := filepath.Join(kindDir, "actions")
		if _, err := os.Stat(filepath.Join(dir, "action_test.yaml")); err != nil {
			continue
		}
		found++
		tests := loadActionTests(t, dir)
		discovery := readFile(t, filepath.Join(dir, "discovery.lua"))
		for _, tc := range tests.DiscoveryTests {
			for _, vm := range []argoVM{{useOpenLibs: true}, {useOpenLibs: false}} {
				t.Run("discovery/"+tc.InputPath+"/openLibs="+boolName(vm.useOpenLibs), func(t *testing.T) {
					g := NewWithT(t)
					obj := loadObject(t, filepath.Join(dir, tc.InputPath))
					checkKindMatchesDir(g, kindDir, obj)
					got, err := vm.executeResourceActionDiscovery(obj, []string{discovery})
					g.Expect(err).NotTo(HaveOccurred())
					// Argo CD's test: every action found is expected. Here also: every expected action is found.
					g.Expect(got).To(ConsistOf(tc.Result))
				})
			}
		}
		for _, tc := range tests.ActionTests {
			t.Run("actions/"+tc.Action+"/"+tc.InputPath, func(t *testing.T) {
				g := NewWithT(t)
				obj := loadObject(t, filepath.Join(dir, tc.InputPath))
				checkKindMatchesDir(g, kindDir, obj)
				script := readFile(t, filepath.Join(dir, tc.Action, "action.lua"))
				impacted, err := argoVM{}.executeResourceAction(obj, script, tc.Parameters)
				if tc.ExpectedErrorMessage != "" {
					g.Expect(err).To(MatchError(tc.ExpectedErrorMessage))
					return
				}
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(impacted).To(HaveLen(1))
				g.Expect(impacted[0].K8SOperation).To(Equal("patch"))
				want := loadObject(t, filepath.Join(dir, tc.ExpectedOutputPath))
				g.Expect(jsonRoundTrip(t, impacted[0].UnstructuredObj)).To(Equal(jsonRoundTrip(t, want)))
			})
		}
	}
	if found == 0 {
		t.Fatal("no action_test.yaml found")
	}
}

// TestEveryFixtureIsTested: every testdata file is the input (or expected
// output) of some test, every test names an existing file, and a kind's
// folder has what upstream requires.
func TestEveryFixtureIsTested(t *testing.T) {
	g := NewWithT(t)
	for _, dir := range kindDirs(t) {
		used := map[string]bool{}
		for _, tc := range loadHealthTests(t, dir).Tests {
			used[filepath.Join(dir, tc.InputPath)] = true
		}
		if _, err := os.Stat(filepath.Join(dir, "actions")); err == nil {
			g.Expect(filepath.Join(dir, "actions", "discovery.lua")).To(BeAnExistingFile())
			tests := loadActionTests(t, filepath.Join(dir, "actions"))
			for _, tc := range tests.DiscoveryTests {
				used[filepath.Join(dir, "actions", tc.InputPath)] = true
			}
			for _, tc := range tests.ActionTests {
				used[filepath.Join(dir, "actions", tc.InputPath)] = true
				if tc.ExpectedOutputPath != "" {
					used[filepath.Join(dir, "actions", tc.ExpectedOutputPath)] = true
				}
				g.Expect(filepath.Join(dir, "actions", tc.Action, "action.lua")).To(BeAnExistingFile())
			}
		}
		for f := range used {
			g.Expect(f).To(BeAnExistingFile())
		}
		files, _ := filepath.Glob(filepath.Join(dir, "testdata", "*.yaml"))
		more, _ := filepath.Glob(filepath.Join(dir, "actions", "testdata", "*.yaml"))
		for _, f := range append(files, more...) {
			g.Expect(used).To(HaveKey(f), "%s is no test's input", f)
		}
	}
}

func checkKindMatchesDir(g Gomega, dir string, obj map[string]any) {
	apiVersion, _ := obj["apiVersion"].(string)
	g.Expect(filepath.Join(customizations, strings.Split(apiVersion, "/")[0], obj["kind"].(string))).To(Equal(dir),
		"Argo CD finds a built-in script by the object's group and kind")
}

func boolName(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// jsonRoundTrip gives v the shape of a JSON round trip (numbers as float64).
func jsonRoundTrip(t *testing.T, v any) any {
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

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// loadObject reads a manifest as Argo CD's tests do (getObj: YAML into a
// map, numbers as float64).
func loadObject(t *testing.T, path string) map[string]any {
	t.Helper()
	obj := map[string]any{}
	if err := yaml.Unmarshal([]byte(readFile(t, path)), &obj); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return obj
}

// loadUnstructured reads a manifest as the API server's answer decodes
// (integers as int64).
func loadUnstructured(t *testing.T, path string) *unstructured.Unstructured {
	t.Helper()
	j, err := yaml.YAMLToJSON([]byte(readFile(t, path)))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(j); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return u
}
