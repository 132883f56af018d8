package webhookserver

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
	"github.com/loquent/twilio-voice-operator/internal/credentials"
	"github.com/loquent/twilio-voice-operator/internal/sampleagent"
	"github.com/loquent/twilio-voice-operator/internal/twiliosim/callsim"
)

// TestAgentGetsItsCredentialsAndQuery: an agent URL with a query string, and
// the agent's credentials from the number's headers Secret (as the manager
// publishes them), reach an agent that refuses handshakes without them.
func TestAgentGetsItsCredentialsAndQuery(t *testing.T) {
	g := NewWithT(t)
	opts := sampleagent.Options{}
	opts.RequireHeader.Name, opts.RequireHeader.Value = "Authorization", "Bearer agent-s3cret"
	agent := sampleagent.New(opts)
	handler, err := agent.Handler("/media")
	g.Expect(err).NotTo(HaveOccurred())
	agentSrv := httptest.NewServer(handler)
	t.Cleanup(agentSrv.Close)

	ns := newNamespace(t)
	acct := createAccount(t, ns, "main")
	createNumber(t, ns, "support", "+14155550230", "main", "ws://"+agentSrv.Listener.Addr().String()+"/media?tenant=acme&lang=en",
		func(n *twiliov1.TwilioPhoneNumber) {
			n.Spec.Agent.HeadersSecretRef = &twiliov1.SecretReference{Name: "agent-creds"}
		})
	h := startServer(t, ns)
	call := func() callsim.Result {
		res, err := callsim.Place(t.Context(), callsim.Call{
			VoiceURL: testPublicURL + VoicePath, AuthToken: acct.token, AccountSID: acct.sid,
			From: "+15550001", To: "+14155550230", MediaFrames: 20, FramePeriod: 2 * time.Millisecond,
			RewriteURL: func(u *url.URL) *url.URL {
				u.Host, u.Scheme = h.addr, map[string]string{"https": "http", "wss": "ws"}[u.Scheme]
				return u
			},
		})
		g.Expect(err).NotTo(HaveOccurred())
		return res
	}

	// Not published yet (no labelled Secret): the agent refuses the handshake.
	res := call()
	g.Expect(res.ServerClosed).To(BeTrue())
	g.Expect(agent.Stats().Unauthorized).To(BeNumerically(">=", 1))
	g.Expect(agent.Stats().Calls).To(BeZero())

	editPublished(t, ns, func(p *credentials.Published) {
		p.AgentHeaders = append(p.AgentHeaders, credentials.AgentHeaders{Namespace: ns, Secret: "agent-creds",
			Headers: map[string]string{"Authorization": "Bearer agent-s3cret"}})
	})
	g.Eventually(func() http.Header { r, _ := h.routing.Lookup("+14155550230"); return r.AgentHeaders }).
		Should(HaveKeyWithValue("Authorization", []string{"Bearer agent-s3cret"}))
	res = call()
	g.Expect(res.StreamHandshakeStatus).To(Equal(http.StatusSwitchingProtocols))
	g.Expect(res.ReceivedMedia).To(BeNumerically(">", 0), "the agent answered")
	g.Eventually(agent.Stats).Should(And(HaveField("Calls", int64(1)), HaveField("LastQuery", "tenant=acme&lang=en")))
}
