package manifests

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestHelmInstallUpgradeUninstall runs the chart's life cycle with helm
// itself against the real API server, as a platform team would: install
// (the chart's kubeVersion check, its CRDs, lookup), upgrade (the generated
// stream-token key must survive it, or calls answered just before a rollout
// lose their media stream), and uninstall (the CRDs, and with them every
// TwilioPhoneNumber and its saved original, must stay).
func TestHelmInstallUpgradeUninstall(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	// A namespace of its own per run: uninstall leaves the TwilioPhoneNumber behind.
	ns, release := fmt.Sprintf("tvo-install-%d", rand.N(1_000_000)), "tvo"
	run := func(args ...string) {
		t.Helper()
		_, err := runTool(helm, append(args, "--kubeconfig", admin, "--namespace", ns)...)
		g.Expect(err).NotTo(HaveOccurred())
	}
	streamKey := func() []byte {
		var s corev1.Secret
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: release + "-twilio-voice-operator-stream-token"}, &s)).To(Succeed())
		return s.Data["key"]
	}
	webhookReplicas := func() int32 {
		var d appsv1.Deployment
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: release + "-twilio-voice-operator-webhook-server"}, &d)).To(Succeed())
		return *d.Spec.Replicas
	}

	run("install", release, chartDir, "--create-namespace", "--set", "publicURL="+publicURL)
	key := streamKey()
	g.Expect(len(key)).To(BeNumerically(">=", 32), "the webhook server needs an HMAC key of at least 32 bytes")
	g.Expect(webhookReplicas()).To(Equal(int32(2)))
	for _, crd := range []string{"twilioaccounts.twilio.loquent.io", "twiliophonenumbers.twilio.loquent.io"} {
		g.Expect(k8s.Get(ctx, client.ObjectKey{Name: crd}, &apiextensionsv1.CustomResourceDefinition{})).To(Succeed(), crd)
	}

	// A number managed under this release, holding a saved original.
	g.Eventually(func() error {
		return k8s.Create(ctx, &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "twilio.loquent.io/v1alpha1", "kind": "TwilioPhoneNumber",
			"metadata": map[string]any{"namespace": ns, "name": "support"},
			"spec":     map[string]any{"phoneNumber": "+14155550100", "accountRef": map[string]any{"name": "main"}},
		}})
	}, 30*time.Second, 100*time.Millisecond).Should(Succeed(), "the chart's CRD serves TwilioPhoneNumbers")

	run("upgrade", release, chartDir, "--reuse-values", "--set", "webhookServer.replicas=3")
	g.Expect(webhookReplicas()).To(Equal(int32(3)), "the upgrade applied")
	g.Expect(streamKey()).To(Equal(key), "the generated stream-token key survives an upgrade")

	run("uninstall", release)
	var d appsv1.Deployment
	err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: release + "-twilio-voice-operator-webhook-server"}, &d)
	g.Expect(client.IgnoreNotFound(err)).To(Succeed())
	g.Expect(err).To(HaveOccurred(), "uninstall removes the release's objects")
	n := &unstructured.Unstructured{}
	n.SetAPIVersion("twilio.loquent.io/v1alpha1")
	n.SetKind("TwilioPhoneNumber")
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "support"}, n)).To(Succeed(),
		"uninstalling the chart keeps the CRDs and every TwilioPhoneNumber")
	g.Expect(n.GetDeletionTimestamp()).To(BeNil())
	g.Expect(k8s.Delete(ctx, n)).To(Succeed())
}
