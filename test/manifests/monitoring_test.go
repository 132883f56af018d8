package manifests

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/yaml"

	// Their metrics register on controller-runtime's registry when the
	// packages load: twilio_numbers (controllers), twilio_api_* (through
	// internal/twilio), controller-runtime's reconcile and work queue ones.
	_ "github.com/loquent/twilio-voice-operator/controllers"
	"github.com/loquent/twilio-voice-operator/webhookserver"
)

const (
	defaultPromtool = "bin/promtool-v0.316.0"
	alertsFile      = chartDir + "/files/alerts.yaml"
	alertTestsFile  = "test/manifests/testdata/alerts_test.yaml"
	dashboardFile   = chartDir + "/files/dashboard.json"
	runbookBase     = "https://github.com/loquent/twilio-voice-operator/blob/main/README.md#"
)

// promtool returns the promtool binary (`make promtool` builds it; PROMTOOL
// overrides the path).
func promtool(t *testing.T) string {
	t.Helper()
	p := os.Getenv("PROMTOOL")
	if p == "" {
		p = filepath.Join(root, defaultPromtool)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("promtool not found at %s (build it with `make promtool`, or set PROMTOOL): %v", p, err)
	}
	return p
}

// ruleFile is a Prometheus rule file, as files/alerts.yaml is one.
type ruleFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert       string            `json:"alert"`
			Record      string            `json:"record"`
			Expr        string            `json:"expr"`
			For         string            `json:"for"`
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
		} `json:"rules"`
	} `json:"groups"`
}

func readAlerts(t *testing.T) ruleFile {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, alertsFile))
	if err != nil {
		t.Fatal(err)
	}
	var rules ruleFile
	if err := yaml.UnmarshalStrict(data, &rules); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	return rules
}

// TestAlertRules: promtool checks the chart's rule file and runs its unit
// tests (testdata/alerts_test.yaml), which evaluate every alert on series
// that make it fire and on series or at times that must not.
func TestAlertRules(t *testing.T) {
	bin := promtool(t)
	t.Run("check", func(t *testing.T) {
		out, err := runTool(bin, "check", "rules", "--lint=all", "--lint-fatal", alertsFile)
		NewWithT(t).Expect(err).NotTo(HaveOccurred(), "%s", out)
	})
	t.Run("test", func(t *testing.T) {
		out, err := runTool(bin, "test", "rules", alertTestsFile)
		NewWithT(t).Expect(err).NotTo(HaveOccurred(), "%s", out)
	})
}

