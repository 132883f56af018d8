package manifests

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/loquent/twilio-voice-operator/webhookserver"
)

var components = []string{"manager", "webhook-server"}

func convert[T any](t *testing.T, o *unstructured.Unstructured) *T {
	t.Helper()
	var out T
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &out); err != nil {
		t.Fatalf("convert %s %s: %v", o.GetKind(), o.GetName(), err)
	}
	return &out
}

func podSpec(t *testing.T, dep *unstructured.Unstructured) corev1.PodSpec {
	t.Helper()
	return convert[appsv1.Deployment](t, dep).Spec.Template.Spec
}

func deployment(t *testing.T, objs []*unstructured.Unstructured, component string) *appsv1.Deployment {
	t.Helper()
	deps := filter(objs, "Deployment", component)
	if len(deps) != 1 {
		t.Fatalf("want one %s Deployment, found %d", component, len(deps))
	}
	return convert[appsv1.Deployment](t, deps[0])
}

// TestDeploymentsAreHardened: both pods meet the restricted Pod Security
// Standard, have resources and probe the ports the binaries serve probes on.
func TestDeploymentsAreHardened(t *testing.T) {
	for _, r := range renders(t) {
		for _, component := range components {
			t.Run(r.name+"/"+component, func(t *testing.T) {
				g := NewWithT(t)
				spec := deployment(t, r.objs, component).Spec.Template.Spec
				g.Expect(spec.SecurityContext).NotTo(BeNil())
				g.Expect(spec.SecurityContext.RunAsNonRoot).To(HaveValue(BeTrue()))
				g.Expect(spec.SecurityContext.SeccompProfile).To(HaveValue(HaveField("Type", corev1.SeccompProfileTypeRuntimeDefault)))
				g.Expect(spec.HostNetwork || spec.HostPID || spec.HostIPC).To(BeFalse())
				g.Expect(spec.Containers).To(HaveLen(1))
				c := spec.Containers[0]
				sc := c.SecurityContext
				g.Expect(sc).NotTo(BeNil())
				g.Expect(sc.AllowPrivilegeEscalation).To(HaveValue(BeFalse()))
				g.Expect(sc.ReadOnlyRootFilesystem).To(HaveValue(BeTrue()))
				g.Expect(sc.Privileged).To(Or(BeNil(), HaveValue(BeFalse())))
				g.Expect(sc.Capabilities).To(HaveValue(HaveField("Drop", ContainElement(corev1.Capability("ALL")))))
				g.Expect(sc.Capabilities.Add).To(BeEmpty())

				g.Expect(c.Resources.Requests).To(HaveKey(corev1.ResourceCPU))
				g.Expect(c.Resources.Requests).To(HaveKey(corev1.ResourceMemory))
				g.Expect(c.Resources.Limits).To(HaveKey(corev1.ResourceMemory))

				g.Expect(c.Args).To(ContainElement("--health-probe-bind-address=:8081"))
				g.Expect(c.Ports).To(ContainElement(And(HaveField("Name", "probes"), HaveField("ContainerPort", int32(8081)))))
				for path, probe := range map[string]*corev1.Probe{"/healthz": c.LivenessProbe, "/readyz": c.ReadinessProbe} {
					g.Expect(probe).NotTo(BeNil(), path)
					g.Expect(probe.HTTPGet).To(HaveValue(And(HaveField("Path", path), HaveField("Port", intstr.FromString("probes")))))
				}
				if component == "manager" {
					g.Expect(c.Args).To(ContainElement("--leader-elect"))
				}
			})
		}
	}
}

// TestWebhookServerDrains: the kubelet waits for live calls to drain
// (--shutdown-grace-period) after the preStop pause before killing the pod.
func TestWebhookServerDrains(t *testing.T) {
	for _, r := range renders(t) {
		t.Run(r.name, func(t *testing.T) {
			g := NewWithT(t)
			spec := deployment(t, r.objs, "webhook-server").Spec.Template.Spec
			c := spec.Containers[0]
			var grace time.Duration
			for _, a := range c.Args {
				if v, ok := strings.CutPrefix(a, "--shutdown-grace-period="); ok {
					var err error
					grace, err = time.ParseDuration(v)
					g.Expect(err).NotTo(HaveOccurred())
				}
			}
			g.Expect(grace).To(BeNumerically(">", 0), "--shutdown-grace-period is set")
			pause := time.Duration(0)
			if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
				pause = time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
			}
			g.Expect(spec.TerminationGracePeriodSeconds).NotTo(BeNil())
			g.Expect(time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second).To(BeNumerically(">", grace+pause))
		})
	}
}

