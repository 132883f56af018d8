package webhookserver

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
		"--public-url=" + testPublicURL, "--allow-reserved-public-url", "--listen-address=" + listen, "--metrics-bind-address=" + metricsAddr,
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

// httpGet returns the status code and body of a GET (0 and the error when
// it failed).
func httpGet(url string) (int, string) {
	resp, err := http.Get(url) // #nosec G107 -- a test server's URL
	if err != nil {
		return 0, err.Error()
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// readmeMetrics returns the twilio_webhook_* metric names README.md lists.
func readmeMetrics(t *testing.T) []string {
	t.Helper()
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	names := regexp.MustCompile(`twilio_webhook_[a-z_]+[a-z]`).FindAllString(string(readme), -1)
	slices.Sort(names)
	names = slices.Compact(names)
	if len(names) < 10 {
		t.Fatalf("README.md lists only %d twilio_webhook_* metrics: %v", len(names), names)
	}
	return names
}

// TestRunWaitsForStreamTokenSecret: a webhook server started before its
// stream-token Secret exists (the manager creates it on its first start) is
// live, not ready, and serves every metric README lists; once the Secret
// appears it loads the keys and becomes ready, without a restart.
func TestRunWaitsForStreamTokenSecret(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	acct := createAccount(t, ns, "main")
	listen, metricsAddr, probes := freeAddr(t), freeAddr(t), freeAddr(t)
	cfg, err := parseFlags(io.Discard, []string{
		"--public-url=" + testPublicURL, "--allow-reserved-public-url", "--listen-address=" + listen, "--metrics-bind-address=" + metricsAddr,
		"--health-probe-bind-address=" + probes, "--namespaces=" + ns, "--stream-token-secret=" + ns + "/stream-token",
		"--credentials-secret=" + ns + "/" + credentialsSecretName, "--shutdown-grace-period=5s",
	})
	g.Expect(err).NotTo(HaveOccurred())
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, restCfg, testLog()) }()

	g.Eventually(func() int { c, _ := httpGet("http://" + probes + "/healthz"); return c }, 30*time.Second).Should(Equal(http.StatusOK))
	g.Consistently(func() int { c, _ := httpGet("http://" + probes + "/readyz"); return c }, 2*time.Second, 200*time.Millisecond).
		Should(Equal(http.StatusServiceUnavailable), "not ready without the stream-token key")
	g.Expect(done).NotTo(Receive(), "still waiting, not exited")

	// Nothing has been served yet: every family README lists is there anyway.
	code, body := httpGet("http://" + metricsAddr + "/metrics")
	g.Expect(code).To(Equal(http.StatusOK))
	for _, name := range readmeMetrics(t) {
		g.Expect(body).To(ContainSubstring("# TYPE "+name+" "), "%s is on a fresh /metrics", name)
	}
	g.Expect(body).To(ContainSubstring(`twilio_webhook_stream_token_key_reloads_total{outcome="invalid"} 0`))
	g.Expect(body).To(ContainSubstring(`twilio_webhook_streams_total{outcome="agent_unreachable"} 0`))

	// The manager creates the Secret a moment later.
	g.Expect(k8s.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "stream-token"},
		Data:       map[string][]byte{StreamTokenSecretKey: testKey},
	})).To(Succeed())
	g.Eventually(func() int { c, _ := httpGet("http://" + probes + "/readyz"); return c }, 30*time.Second).Should(Equal(http.StatusOK))
	h := &harness{t: t, addr: listen, client: &http.Client{Timeout: 10 * time.Second}}
	resp := h.post(EventsPath, map[string][]string{"AccountSid": {acct.sid}, "MessageSid": {"SM1"}}, acct.token)
	g.Expect(readStatus(t, resp)).To(Equal(http.StatusOK))

	stop()
	g.Eventually(done, 30*time.Second).Should(Receive(BeNil()))
}

// TestRunStreamTokenKeyProblems: a missing key file, or a Secret that exists
// but holds no usable key, fails the start at once (a file is never waited
// for); a server waiting for its Secret stops when asked to.
func TestRunStreamTokenKeyProblems(t *testing.T) {
	ns := newNamespace(t)
	g := NewWithT(t)
	g.Expect(k8s.Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "short"},
		Data:       map[string][]byte{StreamTokenSecretKey: []byte("too-short")},
	})).To(Succeed())
	run := func(ctx context.Context, keyFlag string) chan error {
		cfg, err := parseFlags(io.Discard, []string{
			"--public-url=" + testPublicURL, "--allow-reserved-public-url", "--listen-address=" + freeAddr(t), "--metrics-bind-address=" + freeAddr(t),
			"--health-probe-bind-address=" + freeAddr(t), "--namespaces=" + ns, keyFlag,
			"--credentials-secret=" + ns + "/" + credentialsSecretName,
		})
		g.Expect(err).NotTo(HaveOccurred())
		done := make(chan error, 1)
		go func() { done <- Run(ctx, cfg, restCfg, testLog()) }()
		return done
	}
	for flag, want := range map[string]string{
		"--stream-token-key-file=" + filepath.Join(t.TempDir(), "missing"): "read stream token key file",
		"--stream-token-secret=" + ns + "/short":                           "need at least 32",
	} {
		var err error
		g.Eventually(run(context.Background(), flag), 10*time.Second).Should(Receive(&err), flag)
		g.Expect(err).To(MatchError(ContainSubstring(want)), flag)
	}

	ctx, stop := context.WithCancel(context.Background())
	done := run(ctx, "--stream-token-secret="+ns+"/not-yet")
	g.Consistently(done, 2*time.Second).ShouldNot(Receive())
	stop()
	var err error
	g.Eventually(done, 10*time.Second).Should(Receive(&err))
	g.Expect(err).To(MatchError(ContainSubstring("waiting for the stream token Secret " + ns + "/not-yet")))
}
