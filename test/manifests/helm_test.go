package manifests

import (
	"os"
	"path/filepath"
	"testing"

	. "github.com/onsi/gomega"
	"sigs.k8s.io/yaml"
)

func TestHelmLint(t *testing.T) {
	for name, values := range map[string][]string{
		"defaults":    {"--set", "publicURL=" + publicURL},
		"all options": {"--values", ciValues},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := runTool(helm, append([]string{"lint", "--strict", chartDir}, values...)...)
			NewWithT(t).Expect(err).NotTo(HaveOccurred())
		})
	}
}

// TestHelmTemplate checks that the optional parts appear exactly when asked for.
func TestHelmTemplate(t *testing.T) {
	optional := []string{"Ingress", "HorizontalPodAutoscaler", "ServiceMonitor"}
	for _, r := range renders(t)[1:] {
		t.Run(r.name, func(t *testing.T) {
			g := NewWithT(t)
			kinds := map[string]int{}
			for _, o := range r.objs {
				kinds[o.GetKind()]++
				g.Expect(o.GetName()).NotTo(BeEmpty())
			}
			g.Expect(kinds).To(HaveKeyWithValue("Deployment", 2))
			for _, k := range []string{"Service", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "PodDisruptionBudget", "NetworkPolicy"} {
				g.Expect(kinds).To(HaveKey(k))
			}
			for _, k := range optional {
				if r.name == "chart (defaults)" {
					g.Expect(kinds).NotTo(HaveKey(k))
				} else {
					g.Expect(kinds).To(HaveKey(k))
				}
			}
		})
	}
}

// TestHelmRefusesBadValues: the schema stops a bad install before anything
// is rendered, and the message names the value to fix.
func TestHelmRefusesBadValues(t *testing.T) {
	tests := []struct {
		name   string
		values string
		want   []string
	}{
		{"publicURL missing", `manager: {replicas: 1}`, []string{"missing property 'publicURL'"}},
		{"publicURL http", `publicURL: http://voice.example.com`, []string{"/publicURL", "http://voice.example.com"}},
		{"publicURL with a path", `publicURL: https://voice.example.com/twilio`, []string{"/publicURL"}},
		{"no replicas", "publicURL: " + publicURL + "\nwebhookServer: {replicas: 0}\nmanager: {replicas: 0}",
			[]string{"/webhookServer/replicas", "/manager/replicas", "minimum"}},
		{"log level not in the enum", "publicURL: " + publicURL + "\nmanager: {logLevel: verbose}",
			[]string{"/manager/logLevel", "'debug', 'info', 'error'"}},
		{"misspelt option", "publicURL: " + publicURL + "\nwebhookServer: {replica: 3}",
			[]string{"/webhookServer", "'replica' not allowed"}},
		{"bad duration", "publicURL: " + publicURL + "\nmanager: {pollInterval: 5 minutes}",
			[]string{"/manager/pollInterval"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			file := filepath.Join(t.TempDir(), "values.yaml")
			g.Expect(os.WriteFile(file, []byte(tt.values), 0o600)).To(Succeed())
			_, err := runTool(helm, "template", "tvo", chartDir, "--values", file)
			g.Expect(err).To(HaveOccurred())
			g.Expect(err.Error()).To(ContainSubstring("values don't meet the specifications of the schema"))
			for _, w := range tt.want {
				g.Expect(err.Error()).To(ContainSubstring(w))
			}
		})
	}
}

// TestChartCopiesGeneratedFiles: the chart ships the generated CRDs and
// manager ClusterRole byte for byte (`make manifests` copies them; `make
// verify` fails when a copy is stale).
func TestChartCopiesGeneratedFiles(t *testing.T) {
	g := NewWithT(t)
	sources, err := filepath.Glob(filepath.Join(root, "config", "crd", "bases", "*.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(sources).NotTo(BeEmpty())
	copies, err := filepath.Glob(filepath.Join(root, chartDir, "crds", "*"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(baseNames(copies)).To(Equal(baseNames(sources)), "the chart's crds/ must hold exactly config/crd/bases (run `make manifests`)")

	pairs := map[string]string{filepath.Join(root, "config", "rbac", "role.yaml"): filepath.Join(root, chartDir, "files", "manager-role.yaml")}
	for _, src := range sources {
		pairs[src] = filepath.Join(root, chartDir, "crds", filepath.Base(src))
	}
	for src, dst := range pairs {
		want, err := os.ReadFile(src)
		g.Expect(err).NotTo(HaveOccurred())
		got, err := os.ReadFile(dst)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(string(got)).To(Equal(string(want)), "%s differs from %s (run `make manifests`)", dst, src)
	}
}

// TestImagesFollowAppVersion: the kustomize images and the chart's images move together.
func TestImagesFollowAppVersion(t *testing.T) {
	g := NewWithT(t)
	data, err := os.ReadFile(filepath.Join(root, chartDir, "Chart.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	var chart struct {
		APIVersion string `json:"apiVersion"`
		AppVersion string `json:"appVersion"`
	}
	g.Expect(yaml.Unmarshal(data, &chart)).To(Succeed())
	g.Expect(chart.APIVersion).To(Equal("v2"))
	g.Expect(chart.AppVersion).NotTo(BeEmpty())
	want := map[string]string{
		"manager":        "ghcr.io/loquent/twilio-voice-operator-manager:" + chart.AppVersion,
		"webhook-server": "ghcr.io/loquent/twilio-voice-operator-webhookserver:" + chart.AppVersion,
	}
	for _, r := range renders(t)[:2] { // config/default and the chart's defaults
		for component, image := range want {
			deps := filter(r.objs, "Deployment", component)
			g.Expect(deps).To(HaveLen(1), "%s: one %s Deployment", r.name, component)
			containers := podSpec(t, deps[0]).Containers
			g.Expect(containers).To(HaveLen(1))
			g.Expect(containers[0].Image).To(Equal(image), "%s: %s image", r.name, component)
		}
	}
}

func baseNames(paths []string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = filepath.Base(p)
	}
	return out
}