// TestAlertsAreComplete: every alert has a severity, a summary, a
// description and a runbook in the README, uses only metrics the binaries
// export, and has a promtool case where it fires and one where it does not.
func TestAlertsAreComplete(t *testing.T) {
	rules := readAlerts(t)
	data, err := os.ReadFile(filepath.Join(root, alertTestsFile))
	NewWithT(t).Expect(err).NotTo(HaveOccurred())
	var tests struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `json:"alertname"`
				ExpAlerts []any  `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	NewWithT(t).Expect(yaml.Unmarshal(data, &tests)).To(Succeed())
	fires, silent := map[string]bool{}, map[string]bool{}
	for _, tg := range tests.Tests {
		for _, c := range tg.AlertRuleTest {
			if len(c.ExpAlerts) > 0 {
				fires[c.Alertname] = true
			} else {
				silent[c.Alertname] = true
			}
		}
	}
	known := knownMetrics(t)
	var names []string
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			t.Run(r.Alert, func(t *testing.T) {
				g := NewWithT(t)
				g.Expect(r.Alert).NotTo(BeEmpty(), "only alerts in %s", alertsFile)
				names = append(names, r.Alert)
				g.Expect(r.Labels).To(HaveKeyWithValue("severity", BeElementOf("warning", "critical")))
				g.Expect(r.Annotations).To(HaveKeyWithValue("summary", Not(BeEmpty())))
				g.Expect(r.Annotations).To(HaveKeyWithValue("description", Not(BeEmpty())))
				g.Expect(r.Annotations).To(HaveKeyWithValue("runbook_url", runbookBase+strings.ToLower(r.Alert)))
				for _, m := range metricNames(r.Expr) {
					g.Expect(known(m)).To(Succeed())
				}
				g.Expect(fires).To(HaveKey(r.Alert), "a promtool case where %s fires", r.Alert)
				g.Expect(silent).To(HaveKey(r.Alert), "a promtool case where %s does not fire", r.Alert)
			})
		}
	}
	NewWithT(t).Expect(names).To(ConsistOf(
		"TwilioNumbersNotReady", "TwilioNumbersRestoreBlocked", "TwilioNumbersWebhookUnreachable", "TwilioNumbersContested",
		"TwilioNumbersNotSynced", "TwilioAPIErrorRatioHigh", "TwilioWebhookSignatureFailuresHigh", "TwilioWebhookAgentDialFailures",
		"TwilioWebhookFramesDropped", "TwilioWebhookStreamTokenReloadFailed"))
}

// TestPrometheusRule: monitoring.prometheusRule.enabled ships
// files/alerts.yaml as it is tested, with the runbook links pointing at
// runbookBaseURL and alertLabels added to every alert (its own labels win).
func TestPrometheusRule(t *testing.T) {
	g := NewWithT(t)
	g.Expect(filter(renders(t)[1].objs, "PrometheusRule", "")).To(BeEmpty(), "off by default")
	objs := filter(renders(t)[2].objs, "PrometheusRule", "")
	g.Expect(objs).To(HaveLen(1))
	g.Expect(objs[0].GetNamespace()).To(Equal("tvo-ci"))
	g.Expect(objs[0].GetLabels()).To(HaveKeyWithValue("release", "prometheus"))

	data, err := os.ReadFile(filepath.Join(root, alertsFile))
	g.Expect(err).NotTo(HaveOccurred())
	data = []byte(strings.ReplaceAll(string(data), runbookBase, "https://wiki.example.com/voice/twilio-voice-operator#"))
	var want map[string]any
	g.Expect(yaml.Unmarshal(data, &want)).To(Succeed())
	for _, group := range want["groups"].([]any) {
		for _, rule := range group.(map[string]any)["rules"].([]any) {
			rule.(map[string]any)["labels"].(map[string]any)["team"] = "voice"
		}
	}
	g.Expect(objs[0].Object["spec"]).To(Equal(want))
}

// TestGrafanaDashboard: files/dashboard.json is a dashboard whose every
// query is valid PromQL (promtool checks it) over metrics the binaries
// export, with the panels an operator needs, shipped as a ConfigMap with
// the Grafana sidecar's label when monitoring.grafanaDashboard.enabled.
func TestGrafanaDashboard(t *testing.T) {
	g := NewWithT(t)
	data, err := os.ReadFile(filepath.Join(root, dashboardFile))
	g.Expect(err).NotTo(HaveOccurred())
	var dash struct {
		Title      string `json:"title"`
		UID        string `json:"uid"`
		Templating struct {
			List []struct {
				Name, Type, Query string
			} `json:"list"`
		} `json:"templating"`
		Panels []struct {
			Type       string         `json:"type"`
			Title      string         `json:"title"`
			Datasource map[string]any `json:"datasource"`
			Targets    []struct {
				Expr       string         `json:"expr"`
				RefID      string         `json:"refId"`
				Datasource map[string]any `json:"datasource"`
			} `json:"targets"`
		} `json:"panels"`
	}
	g.Expect(json.Unmarshal(data, &dash)).To(Succeed(), "%s is JSON", dashboardFile)
	g.Expect(dash.Title).NotTo(BeEmpty())
	g.Expect(dash.UID).To(MatchRegexp(`^[a-z0-9-]{1,40}$`))
	g.Expect(dash.Templating.List).To(ContainElement(And(HaveField("Name", "datasource"), HaveField("Type", "datasource"), HaveField("Query", "prometheus"))))

	known := knownMetrics(t)
	g.Expect(known("twilio_webhook_made_up_total")).NotTo(Succeed(), "the check knows what does not exist")
	g.Expect(known("controller_runtime_reconcile_time_seconds_bucket")).To(Succeed(), "and controller-runtime's histograms")
	used := map[string]bool{}
	type recording struct {
		Record string `json:"record"`
		Expr   string `json:"expr"`
	}
	var records []recording
	for i, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		g.Expect(p.Title).NotTo(BeEmpty())
		g.Expect(p.Datasource).To(HaveKeyWithValue("uid", "${datasource}"), "panel %q", p.Title)
		g.Expect(p.Targets).NotTo(BeEmpty(), "panel %q", p.Title)
		for _, target := range p.Targets {
			g.Expect(target.Datasource).To(HaveKeyWithValue("uid", "${datasource}"), "panel %q", p.Title)
			expr := strings.ReplaceAll(target.Expr, "$__rate_interval", "5m")
			g.Expect(expr).NotTo(ContainSubstring("$"), "panel %q uses a variable the test does not know: %s", p.Title, target.Expr)
			for _, m := range metricNames(expr) {
				g.Expect(known(m)).To(Succeed(), "panel %q", p.Title)
				used[m] = true
			}
			records = append(records, recording{Record: fmt.Sprintf("dashboard:panel%d_%s", i, target.RefID), Expr: expr})
		}
	}
	for _, m := range []string{
		"twilio_numbers",
		"twilio_api_requests_total", "twilio_api_request_duration_seconds_bucket",
		"twilio_webhook_requests_total", "twilio_webhook_signature_failures_total",
		"twilio_webhook_active_streams", "twilio_webhook_streams_total",
		"twilio_webhook_stream_frames_relayed_total", "twilio_webhook_stream_frames_dropped_total",
		"twilio_webhook_agent_dial_duration_seconds_bucket", "twilio_webhook_agent_dials_refused_total",
		"controller_runtime_reconcile_total",
	} {
		g.Expect(used).To(HaveKey(m), "a panel shows %s", m)
	}

	// promtool parses every query, as recording rules.
	rules, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": records}}})
	g.Expect(err).NotTo(HaveOccurred())
	file := filepath.Join(t.TempDir(), "dashboard-queries.yaml")
	g.Expect(os.WriteFile(file, rules, 0o600)).To(Succeed())
	out, err := runTool(promtool(t), "check", "rules", file)
	g.Expect(err).NotTo(HaveOccurred(), "%s", out)

	// The chart's ConfigMap carries the file as it is.
	g.Expect(filter(renders(t)[1].objs, "ConfigMap", "")).To(BeEmpty(), "off by default")
	cms := filter(renders(t)[2].objs, "ConfigMap", "")
	g.Expect(cms).To(HaveLen(1))
	cm := convert[corev1.ConfigMap](t, cms[0])
	g.Expect(cm.Namespace).To(Equal("monitoring"))
	g.Expect(cm.Labels).To(HaveKeyWithValue("grafana.example.com/dashboard", "true"))
	g.Expect(cm.Annotations).To(HaveKeyWithValue("grafana_folder", "Voice"))
	g.Expect(cm.Data).To(HaveKeyWithValue("twilio-voice-operator.json", strings.TrimSpace(string(data))))

	out, err = runTool(helm, helmTemplateArgs("tvo-dash", "--set", "publicURL="+publicURL, "--set", "monitoring.grafanaDashboard.enabled=true")...)
	g.Expect(err).NotTo(HaveOccurred())
	cms = filter(decode(t, out), "ConfigMap", "")
	g.Expect(cms).To(HaveLen(1))
	g.Expect(cms[0].GetNamespace()).To(Equal("tvo-dash"), "the release namespace by default")
	g.Expect(cms[0].GetLabels()).To(HaveKeyWithValue("grafana_dashboard", "1"), "the sidecar's default label")
}

// TestMetricsPortsOpenToServiceMonitors: with the NetworkPolicy on and a
// ServiceMonitor asked for, Prometheus can scrape both metrics ports even
// when networkPolicy.metricsFrom names nobody: they are open to every pod in
// the cluster (and nothing else is). metricsFrom narrows that; without a
// ServiceMonitor an empty metricsFrom keeps them closed.
func TestMetricsPortsOpenToServiceMonitors(t *testing.T) {
	anyPod := []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{}}}
	monitoring := []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "monitoring"}}}}
	tests := []struct {
		name string
		set  []string
		want []networkingv1.NetworkPolicyPeer // nil: the metrics port is closed
	}{
		{"no ServiceMonitor", nil, nil},
		{"ServiceMonitor", []string{"metrics.serviceMonitor.enabled=true"}, anyPod},
		{"ServiceMonitor and metricsFrom", []string{"metrics.serviceMonitor.enabled=true",
			"networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name=monitoring"}, monitoring},
		{"metricsFrom alone", []string{"networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name=monitoring"}, monitoring},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			args := []string{"--set", "publicURL=" + publicURL}
			for _, s := range tt.set {
				args = append(args, "--set", s)
			}
			out, err := runTool(helm, helmTemplateArgs("tvo-np", args...)...)
			g.Expect(err).NotTo(HaveOccurred())
			objs := decode(t, out)
			for _, component := range components {
				var np *networkingv1.NetworkPolicy
				for _, o := range filter(objs, "NetworkPolicy", component) {
					np = convert[networkingv1.NetworkPolicy](t, o)
				}
				g.Expect(np).NotTo(BeNil(), component)
				var from []networkingv1.NetworkPolicyPeer
				open := false
				for _, rule := range np.Spec.Ingress {
					if slices.ContainsFunc(rule.Ports, func(p networkingv1.NetworkPolicyPort) bool { return p.Port.String() == "metrics" }) {
						g.Expect(rule.Ports).To(HaveLen(1), "%s: the metrics rule opens the metrics port only", component)
						open, from = true, rule.From
					}
				}
				if tt.want == nil {
					g.Expect(open).To(BeFalse(), "%s: metrics port closed", component)
					continue
				}
				g.Expect(open).To(BeTrue(), "%s: metrics port open", component)
				g.Expect(from).To(Equal(tt.want), component)
			}
		})
	}
}

// knownMetrics returns a check that a metric name (a histogram's _bucket,
// _sum and _count included) is one the binaries export: the webhook server's
// (every family is on a fresh registry), and those registered on
// controller-runtime's registry, which the manager serves (twilio_numbers,
// twilio_api_*, controller-runtime's own).
func knownMetrics(t *testing.T) func(string) error {
	t.Helper()
	reg := prometheus.NewRegistry()
	if _, err := webhookserver.NewMetrics(reg); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	webhook := map[string]bool{}
	for _, f := range families {
		webhook[f.GetName()] = true
	}
	return func(name string) error {
		candidates := []string{name}
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suffix); ok {
				candidates = append(candidates, base)
			}
		}
		for _, c := range candidates {
			if webhook[c] || registeredOnManager(c) {
				return nil
			}
		}
		return fmt.Errorf("%s is exported by neither the webhook server nor the manager", name)
	}
}

// registeredOnManager reports whether controller-runtime's registry has a
// collector of that name: registering a probe of the same name fails then.
func registeredOnManager(name string) bool {
	probe := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: "probe"})
	err := ctrlmetrics.Registry.Register(probe)
	if err == nil {
		ctrlmetrics.Registry.Unregister(probe)
		return false
	}
	var already prometheus.AlreadyRegisteredError
	return errors.As(err, &already) || strings.Contains(err.Error(), "previously registered descriptor with the same fully-qualified name")
}

var (
	promqlStrings  = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	promqlMatchers = regexp.MustCompile(`\{[^}]*\}`)
	promqlRanges   = regexp.MustCompile(`\[[^\]]*\]`)
	promqlGrouping = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promqlIdent    = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
	promqlKeywords = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "by": true, "without": true,
		"on": true, "ignoring": true, "group_left": true, "group_right": true, "inf": true, "nan": true}
)

// metricNames returns the metric names a PromQL expression selects: the
// identifiers left once strings, label matchers, ranges and grouping labels
// are taken out, other than function and aggregation names (followed by a
// parenthesis), keywords, and the letters of numbers (1e-9) or durations.
func metricNames(expr string) []string {
	e := promqlStrings.ReplaceAllString(expr, `""`)
	e = promqlMatchers.ReplaceAllString(e, " ")
	e = promqlRanges.ReplaceAllString(e, " ")
	e = promqlGrouping.ReplaceAllString(e, " ")
	var names []string
	for _, loc := range promqlIdent.FindAllStringIndex(e, -1) {
		word := e[loc[0]:loc[1]]
		if loc[0] > 0 && strings.ContainsAny(e[loc[0]-1:loc[0]], "0123456789.$") {
			continue
		}
		if strings.HasPrefix(strings.TrimLeft(e[loc[1]:], " \t\n"), "(") || promqlKeywords[strings.ToLower(word)] {
			continue
		}
		names = append(names, word)
	}
	return names
}

// TestMetricNames: metricNames finds what the alert and dashboard checks
// rely on it to find.
func TestMetricNames(t *testing.T) {
	for expr, want := range map[string][]string{
		`up`: {"up"},
		`sum by (namespace, job) (rate(a_total{reason!="closed", x=~"b|c"}[5m])) / on (job) group_left sum(rate(b_total[5m])) > 1e-3`: {"a_total", "b_total"},
		`histogram_quantile(0.99, sum by (le) (rate(x_seconds_bucket[5m]))) and x_up offset 5m > bool 0`:                              {"x_seconds_bucket", "x_up"},
		`max without (pod) (g{a="sum(fake_metric)"}) unless ignoring (pod) h`:                                                         {"g", "h"},
	} {
		NewWithT(t).Expect(metricNames(expr)).To(Equal(want), expr)
	}
}
