package manifests

import (
	"os"
	"path/filepath"
	"testing"

	. "github.com/onsi/gomega"
	"sigs.k8s.io/yaml"

	"github.com/loquent/twilio-voice-operator/internal/publicurl"
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

// TestHelmTemplate checks that the optional parts appear exactly when asked
// for (the ConfigMap is the Grafana dashboard), and that the chart renders no
// Secret: no key is ever generated at render time.
func TestHelmTemplate(t *testing.T) {
	optional := []string{"Ingress", "HorizontalPodAutoscaler", "ServiceMonitor", "PrometheusRule", "ConfigMap"}
	for _, r := range renders(t)[1:] {
		t.Run(r.name, func(t *testing.T) {
			g := NewWithT(t)
			kinds := map[string]int{}
			for _, o := range r.objs {
				kinds[o.GetKind()]++
				g.Expect(o.GetName()).NotTo(BeEmpty())
			}
			g.Expect(kinds).To(HaveKeyWithValue("Deployment", 2))
			g.Expect(kinds).NotTo(HaveKey("Secret"), "the chart renders no Secret (the manager creates the stream-token key)")
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

// TestHelmRefusesBadValues: a bad value stops the render before anything is
// applied, and what helm prints names the value and says what to do. The
// schema (values.schema.json) refuses wrong types, enums, integer ranges and
// unknown options; templates/validate.yaml refuses what a schema cannot say
// in words (publicURL's shape, duration ranges, rules across values), all
// problems at once. No message is a raw regular expression.
func TestHelmRefusesBadValues(t *testing.T) {
	const schema = "values don't meet the specifications of the schema"
	const values = "The chart's values need a change:"
	v := func(yaml string) string { return "publicURL: " + publicURL + "\n" + yaml }
	tests := []struct {
		name   string
		values string
		want   []string
	}{
		{"publicURL missing", `manager: {replicas: 1}`, []string{schema, "missing property 'publicURL'"}},
		{"publicURL http", `publicURL: http://voice.example.com`, []string{values,
			`publicURL "http://voice.example.com" must start with https://: Twilio calls webhooks and opens media streams over TLS only.`}},
		{"publicURL with a path", `publicURL: https://voice.example.com/twilio`, []string{values,
			`publicURL "https://voice.example.com/twilio" must be https:// and a host name alone (an optional :port), with no path, query, user or trailing slash`,
			"Use e.g. https://voice.your-company.com."}},
		{"publicURL with a trailing slash", `publicURL: https://voice.example.com/`, []string{values,
			`publicURL "https://voice.example.com/" must be https:// and a host name alone`}},
		{"publicURL on a reserved host", `publicURL: https://voice.example.com`, []string{values,
			`publicURL "https://voice.example.com" is on a reserved example host (example.com) that no one serves, and both binaries refuse to start with it: ` +
				"set your webhook ingress's https://host"}},
		{"reserved host allowed for one binary only", "publicURL: https://voice.example.com\nmanager: {extraArgs: [--allow-reserved-public-url]}", []string{values,
			"add --allow-reserved-public-url to both manager.extraArgs and webhookServer.extraArgs"}},
		{"no replicas", v("webhookServer: {replicas: 0}\nmanager: {replicas: 0}"),
			[]string{schema, "at '/webhookServer/replicas': minimum: got 0, want 1", "at '/manager/replicas': minimum: got 0, want 1"}},
		{"log level not in the enum", v("manager: {logLevel: verbose}"),
			[]string{schema, "/manager/logLevel", "'debug', 'info', 'error'"}},
		{"misspelt option", v("webhookServer: {replica: 3}"),
			[]string{schema, "/webhookServer", "'replica' not allowed"}},
		{"misspelt monitoring option", v("monitoring: {prometheusRule: {enable: true}}"),
			[]string{schema, "/monitoring/prometheusRule", "'enable' not allowed"}},
		{"not a duration", v("manager: {pollInterval: 5 minutes}"), []string{values,
			`manager.pollInterval "5 minutes" is not a duration: write a number and a unit (ms, s, m, h), such as 30s, 5m or 1h30m.`}},
		{"poll interval too short", v("manager: {pollInterval: 5s}"), []string{values,
			"manager.pollInterval is 5s; it must be between 10s and 24h: the manager refuses less than 10s"}},
		{"stream token TTL too short", v("webhookServer: {streamTokenTTL: 5s}"), []string{values,
			"webhookServer.streamTokenTTL is 5s; it must be between 30s and 24h: Twilio may open a call's media stream several seconds after the voice webhook answered it, " +
				"and a stream whose token has expired is refused, so the caller is cut off"}},
		{"stream token TTL too long", v("webhookServer: {streamTokenTTL: 48h}"), []string{values,
			"webhookServer.streamTokenTTL is 48h; it must be between 30s and 24h"}},
		{"no shutdown grace", v("webhookServer: {shutdownGracePeriod: 0s}"), []string{values,
			"webhookServer.shutdownGracePeriod is 0s; it must be between 1s and 1h: it is how long live calls may go on after SIGTERM"}},
		{"agent dial timeout too long", v("webhookServer: {agentDialTimeout: 2m}"), []string{values,
			"webhookServer.agentDialTimeout is 2m; it must be between 100ms and 30s: the caller hears silence while the agent is dialled."}},
		{"scrape interval too long", v("metrics: {serviceMonitor: {interval: 5m}}"), []string{values,
			"metrics.serviceMonitor.interval is 5m; it must be between 1s and 2m"}},
		{"termination grace shorter than the drain", v("webhookServer: {terminationGracePeriodSeconds: 30}"), []string{values,
			"webhookServer.terminationGracePeriodSeconds is 30; it must exceed webhookServer.shutdownGracePeriod (30s) plus webhookServer.preStopSleepSeconds (5), " +
				"so set it to at least 36 (or lower those): otherwise the kubelet kills the pod while its calls are still draining."}},
		{"termination grace equal to the drain", v("webhookServer: {shutdownGracePeriod: 1m30s, preStopSleepSeconds: 0, terminationGracePeriodSeconds: 90}"), []string{values,
			"webhookServer.terminationGracePeriodSeconds is 90; it must exceed webhookServer.shutdownGracePeriod (1m30s) plus webhookServer.preStopSleepSeconds (0), so set it to at least 91"}},
		{"autoscaling bounds crossed", v("webhookServer: {autoscaling: {enabled: true, minReplicas: 5, maxReplicas: 3}}"), []string{values,
			"webhookServer.autoscaling.minReplicas (5) is above webhookServer.autoscaling.maxReplicas (3): raise maxReplicas or lower minReplicas."}},
		{"autoscaling without a target", v("webhookServer: {autoscaling: {enabled: true, targetCPUUtilizationPercentage: 0}}"), []string{values,
			"webhookServer.autoscaling needs targetCPUUtilizationPercentage or targetMemoryUtilizationPercentage above 0"}},
		{"bad stream-token Secret name", v("webhookServer: {streamToken: {existingSecret: Voice_Key}}"), []string{values,
			`webhookServer.streamToken.existingSecret "Voice_Key" is not a Secret name`}},
		{"bad dashboard namespace", v("monitoring: {grafanaDashboard: {namespace: Monitoring}}"), []string{values,
			`monitoring.grafanaDashboard.namespace "Monitoring" is not a namespace name`}},
		{"every problem at once", v("manager: {pollInterval: 1s}\nwebhookServer: {streamTokenTTL: 10s, terminationGracePeriodSeconds: 10}"), []string{values,
			"\n- manager.pollInterval is 1s", "\n- webhookServer.streamTokenTTL is 10s", "\n- webhookServer.terminationGracePeriodSeconds is 10"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			file := filepath.Join(t.TempDir(), "values.yaml")
			g.Expect(os.WriteFile(file, []byte(tt.values), 0o600)).To(Succeed())
			_, err := runTool(helm, "template", "tvo", chartDir, "--values", file)
			g.Expect(err).To(HaveOccurred())
			for _, w := range tt.want {
				g.Expect(err.Error()).To(ContainSubstring(w))
			}
			g.Expect(err.Error()).NotTo(ContainSubstring("pattern"), "a raw regular expression is no message")
		})
	}
}

// TestHelmAcceptsEdgeValues: values at the edges of the ranges render.
func TestHelmAcceptsEdgeValues(t *testing.T) {
	for name, values := range map[string]string{
		"public URL with a port": "publicURL: https://voice.your-company.com:8443",
		"reserved host for a test": "publicURL: https://voice.example.com\n" +
			"manager: {extraArgs: [--allow-reserved-public-url]}\nwebhookServer: {extraArgs: [--allow-reserved-public-url]}",
		"shortest poll and TTL": "publicURL: " + publicURL + "\nmanager: {pollInterval: 10s}\nwebhookServer: {streamTokenTTL: 30s}",
		"longest poll and TTL":  "publicURL: " + publicURL + "\nmanager: {pollInterval: 24h}\nwebhookServer: {streamTokenTTL: 1440m}",
		"drain just fits": "publicURL: " + publicURL +
			"\nwebhookServer: {shutdownGracePeriod: 1m29.5s, preStopSleepSeconds: 0, terminationGracePeriodSeconds: 90, agentDialTimeout: 100ms}",
	} {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			file := filepath.Join(t.TempDir(), "values.yaml")
			g.Expect(os.WriteFile(file, []byte(values), 0o600)).To(Succeed())
			_, err := runTool(helm, "template", "tvo", chartDir, "--values", file)
			g.Expect(err).NotTo(HaveOccurred())
		})
	}
}

// TestHelmRefusesReservedHostsAsTheBinariesDo: the chart refuses a
// publicURL exactly when both binaries would refuse to start with it
// (internal/publicurl), so such a render never crash-loops instead.
func TestHelmRefusesReservedHostsAsTheBinariesDo(t *testing.T) {
	for _, host := range []string{"voice.example.com", "example.com", "a.b.example.net", "x.example.org", "example", "voice.test",
		"foo.invalid", "VOICE.EXAMPLE.COM", "voice.example.com:8443", "voice.your-company.com", "examples.com", "example.com.evil.io",
		"contest", "voice.testing.io", "invalid.io"} {
		t.Run(host, func(t *testing.T) {
			g := NewWithT(t)
			u := "https://" + host
			_, err := runTool(helm, "template", "tvo", chartDir, "--set", "publicURL="+u)
			parsed, perr := publicurl.Parse(u, false)
			g.Expect(perr).NotTo(HaveOccurred())
			if publicurl.CheckNotReserved(parsed) != nil {
				g.Expect(err).To(MatchError(ContainSubstring("is on a reserved example host")), "the binaries refuse %s", u)
			} else {
				g.Expect(err).NotTo(HaveOccurred(), "the binaries accept %s", u)
			}
		})
	}
}

// TestHelmRenderIsStable: rendering the chart twice gives the same bytes,
// so Argo CD (which renders with `helm template`) sees a synced application
// and never replaces anything, least of all the stream-token key, on its own.
func TestHelmRenderIsStable(t *testing.T) {
	for name, values := range map[string][]string{
		"defaults":    {"--set", "publicURL=" + publicURL},
		"all options": {"--values", ciValues},
	} {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			args := helmTemplateArgs("tvo-stable", append([]string{"--include-crds"}, values...)...)
			first, err := runTool(helm, args...)
			g.Expect(err).NotTo(HaveOccurred())
			second, err := runTool(helm, args...)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(first).NotTo(BeEmpty())
			g.Expect(string(second)).To(Equal(string(first)), "two renders of the same values differ")
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