var (
	managerOnce sync.Once
	managerBin  string
	managerErr  error
)

// TestFlagsAreAccepted runs each Deployment's arguments, with its
// environment expanded as the kubelet does, through the real flag parsers,
// so a renamed flag breaks this test rather than a rollout. config/default's
// placeholder public URL is refused until replaced, by design; the rest of
// its flags are checked with the test-only --allow-reserved-public-url.
func TestFlagsAreAccepted(t *testing.T) {
	for _, r := range renders(t) {
		url := publicURL
		if r.name == "config/default" {
			url = placeholderURL
		}
		t.Run(r.name+"/webhook-server", func(t *testing.T) {
			g := NewWithT(t)
			args := expandedArgs(t, r.objs, "webhook-server")
			if r.name == "config/default" {
				_, err := webhookserver.ParseFlags(args)
				g.Expect(err).To(MatchError(ContainSubstring("reserved example host")), "the placeholder is refused")
				args = append(args, "--allow-reserved-public-url")
			}
			cfg, err := webhookserver.ParseFlags(args)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(cfg.PublicURL).To(Equal(url))
		})
		t.Run(r.name+"/manager", func(t *testing.T) {
			g := NewWithT(t)
			args := expandedArgs(t, r.objs, "manager")
			g.Expect(args).To(ContainElement("--public-url=" + url))
			// The manager's flags live in package main: run the binary. -h
			// last makes it stop after parsing the flags before it, exiting 0
			// only if every one of them exists and has a well-formed value.
			managerOnce.Do(func() {
				managerBin = filepath.Join(scratch, "manager")
				build := []string{"build", "-o", managerBin}
				if raceEnabled {
					build = append(build, "-race")
				}
				_, managerErr = runTool("go", append(build, "./cmd/manager")...)
			})
			g.Expect(managerErr).NotTo(HaveOccurred())
			out, err := exec.Command(managerBin, append(args, "-h")...).CombinedOutput()
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				t.Fatalf("manager refused the Deployment's flags (exit %d):\n%s", exit.ExitCode(), out)
			}
			g.Expect(err).NotTo(HaveOccurred())
		})
	}
}

// expandedArgs returns the component's container args with $(VAR)
// references replaced from its env, reading ConfigMaps from the render.
func expandedArgs(t *testing.T, objs []*unstructured.Unstructured, component string) []string {
	t.Helper()
	c := deployment(t, objs, component).Spec.Template.Spec.Containers[0]
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.ConfigMapKeyRef != nil:
			ref := e.ValueFrom.ConfigMapKeyRef
			found := false
			for _, o := range filter(objs, "ConfigMap", "") {
				if o.GetName() == ref.Name {
					env[e.Name], found = convert[corev1.ConfigMap](t, o).Data[ref.Key], true
				}
			}
			if !found {
				t.Fatalf("env %s refers to ConfigMap %s, which is not in the render", e.Name, ref.Name)
			}
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace":
			env[e.Name] = deployment(t, objs, component).Namespace
		default:
			t.Fatalf("env %s: unsupported source", e.Name)
		}
	}
	args := make([]string, len(c.Args))
	for i, a := range c.Args {
		for name, v := range env {
			a = strings.ReplaceAll(a, "$("+name+")", v)
		}
		if strings.Contains(a, "$(") {
			t.Fatalf("argument %q refers to an undefined variable", a)
		}
		args[i] = a
	}
	return args
}

