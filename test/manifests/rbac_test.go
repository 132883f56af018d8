package manifests

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

const twilioGroup = "twilio.loquent.io"

var readOnlyVerbs = []string{"get", "list", "watch"}

// grant is one role bound to a ServiceAccount.
type grant struct {
	kind, name string // ClusterRole or Role
	namespace  string // of the binding; "" for a ClusterRoleBinding
	rules      []rbacv1.PolicyRule
}

// grantsTo returns every role bound to the ServiceAccount, with its rules.
func grantsTo(t *testing.T, objs []*unstructured.Unstructured, sa, saNamespace string) []grant {
	t.Helper()
	roles := map[string][]rbacv1.PolicyRule{} // kind/namespace/name -> rules
	for _, o := range filter(objs, "ClusterRole", "") {
		roles["ClusterRole//"+o.GetName()] = convert[rbacv1.ClusterRole](t, o).Rules
	}
	for _, o := range filter(objs, "Role", "") {
		roles["Role/"+o.GetNamespace()+"/"+o.GetName()] = convert[rbacv1.Role](t, o).Rules
	}
	var out []grant
	for _, kind := range []string{"ClusterRoleBinding", "RoleBinding"} {
		for _, o := range filter(objs, kind, "") {
			b := convert[rbacv1.RoleBinding](t, o) // same shape as a ClusterRoleBinding
			bound := slices.ContainsFunc(b.Subjects, func(s rbacv1.Subject) bool {
				return s.Kind == rbacv1.ServiceAccountKind && s.Name == sa && s.Namespace == saNamespace
			})
			if !bound {
				continue
			}
			key := b.RoleRef.Kind + "//" + b.RoleRef.Name
			if b.RoleRef.Kind == "Role" {
				key = "Role/" + b.Namespace + "/" + b.RoleRef.Name
			}
			rules, ok := roles[key]
			if !ok {
				t.Fatalf("%s %s binds %s, which is not in the render", kind, o.GetName(), key)
			}
			out = append(out, grant{kind: b.RoleRef.Kind, name: b.RoleRef.Name, namespace: b.Namespace, rules: rules})
		}
	}
	return out
}

// allows reports whether rules allow verb on group/resource.
func allows(rules []rbacv1.PolicyRule, group, resource, verb string) bool {
	for _, r := range rules {
		if slices.Contains(r.APIGroups, group) && slices.Contains(r.Resources, resource) &&
			(slices.Contains(r.Verbs, verb) || slices.Contains(r.Verbs, "*")) {
			return true
		}
	}
	return false
}

// allowsNamed reports whether rules allow verb on the core resource named
// name (a rule without resourceNames allows every name).
func allowsNamed(rules []rbacv1.PolicyRule, resource, name, verb string) bool {
	for _, r := range rules {
		if slices.Contains(r.APIGroups, "") && slices.Contains(r.Resources, resource) &&
			(slices.Contains(r.Verbs, verb) || slices.Contains(r.Verbs, "*")) &&
			(len(r.ResourceNames) == 0 || slices.Contains(r.ResourceNames, name)) {
			return true
		}
	}
	return false
}

// namespacedRules returns the rules of every Role bound to the component's
// ServiceAccount in namespace.
func namespacedRules(t *testing.T, objs []*unstructured.Unstructured, component, namespace string) []rbacv1.PolicyRule {
	t.Helper()
	sa, saNS := serviceAccountOf(t, objs, component)
	var rules []rbacv1.PolicyRule
	for _, gr := range grantsTo(t, objs, sa, saNS) {
		if gr.kind == "Role" && gr.namespace == namespace {
			rules = append(rules, gr.rules...)
		}
	}
	return rules
}

func verbsOf(rules []rbacv1.PolicyRule) []string {
	var verbs []string
	for _, r := range rules {
		verbs = append(verbs, r.Verbs...)
	}
	return verbs
}

// serviceAccountOf returns the ServiceAccount and namespace the component's pods run as.
func serviceAccountOf(t *testing.T, objs []*unstructured.Unstructured, component string) (string, string) {
	t.Helper()
	deps := filter(objs, "Deployment", component)
	if len(deps) != 1 {
		t.Fatalf("want one %s Deployment, found %d", component, len(deps))
	}
	return podSpec(t, deps[0]).ServiceAccountName, deps[0].GetNamespace()
}

