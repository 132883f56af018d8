package manifests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/loquent/twilio-voice-operator/webhookserver"
)

// TestAgentEgressFollowsAllowList: webhookServer.agentEgress.allowedDestinations
// becomes the webhook server's --agent-allowed-destinations, and its
// NetworkPolicy lets agent traffic out to the same IPs and CIDRs; unset, the
// policy keeps agentPeers as before. Host names cannot be written in a
// NetworkPolicy, so listing one keeps agentPeers too.
func TestAgentEgressFollowsAllowList(t *testing.T) {
	tests := []struct {
		name       string
		values     string
		wantArg    string // "" means no --agent-allowed-destinations
		wantBlocks []string
		wantPeers  bool
	}{
		{"unset", "", "", nil, true},
		{"CIDRs and IPs", `webhookServer: {agentEgress: {allowedDestinations: ["10.8.0.0/16", "192.0.2.7", "2001:db8::7"]}}`,
			"10.8.0.0/16,192.0.2.7,2001:db8::7", []string{"10.8.0.0/16", "192.0.2.7/32", "2001:db8::7/128"}, false},
		{"names and CIDRs", `webhookServer: {agentEgress: {allowedDestinations: ["*.agents.svc.cluster.local", "10.8.0.0/16"]}}`,
			"*.agents.svc.cluster.local,10.8.0.0/16", []string{"10.8.0.0/16"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			file := filepath.Join(t.TempDir(), "values.yaml")
			g.Expect(os.WriteFile(file, []byte("publicURL: "+publicURL+"\n"+tt.values+"\n"), 0o600)).To(Succeed())
			out, err := runTool(helm, helmTemplateArgs("tvo-egress", "--values", file)...)
			g.Expect(err).NotTo(HaveOccurred())
			objs := decode(t, out)

			args := expandedArgs(t, objs, "webhook-server")
			cfg, err := webhookserver.ParseFlags(args)
			g.Expect(err).NotTo(HaveOccurred())
			var arg string
			for _, a := range args {
				if v, ok := strings.CutPrefix(a, "--agent-allowed-destinations="); ok {
					arg = v
				}
			}
			g.Expect(arg).To(Equal(tt.wantArg))
			g.Expect(strings.Join(cfg.AgentAllowedDestinations, ",")).To(Equal(tt.wantArg))

			var np *networkingv1.NetworkPolicy
			for _, o := range filter(objs, "NetworkPolicy", "webhook-server") {
				np = convert[networkingv1.NetworkPolicy](t, o)
			}
			g.Expect(np).NotTo(BeNil())
			var blocks []string
			peers := false
			for _, rule := range np.Spec.Egress {
				for _, to := range rule.To {
					if to.IPBlock != nil {
						blocks = append(blocks, to.IPBlock.CIDR)
					}
					if to.NamespaceSelector != nil || to.PodSelector != nil {
						peers = true
					}
				}
			}
			if tt.wantBlocks == nil {
				g.Expect(blocks).To(BeEmpty())
			} else {
				g.Expect(blocks).To(Equal(tt.wantBlocks))
			}
			g.Expect(peers).To(Equal(tt.wantPeers), "agentPeers in the policy")
		})
	}
}
