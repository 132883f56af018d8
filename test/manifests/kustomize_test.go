package manifests

import (
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
)

const (
	kustomizeNamespace = "twilio-voice-operator-system"
	kustomizePrefix    = "twilio-voice-operator-"
)

// TestKustomizeDefault: config/default installs into one namespace that
// enforces the restricted Pod Security Standard, prefixes every name, and
// takes the public URL from the ConfigMap users replace (a reserved
// placeholder until then).
func TestKustomizeDefault(t *testing.T) {
	g := NewWithT(t)
	objs := renders(t)[0].objs
	g.Expect(renders(t)[0].name).To(Equal("config/default"))

	namespaces := filter(objs, "Namespace", "")
	g.Expect(namespaces).To(HaveLen(1))
	g.Expect(namespaces[0].GetName()).To(Equal(kustomizeNamespace))
	g.Expect(namespaces[0].GetLabels()).To(HaveKeyWithValue("pod-security.kubernetes.io/enforce", "restricted"))

	for _, o := range objs {
		switch o.GetKind() {
		case "Namespace", "CustomResourceDefinition":
			continue
		case "ClusterRole", "ClusterRoleBinding":
			g.Expect(o.GetNamespace()).To(BeEmpty())
		default:
			g.Expect(o.GetNamespace()).To(Equal(kustomizeNamespace), "%s %s", o.GetKind(), o.GetName())
		}
		g.Expect(strings.HasPrefix(o.GetName(), kustomizePrefix)).To(BeTrue(), "%s %s has the name prefix", o.GetKind(), o.GetName())
	}

	configMaps := filter(objs, "ConfigMap", "")
	g.Expect(configMaps).To(HaveLen(1))
	g.Expect(convert[corev1.ConfigMap](t, configMaps[0]).Data).To(HaveKeyWithValue("PUBLIC_URL", HavePrefix("https://")))
	// Both binaries read the same URL: numbers point at it, signatures are checked over it.
	for _, component := range components {
		g.Expect(expandedArgs(t, objs, component)).To(ContainElement("--public-url=" + placeholderURL))
	}
}