// TestWebhookServerIsReadOnly: the internet-facing webhook server can read
// numbers and, by name in its own namespace, the Secret the manager
// publishes verified tokens in and (the chart) the stream-token Secret; it
// changes nothing and reads no other Secret.
func TestWebhookServerIsReadOnly(t *testing.T) {
	for _, r := range renders(t) {
		t.Run(r.name, func(t *testing.T) {
			g := NewWithT(t)
			sa, ns := serviceAccountOf(t, r.objs, "webhook-server")
			grants := grantsTo(t, r.objs, sa, ns)
			g.Expect(grants).NotTo(BeEmpty())
			var rules []rbacv1.PolicyRule
			for _, gr := range grants {
				g.Expect(verbsOf(gr.rules)).To(HaveEach(BeElementOf(readOnlyVerbs)), "%s %s grants a write verb", gr.kind, gr.name)
				rules = append(rules, gr.rules...)
			}
			for _, verb := range readOnlyVerbs {
				g.Expect(allows(rules, twilioGroup, "twiliophonenumbers", verb)).To(BeTrue())
			}
			for _, gr := range grants {
				for _, rule := range gr.rules {
					if !slices.Contains(rule.Resources, "secrets") {
						continue
					}
					g.Expect(gr.kind).To(Equal("Role"), "no cluster-wide read on Secrets")
					g.Expect(gr.namespace).To(Equal(ns))
					g.Expect(rule.ResourceNames).To(HaveLen(1), "one Secret, by name")
					if strings.HasSuffix(rule.ResourceNames[0], "webhook-credentials") {
						continue // watched: get, list and watch
					}
					g.Expect(r.name).NotTo(Equal("config/default"), "config/default mounts the stream-token key")
					g.Expect(expandedArgs(t, r.objs, "webhook-server")).To(ContainElement("--stream-token-secret="+ns+"/"+rule.ResourceNames[0]),
						"the only other Secret is the stream-token one")
					g.Expect(rule.Verbs).To(Equal([]string{"get"}), "the stream-token Secret is only read")
				}
			}
		})
	}
}

// TestWebhookServerGrantFollowsNamespaces: serving some namespaces only, the
// chart grants the reads there and nowhere else.
func TestWebhookServerGrantFollowsNamespaces(t *testing.T) {
	g := NewWithT(t)
	r := renders(t)[2] // all options: namespaces voice and voice-staging
	sa, ns := serviceAccountOf(t, r.objs, "webhook-server")
	var where []string
	for _, gr := range grantsTo(t, r.objs, sa, ns) {
		if allows(gr.rules, twilioGroup, "twiliophonenumbers", "list") {
			where = append(where, gr.namespace)
		}
	}
	g.Expect(where).To(ConsistOf("voice", "voice-staging"))
}

// TestManagerRBAC: the manager gets exactly the generated ClusterRole
// (config/rbac/role.yaml, from the +kubebuilder:rbac markers) and, in its own
// namespace, what leader election needs, its two Secrets (published
// credentials, guard key) by name, and with the chart (unless
// existingSecret) a read of the stream-token Secret it creates.
func TestManagerRBAC(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(root, "config", "rbac", "role.yaml"))
	NewWithT(t).Expect(err).NotTo(HaveOccurred())
	generated := decode(t, data)
	NewWithT(t).Expect(generated).To(HaveLen(1))
	want := convert[rbacv1.ClusterRole](t, generated[0]).Rules

	for _, r := range renders(t) {
		t.Run(r.name, func(t *testing.T) {
			g := NewWithT(t)
			sa, ns := serviceAccountOf(t, r.objs, "manager")
			grants := grantsTo(t, r.objs, sa, ns)
			g.Expect(grants).To(HaveLen(3))
			for _, gr := range grants {
				switch {
				case gr.kind == "ClusterRole":
					g.Expect(gr.rules).To(Equal(want), "the manager's ClusterRole must be the generated one")
				case allows(gr.rules, "coordination.k8s.io", "leases", "get"):
					g.Expect(gr.namespace).To(Equal(ns), "leader election happens in the manager's namespace")
					for _, verb := range []string{"get", "create", "update"} {
						g.Expect(allows(gr.rules, "coordination.k8s.io", "leases", verb)).To(BeTrue())
					}
					g.Expect(verbsOf(gr.rules)).NotTo(ContainElement("delete"))
				default:
					g.Expect(gr.namespace).To(Equal(ns), "the manager's Secrets are in its own namespace")
					var streamToken []string
					for _, a := range expandedArgs(t, r.objs, "manager") {
						if v, ok := strings.CutPrefix(a, "--stream-token-secret="); ok {
							streamToken = append(streamToken, v)
						}
					}
					own := []string{namedArg(t, r.objs, "--webhook-credentials-secret"), namedArg(t, r.objs, "--guard-key-secret")}
					switch r.name {
					case "config/default", "chart (defaults)":
						g.Expect(streamToken).To(HaveLen(1), "the manager creates the stream-token Secret")
					case "chart (all options)":
						g.Expect(streamToken).To(BeEmpty(), "webhookServer.streamToken.existingSecret is the user's")
					}
					if len(streamToken) > 0 {
						g.Expect(streamToken).To(ConsistOf(ns+"/"+namedArg(t, r.objs, "--stream-token-secret")), "in the manager's namespace")
						g.Expect(allowsNamed(gr.rules, "secrets", namedArg(t, r.objs, "--stream-token-secret"), "get")).To(BeTrue(), "reads the stream-token Secret")
						own = append(own, namedArg(t, r.objs, "--stream-token-secret"))
					}
					for _, rule := range gr.rules {
						g.Expect(rule.APIGroups).To(Equal([]string{""}))
						g.Expect(rule.Resources).To(Equal([]string{"secrets"}))
						g.Expect(rule.Verbs).To(HaveEach(BeElementOf("create", "get", "update", "patch")))
						if slices.Contains(rule.Verbs, "create") {
							g.Expect(rule.Verbs).To(Equal([]string{"create"}), "create cannot be limited by name: it comes alone")
						} else {
							g.Expect(rule.ResourceNames).To(HaveEach(BeElementOf(own)), "reads and writes only its own Secrets, by name")
						}
					}
					for _, name := range own[:2] {
						for _, verb := range []string{"get", "update", "patch"} {
							g.Expect(allowsNamed(gr.rules, "secrets", name, verb)).To(BeTrue(), "%s %s", verb, name)
						}
					}
					if r.name == "chart (defaults)" {
						for _, verb := range []string{"update", "patch"} {
							g.Expect(allowsNamed(gr.rules, "secrets", own[2], verb)).To(BeFalse(), "the chart's manager only reads the stream-token Secret it created (%s)", verb)
						}
					}
				}
			}
		})
	}
}

