package manifests

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

const (
	fieldOwner       = client.FieldOwner("manifests-test")
	samplesNamespace = "voice-samples"
)

// installations renders every way of installing: config/default, the same
// with the optional parts (ServiceMonitors, the example Ingress) switched on,
// the samples, and the chart with its CRDs at default values and with every
// option.
func installations(t *testing.T) []render {
	t.Helper()
	g := NewWithT(t)
	kustomize := func(dir string) []*unstructured.Unstructured {
		out, err := runTool(kubectl, "kustomize", dir)
		g.Expect(err).NotTo(HaveOccurred())
		return decode(t, out)
	}
	helmTemplate := func(args ...string) []*unstructured.Unstructured {
		out, err := runTool(helm, args...)
		g.Expect(err).NotTo(HaveOccurred())
		return decode(t, out)
	}
	samples := kustomize("config/samples")
	for _, o := range samples {
		o.SetNamespace(samplesNamespace)
	}
	return []render{
		{"config/default", kustomize("config/default")},
		{"config/default with prometheus and the example ingress", kustomize(optionalOverlay(t))},
		{"config/samples", samples},
		{"chart (defaults)", helmTemplate(helmTemplateArgs("tvo-default", "--include-crds", "--set", "publicURL="+publicURL)...)},
		{"chart (all options)", helmTemplate(helmTemplateArgs("tvo-ci", "--include-crds", "--values", ciValues)...)},
	}
}

// optionalOverlay copies config/ and switches on what config/default leaves
// out: ../prometheus (as its comment says) and the example Ingress.
func optionalOverlay(t *testing.T) string {
	t.Helper()
	g := NewWithT(t)
	dir := filepath.Join(t.TempDir(), "config")
	g.Expect(os.CopyFS(dir, os.DirFS(filepath.Join(root, "config")))).To(Succeed())
	addResource := func(kustomization, resource string) {
		path := filepath.Join(dir, kustomization, "kustomization.yaml")
		data, err := os.ReadFile(path)
		g.Expect(err).NotTo(HaveOccurred())
		var k map[string]any
		g.Expect(yaml.Unmarshal(data, &k)).To(Succeed())
		k["resources"] = append(k["resources"].([]any), resource)
		data, err = yaml.Marshal(k)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(os.WriteFile(path, data, 0o600)).To(Succeed())
	}
	addResource("default", "../prometheus")
	addResource("webhookserver", "ingress-example.yaml")
	return filepath.Join(dir, "default")
}

// TestServerSideDryRun applies every installation to a real API server:
// the CRDs for real, as an install would, waiting until they are
// Established; then every other object with server-side apply and dry-run,
// so the API server's schemas, defaulting and validation judge each
// manifest without anything being created.
func TestServerSideDryRun(t *testing.T) {
	ctx := t.Context()
	sets := installations(t)

	crds := stubCRDs(t)
	namespaces := map[string]bool{}
	for _, set := range sets {
		for _, o := range set.objs {
			switch {
			case o.GetKind() == "CustomResourceDefinition":
				crds = append(crds, o)
			case o.GetKind() == "Namespace":
				namespaces[o.GetName()] = true
			case o.GetNamespace() != "":
				namespaces[o.GetNamespace()] = true
			}
		}
	}
	NewWithT(t).Expect(len(crds)).To(BeNumerically(">=", 3))

	t.Run("CRDs", func(t *testing.T) { installCRDs(t, crds) })
	if t.Failed() {
		return
	}
	// Namespaced objects can only be dry-run in a namespace that exists.
	// Namespaces the renders create are applied as rendered; the others
	// (release and sample namespaces) are created here. All of them warn
	// about pods short of the restricted Pod Security Standard, so that the
	// API server's PodSecurity admission reviews the Deployments too.
	for _, set := range sets {
		for _, o := range filter(set.objs, "Namespace", "") {
			o = o.DeepCopy()
			o.SetLabels(withRestrictedWarning(o.GetLabels()))
			NewWithT(t).Expect(apply(ctx, o)).To(Succeed(), "Namespace %s", o.GetName())
			delete(namespaces, o.GetName())
		}
	}
	for ns := range namespaces {
		err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: withRestrictedWarning(nil)}})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("create namespace %s: %v", ns, err)
		}
	}
	warnings.take()

	for _, set := range sets {
		t.Run(set.name, func(t *testing.T) {
			g := NewWithT(t)
			g.Expect(set.objs).NotTo(BeEmpty())
			for _, o := range set.objs {
				if o.GetKind() == "CustomResourceDefinition" || o.GetKind() == "Namespace" {
					continue
				}
				g.Expect(apply(ctx, o, client.DryRunAll)).To(Succeed(), "%s %s/%s", o.GetKind(), o.GetNamespace(), o.GetName())
				g.Expect(warnings.take()).To(BeEmpty(), "the API server warned about %s %s/%s", o.GetKind(), o.GetNamespace(), o.GetName())
			}
		})
	}
}

// installCRDs applies the CRDs for real and waits until they are Established.
func installCRDs(t *testing.T, crds []*unstructured.Unstructured) {
	t.Helper()
	g := NewWithT(t)
	for _, crd := range crds {
		g.Expect(apply(t.Context(), crd)).To(Succeed(), "CRD %s", crd.GetName())
	}
	for _, crd := range crds {
		g.Eventually(func(g Gomega) {
			var live apiextensionsv1.CustomResourceDefinition
			g.Expect(k8s.Get(t.Context(), client.ObjectKey{Name: crd.GetName()}, &live)).To(Succeed())
			g.Expect(live.Status.Conditions).To(ContainElement(And(
				HaveField("Type", apiextensionsv1.Established), HaveField("Status", apiextensionsv1.ConditionTrue))))
		}).WithTimeout(30*time.Second).WithPolling(100*time.Millisecond).Should(Succeed(), "CRD %s Established", crd.GetName())
	}
}

// stubCRDs returns the CRDs of kinds the optional manifests use that no
// render installs (the Prometheus Operator's ServiceMonitor and
// PrometheusRule): testdata/*-crd.yaml.
func stubCRDs(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "*-crd.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no stub CRDs in testdata: %v", err)
	}
	var crds []*unstructured.Unstructured
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		crds = append(crds, decode(t, data)...)
	}
	return crds
}

func withRestrictedWarning(l map[string]string) map[string]string {
	if l == nil {
		l = map[string]string{}
	}
	l["pod-security.kubernetes.io/warn"] = "restricted"
	return l
}

func apply(ctx context.Context, o *unstructured.Unstructured, opts ...client.ApplyOption) error {
	opts = append(opts, fieldOwner, client.ForceOwnership)
	return k8s.Apply(ctx, client.ApplyConfigurationFromUnstructured(o.DeepCopy()), opts...)
}

// warningCollector keeps the warnings the API server sends (deprecated
// APIs, Pod Security violations, unknown fields) for the test to assert on.
type warningCollector struct {
	mu   sync.Mutex
	seen []string
}

// HandleWarningHeaderWithContext implements rest.WarningHandlerWithContext.
func (w *warningCollector) HandleWarningHeaderWithContext(_ context.Context, _ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.seen = append(w.seen, text)
}

// take returns the warnings since the last call.
func (w *warningCollector) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	seen := w.seen
	w.seen = nil
	return seen
}

var warnings = &warningCollector{}
