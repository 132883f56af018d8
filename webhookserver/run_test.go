package webhookserver

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().String()
}

// TestRun runs the whole server as the binary does (flags parsed, probes,
// metrics, routing against the cluster) and stops it as SIGTERM would.
func TestRun(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	acct := createAccount(t, ns, "main")
	keyFile := filepath.Join(t.TempDir(), "key")
	g.Expect(os.WriteFile(keyFile, testKey, 0o600)).To(Succeed())
	listen, metricsAddr, probes := freeAddr(t), freeAddr(t), freeAddr(t)
	cfg, err := parseFlags(io.Discard, []string{
		"--public-url=" + testPublicURL, "--listen-address=" + listen, "--metrics-bind-address=" + metricsAddr,
		"--health-probe-bind-address=" + probes, "--namespaces=" + ns, "--stream-token-key-file=" + keyFile,
		"--credentials-secret=" + ns + "/" + credentialsSecretName,
		"--shutdown-grace-period=5s", "--stream-token-reload-interval=1s",
	})
	g.Expect(err).NotTo(HaveOccurred())

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, restCfg, testLog()) }()

	get := func(url string) (int, string) {
		resp, err := http.Get(url)
		if err != nil {
			return 0, err.Error()
		}
		defer func() { _ = resp.Body.Close() }()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	g.Eventually(func() int { c, _ := get("http://" + probes + "/readyz"); return c }, 30*time.Second).Should(Equal(http.StatusOK))
	code, _ := get("http://" + probes + "/healthz")
	g.Expect(code).To(Equal(http.StatusOK))

	h := &harness{t: t, addr: listen, client: &http.Client{Timeout: 10 * time.Second}}
	resp := h.post(EventsPath, map[string][]string{"AccountSid": {acct.sid}, "MessageSid": {"SM1"}}, acct.token)
	g.Expect(readStatus(t, resp)).To(Equal(http.StatusOK))

	code, body := get("http://" + metricsAddr + "/metrics")
	g.Expect(code).To(Equal(http.StatusOK))
	g.Expect(body).To(ContainSubstring(`twilio_webhook_requests_total{outcome="ok",route="events"} 1`))
	g.Expect(body).To(ContainSubstring("twilio_webhook_routed_numbers 0"))
	g.Expect(body).To(ContainSubstring("go_goroutines"))
	g.Expect(strings.Contains(body, acct.token)).To(BeFalse())

	// A rotation step written to the key file is picked up while running.
	writeAtomically(g, keyFile, "the-next-stream-token-key-0123456789abcdef\n"+string(testKey))
	g.Eventually(func() string { _, body := get("http://" + metricsAddr + "/metrics"); return body }, 30*time.Second).
		Should(ContainSubstring(`twilio_webhook_stream_token_key_reloads_total{outcome="reloaded"} 1`))

	stop()
	g.Eventually(done, 30*time.Second).Should(Receive(BeNil()))
}