// namedArg returns the name part of the manager's namespace/name flag, or,
// when the flag is not passed, the manager's default Secret name for it.
func namedArg(t *testing.T, objs []*unstructured.Unstructured, flag string) string {
	t.Helper()
	for _, a := range expandedArgs(t, objs, "manager") {
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			_, name, _ := strings.Cut(v, "/")
			return name
		}
	}
	defaults := map[string]string{
		"--webhook-credentials-secret": "twilio-voice-operator-webhook-credentials",
		"--guard-key-secret":           "twilio-voice-operator-guard-key",
	}
	if name, ok := defaults[flag]; ok {
		return name
	}
	t.Fatalf("the manager has no %s", flag)
	return ""
}

// TestUserRoles: the editor role is the original system's "Update
// permission" and lands in the built-in edit and admin roles; the viewer
// role only reads and lands in view.
func TestUserRoles(t *testing.T) {
	for _, r := range renders(t) {
		t.Run(r.name, func(t *testing.T) {
			g := NewWithT(t)
			editor := aggregatedTo(t, r.objs, "edit")
			g.Expect(editor.Labels).To(HaveKeyWithValue("rbac.authorization.k8s.io/aggregate-to-admin", "true"))
			// TwilioAccounts (credentials, cost) are the admin's unless the
			// chart's rbac.editorsManageAccounts widens the editor role (the
			// all-options values do).
			editorsManageAccounts := r.name == "chart (all options)"
			var admin []rbacv1.PolicyRule
			for _, o := range filter(r.objs, "ClusterRole", "") {
				if o.GetLabels()["rbac.authorization.k8s.io/aggregate-to-admin"] == "true" {
					admin = append(admin, convert[rbacv1.ClusterRole](t, o).Rules...)
				}
			}
			for _, verb := range []string{"get", "list", "watch", "create", "update", "patch", "delete"} {
				g.Expect(allows(editor.Rules, twilioGroup, "twiliophonenumbers", verb)).To(BeTrue(), verb)
				g.Expect(allows(editor.Rules, twilioGroup, "twilioaccounts", verb)).To(Equal(editorsManageAccounts), verb)
				g.Expect(allows(admin, twilioGroup, "twilioaccounts", verb)).To(BeTrue(), verb)
			}
			// Status is the operator's word; people only read it.
			g.Expect(allows(editor.Rules, twilioGroup, "twiliophonenumbers/status", "update")).To(BeFalse())
			g.Expect(allows(editor.Rules, twilioGroup, "twiliophonenumbers/status", "get")).To(BeTrue())

			viewer := aggregatedTo(t, r.objs, "view")
			g.Expect(verbsOf(viewer.Rules)).To(HaveEach(BeElementOf(readOnlyVerbs)))
			for _, verb := range readOnlyVerbs {
				g.Expect(allows(viewer.Rules, twilioGroup, "twiliophonenumbers", verb)).To(BeTrue())
				g.Expect(allows(viewer.Rules, twilioGroup, "twilioaccounts", verb)).To(BeTrue())
			}
			g.Expect(allows(viewer.Rules, "", "secrets", "get")).To(BeFalse())
		})
	}
}

// aggregatedTo returns the one ClusterRole labelled to aggregate into the
// built-in role.
func aggregatedTo(t *testing.T, objs []*unstructured.Unstructured, builtin string) *rbacv1.ClusterRole {
	t.Helper()
	var found []*rbacv1.ClusterRole
	for _, o := range filter(objs, "ClusterRole", "") {
		if o.GetLabels()["rbac.authorization.k8s.io/aggregate-to-"+builtin] == "true" {
			found = append(found, convert[rbacv1.ClusterRole](t, o))
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one ClusterRole aggregating to %s, found %d", builtin, len(found))
	}
	return found[0]
}
