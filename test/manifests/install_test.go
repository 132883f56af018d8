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
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/loquent/twilio-voice-operator/controllers"
	"github.com/loquent/twilio-voice-operator/webhookserver"
)

// TestHelmInstallUpgradeUninstall runs the chart's life cycle with helm
// itself against the real API server, as a platform team would: install
// (the chart's kubeVersion check, its CRDs), the stream-token Secret created
// as the manager creates it under the chart's RBAC and read as the webhook
// server reads it, upgrade (the key must survive it, or calls answered just
// before a rollout lose their media stream), and uninstall (the CRDs, and
// with them every TwilioPhoneNumber and its saved original, must stay).
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
	streamToken := types.NamespacedName{Namespace: ns, Name: release + "-twilio-voice-operator-stream-token"}
	streamKey := func() []byte {
		var s corev1.Secret
		g.Expect(k8s.Get(ctx, streamToken, &s)).To(Succeed())
		return s.Data["key"]
	}
	webhookReplicas := func() int32 {
		var d appsv1.Deployment
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: release + "-twilio-voice-operator-webhook-server"}, &d)).To(Succeed())
		return *d.Spec.Replicas
	}

	run("install", release, chartDir, "--create-namespace", "--set", "publicURL="+publicURL)
	g.Expect(apierrors.IsNotFound(k8s.Get(ctx, streamToken, &corev1.Secret{}))).To(BeTrue(), "the chart creates no stream-token Secret")
	// The manager creates it on its first start, with the chart's RBAC...
	manager := impersonate(t, ns, release+"-twilio-voice-operator-manager")
	g.Expect(controllers.EnsureStreamTokenSecret(ctx, manager, streamToken)).To(Succeed())
	key := streamKey()
	g.Expect(controllers.EnsureStreamTokenSecret(ctx, manager, streamToken)).To(Succeed(), "a second start finds it")
	g.Expect(streamKey()).To(Equal(key), "and leaves it as it is")
	// ...and the webhook server reads it, with its own.
	keys, err := webhookserver.LoadStreamTokenKeys(ctx, impersonate(t, ns, release+"-twilio-voice-operator-webhook-server"), streamToken, "")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(keys).To(HaveLen(1))
	g.Expect(len(keys[0])).To(BeNumerically(">=", 32), "the webhook server needs an HMAC key of at least 32 bytes")
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
	g.Expect(streamKey()).To(Equal(key), "the stream-token key survives an upgrade")

	run("uninstall", release)
	g.Expect(streamKey()).To(Equal(key), "the stream-token key outlives the release, as the guard key does")
	var d appsv1.Deployment
	err = k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: release + "-twilio-voice-operator-webhook-server"}, &d)
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

// TestUpgradeFromGeneratedKey: chart 0.1.0 rendered the stream-token Secret
// itself; the current chart renders none, so `helm upgrade` deletes the
// Secret it no longer renders, and the manager then creates a new key,
// refusing the streams of calls answered with the old one. Annotated
// helm.sh/resource-policy=keep first (README, upgrading), the Secret and its
// key stay, and the manager keeps it.
func TestUpgradeFromGeneratedKey(t *testing.T) {
	ctx := t.Context()
	for _, keep := range []bool{false, true} {
		t.Run(fmt.Sprintf("keep=%v", keep), func(t *testing.T) {
			g := NewWithT(t)
			// Cluster-scoped objects are named after the release: one per case.
			ns, release := fmt.Sprintf("tvo-upgrade-%d", rand.N(1_000_000)), fmt.Sprintf("tvo-keep-%v", keep)
			run := func(args ...string) {
				t.Helper()
				_, err := runTool(helm, append(args, "--kubeconfig", admin, "--namespace", ns)...)
				g.Expect(err).NotTo(HaveOccurred())
			}
			key := types.NamespacedName{Namespace: ns, Name: release + "-twilio-voice-operator-stream-token"}
			run("install", release, "test/manifests/testdata/generated-key-chart", "--create-namespace")
			var before corev1.Secret
			g.Expect(k8s.Get(ctx, key, &before)).To(Succeed())
			if keep {
				patch := client.MergeFrom(before.DeepCopy())
				before.Annotations = map[string]string{"helm.sh/resource-policy": "keep"}
				g.Expect(k8s.Patch(ctx, &before, patch)).To(Succeed())
			}
			run("upgrade", release, chartDir, "--set", "publicURL="+publicURL)
			t.Cleanup(func() { run("uninstall", release) })
			var after corev1.Secret
			err := k8s.Get(ctx, key, &after)
			if !keep {
				g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "helm deletes what the chart no longer renders: %v", err)
				return
			}
			g.Expect(err).NotTo(HaveOccurred(), "the annotated Secret survives the upgrade")
			g.Expect(after.Data).To(Equal(before.Data))
			g.Expect(controllers.EnsureStreamTokenSecret(ctx, impersonate(t, ns, release+"-twilio-voice-operator-manager"), key)).To(Succeed())
			g.Expect(k8s.Get(ctx, key, &after)).To(Succeed())
			g.Expect(after.Data).To(Equal(before.Data), "the manager keeps the key it finds")
		})
	}
}

// impersonate returns a client of the envtest API server acting as the
// ServiceAccount namespace/name, so that the chart's RBAC decides.
func impersonate(t *testing.T, namespace, name string) client.Client {
	t.Helper()
	cfg := rest.CopyConfig(restCfg)
	cfg.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + namespace + ":" + name,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"},
	}
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}