// TestNetworkPolicies: each pod has a policy; the webhook server takes
// connections on its webhook port only (plus metrics when asked for), the
// manager takes none; both can reach DNS and HTTPS.
func TestNetworkPolicies(t *testing.T) {
	for _, r := range renders(t) {
		for _, component := range components {
			t.Run(r.name+"/"+component, func(t *testing.T) {
				g := NewWithT(t)
				pods := labels.Set(deployment(t, r.objs, component).Spec.Template.Labels)
				var policies []*networkingv1.NetworkPolicy
				for _, o := range filter(r.objs, "NetworkPolicy", "") {
					np := convert[networkingv1.NetworkPolicy](t, o)
					sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
					g.Expect(err).NotTo(HaveOccurred())
					if sel.Matches(pods) {
						policies = append(policies, np)
					}
				}
				g.Expect(policies).To(HaveLen(1), "one NetworkPolicy selects the %s pods", component)
				np := policies[0]
				g.Expect(np.Spec.PolicyTypes).To(ConsistOf(networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress))

				allowedIn := []string{}
				if component == "webhook-server" {
					allowedIn = append(allowedIn, "http")
				}
				if r.name == "chart (all options)" {
					allowedIn = append(allowedIn, "metrics")
				}
				var in []string
				for _, rule := range np.Spec.Ingress {
					g.Expect(rule.Ports).NotTo(BeEmpty(), "an ingress rule without ports opens every port")
					for _, p := range rule.Ports {
						in = append(in, p.Port.String())
					}
				}
				g.Expect(in).To(ConsistOf(allowedIn))

				var out []string
				for _, rule := range np.Spec.Egress {
					for _, p := range rule.Ports {
						protocol := corev1.ProtocolTCP // the API's default
						if p.Protocol != nil {
							protocol = *p.Protocol
						}
						out = append(out, string(protocol)+"/"+p.Port.String())
					}
				}
				g.Expect(out).To(ContainElements("UDP/53", "TCP/53", "TCP/443"))
			})
		}
	}
}

// TestIngress: the example (kept out of the default build) and the chart's
// Ingress carry WebSocket media streams for a whole call, over TLS, to the
// webhook server's Service.
func TestIngress(t *testing.T) {
	for _, r := range renders(t) {
		if r.name != "chart (all options)" {
			NewWithT(t).Expect(filter(r.objs, "Ingress", "")).To(BeEmpty(), "%s has no Ingress by default", r.name)
		}
	}
	example, err := os.ReadFile(filepath.Join(root, "config", "webhookserver", "ingress-example.yaml"))
	NewWithT(t).Expect(err).NotTo(HaveOccurred())
	exampleService, err := os.ReadFile(filepath.Join(root, "config", "webhookserver", "service.yaml"))
	NewWithT(t).Expect(err).NotTo(HaveOccurred())
	cases := map[string][]*unstructured.Unstructured{
		"config/webhookserver/ingress-example.yaml": append(decode(t, example), decode(t, exampleService)...),
		"chart (all options)":                       renders(t)[2].objs,
	}
	for name, objs := range cases {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			ingresses := filter(objs, "Ingress", "")
			g.Expect(ingresses).To(HaveLen(1))
			ing := convert[networkingv1.Ingress](t, ingresses[0])
			for _, a := range []string{"proxy-read-timeout", "proxy-send-timeout"} {
				v, err := strconv.Atoi(ing.Annotations["nginx.ingress.kubernetes.io/"+a])
				g.Expect(err).NotTo(HaveOccurred(), a)
				g.Expect(v).To(BeNumerically(">=", 3600), "%s must outlast a call", a)
			}
			g.Expect(ing.Spec.Rules).To(HaveLen(1))
			rule := ing.Spec.Rules[0]
			wantHost := "voice.example.com" // the example's placeholder
			if name == "chart (all options)" {
				wantHost = strings.TrimPrefix(publicURL, "https://")
			}
			g.Expect(rule.Host).To(Equal(wantHost))
			g.Expect(ing.Spec.TLS).To(ConsistOf(HaveField("Hosts", ConsistOf(rule.Host))))
			g.Expect(rule.HTTP.Paths).To(HaveLen(1))
			path := rule.HTTP.Paths[0]
			g.Expect(path.Path).To(Equal("/twilio/"))
			g.Expect(path.PathType).To(HaveValue(Equal(networkingv1.PathTypePrefix)))
			services := filter(objs, "Service", "webhook-server")
			g.Expect(services).To(HaveLen(1))
			g.Expect(path.Backend.Service.Name).To(Equal(services[0].GetName()))
			svc := convert[corev1.Service](t, services[0])
			g.Expect(svc.Spec.Ports).To(ContainElement(HaveField("Name", path.Backend.Service.Port.Name)))
		})
	}
}

// TestWebhookServerScaling: the PodDisruptionBudget and the autoscaler act
// on the webhook server, and the Deployment leaves replicas to the autoscaler.
func TestWebhookServerScaling(t *testing.T) {
	for _, r := range renders(t) {
		t.Run(r.name, func(t *testing.T) {
			g := NewWithT(t)
			dep := deployment(t, r.objs, "webhook-server")
			pdbs := filter(r.objs, "PodDisruptionBudget", "")
			g.Expect(pdbs).To(HaveLen(1))
			pdb := convert[policyv1.PodDisruptionBudget](t, pdbs[0])
			sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(sel.Matches(labels.Set(dep.Spec.Template.Labels))).To(BeTrue())
			g.Expect(pdb.Spec.MaxUnavailable).NotTo(BeNil(), "maxUnavailable, so that one replica can still be drained")

			hpas := filter(r.objs, "HorizontalPodAutoscaler", "")
			if r.name != "chart (all options)" {
				g.Expect(hpas).To(BeEmpty())
				g.Expect(dep.Spec.Replicas).To(HaveValue(BeNumerically(">=", 2)))
				return
			}
			g.Expect(hpas).To(HaveLen(1))
			hpa := convert[autoscalingv2.HorizontalPodAutoscaler](t, hpas[0])
			g.Expect(hpa.Spec.ScaleTargetRef.Kind).To(Equal("Deployment"))
			g.Expect(hpa.Spec.ScaleTargetRef.Name).To(Equal(dep.Name))
			g.Expect(dep.Spec.Replicas).To(BeNil(), "the autoscaler owns replicas")
		})
	}
}

// TestStreamTokenKey: every webhook server replica reads the same key. The
// chart renders none (a key generated at render time would change on every
// render): by default the manager creates the Secret on its first start and
// never changes it, and the webhook server reads it through the API, waiting
// until it exists; with webhookServer.streamToken.existingSecret the user owns
// it and the manager is not asked to create it. config/default mounts the
// Secret its manager creates.
func TestStreamTokenKey(t *testing.T) {
	for _, r := range renders(t) {
		t.Run(r.name, func(t *testing.T) {
			g := NewWithT(t)
			g.Expect(filter(r.objs, "Secret", "")).To(BeEmpty(), "no render holds a key")
			spec := deployment(t, r.objs, "webhook-server").Spec.Template.Spec
			webhookArgs, managerArgs := expandedArgs(t, r.objs, "webhook-server"), expandedArgs(t, r.objs, "manager")
			if r.name == "config/default" { // created by the manager, mounted by the webhook server
				i := slices.IndexFunc(spec.Volumes, func(v corev1.Volume) bool { return v.Secret != nil })
				g.Expect(i).To(BeNumerically(">=", 0), "the key is a mounted Secret")
				g.Expect(spec.Volumes[i].Secret.SecretName).To(Equal("twilio-voice-operator-stream-token"))
				mount := slices.IndexFunc(spec.Containers[0].VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == spec.Volumes[i].Name })
				g.Expect(mount).To(BeNumerically(">=", 0))
				g.Expect(webhookArgs).To(ContainElement("--stream-token-key-file=" + spec.Containers[0].VolumeMounts[mount].MountPath + "/key"))
				ns := deployment(t, r.objs, "manager").Namespace
				g.Expect(managerArgs).To(ContainElement("--stream-token-secret=" + ns + "/twilio-voice-operator-stream-token"))
				return
			}
			ns := deployment(t, r.objs, "webhook-server").Namespace
			name := "tvo-twilio-voice-operator-stream-token"
			if r.name == "chart (all options)" {
				name = "voice-stream-token"
			}
			ref := "--stream-token-secret=" + ns + "/" + name
			g.Expect(webhookArgs).To(ContainElement(ref))
			g.Expect(spec.Volumes).To(BeEmpty(), "read through the API, not mounted: a missing Secret must not keep the pod from starting")
			webhookRules := namespacedRules(t, r.objs, "webhook-server", ns)
			g.Expect(allowsNamed(webhookRules, "secrets", name, "get")).To(BeTrue(), "the webhook server may read %s", name)
			managerRules := namespacedRules(t, r.objs, "manager", ns)
			if r.name == "chart (all options)" { // existingSecret: the user's
				g.Expect(managerArgs).NotTo(ContainElement(HavePrefix("--stream-token-secret")))
				g.Expect(allowsNamed(managerRules, "secrets", name, "get")).To(BeFalse(), "the manager has no business with the user's Secret")
				return
			}
			g.Expect(managerArgs).To(ContainElement(ref), "the manager creates the Secret the webhook server reads")
			g.Expect(allowsNamed(managerRules, "secrets", name, "get")).To(BeTrue())
			g.Expect(allows(managerRules, "", "secrets", "create")).To(BeTrue())
			for _, verb := range []string{"update", "patch", "delete"} {
				g.Expect(allowsNamed(managerRules, "secrets", name, verb)).To(BeFalse(), "the manager never changes an existing key (%s)", verb)
			}
		})
	}
}
