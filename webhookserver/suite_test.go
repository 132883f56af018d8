package webhookserver

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
	"github.com/loquent/twilio-voice-operator/internal/controlplane"
	"github.com/loquent/twilio-voice-operator/internal/credentials"
	"github.com/loquent/twilio-voice-operator/internal/egress"
)

// The suite runs the server against a real kube-apiserver and etcd
// (envtest): routing comes from real TwilioPhoneNumber, TwilioAccount and
// Secret objects through the real informers. Each test gets its own
// namespace, server, listener and metrics registry.

const (
	testPublicURL = "https://voice.example.test"
	testStreamURL = "wss://voice.example.test/twilio/stream"
)

var (
	k8s     client.Client
	restCfg *rest.Config
	// testKey is the stream token key every test server shares.
	testKey = []byte("0123456789abcdef0123456789abcdef-test-key")
	nsSeq   atomic.Int64
	sidSeq  atomic.Int64
)

func TestMain(m *testing.M) {
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	// Fuzzing (make fuzz) needs no API server: the fuzz targets run on
	// in-memory routes, and the fuzzing engine starts this binary once per
	// worker.
	flag.Parse()
	if f := flag.Lookup("test.fuzz"); f != nil && f.Value.String() != "" {
		return m.Run()
	}
	if f := flag.Lookup("test.fuzzworker"); f != nil && f.Value.String() == "true" {
		return m.Run()
	}
	env, cfg, err := controlplane.Start("..", true)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	restCfg = cfg
	logf.SetLogger(testLog())
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(twiliov1.AddToScheme(scheme))
	if k8s, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		fmt.Fprintln(os.Stderr, "client:", err)
		return 1
	}
	return m.Run()
}

func testLog() logr.Logger {
	if os.Getenv("TEST_VERBOSE") == "" {
		return logr.Discard()
	}
	return zap.New(zap.WriteTo(os.Stderr), zap.UseDevMode(true))
}

// newNamespace creates a namespace for one test.
func newNamespace(t testing.TB) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("wh-%d-%d", os.Getpid()%10000, nsSeq.Add(1))}}
	if err := k8s.Create(context.Background(), ns); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), ns) })
	return ns.Name
}

// newAccountSID returns a fresh valid account SID.
func newAccountSID() string {
	return fmt.Sprintf("AC%032x", sidSeq.Add(1))
}

// account is a TwilioAccount and its auth token as a test created them.
type account struct {
	name, sid, token string
}

// createAccount creates a credentials Secret and a TwilioAccount in ns, and
// publishes its token as the manager does once it verified the account
// (credentialsSecretName in ns, which startServer reads).
func createAccount(t testing.TB, ns, name string) account {
	t.Helper()
	a := account{name: name, sid: newAccountSID(), token: fmt.Sprintf("tok%sZ%d", strings.ToLower(name), sidSeq.Add(1))}
	ctx := context.Background()
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-creds"},
		Data:       map[string][]byte{"authToken": []byte(a.token), "apiKeySecret": []byte("not-for-the-webhook-server")},
	}
	if err := k8s.Create(ctx, sec); err != nil {
		t.Fatalf("create secret: %v", err)
	}
	acct := &twiliov1.TwilioAccount{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: twiliov1.TwilioAccountSpec{
			AccountSID:           a.sid,
			CredentialsSecretRef: twiliov1.SecretReference{Name: sec.Name},
		},
	}
	if err := k8s.Create(ctx, acct); err != nil {
		t.Fatalf("create account: %v", err)
	}
	publishAccount(t, ns, credentials.Account{Namespace: ns, Name: name, AccountSID: a.sid, AuthToken: a.token})
	return a
}

// credentialsSecretName is the published-credentials Secret in each test namespace.
const credentialsSecretName = "webhook-credentials"

// publishAccount adds (or replaces) an account in ns's published credentials,
// as the manager does after verifying it.
func publishAccount(t testing.TB, ns string, a credentials.Account) {
	t.Helper()
	editPublished(t, ns, func(p *credentials.Published) {
		out := p.Accounts[:0]
		for _, x := range p.Accounts {
			if x.Namespace != a.Namespace || x.Name != a.Name {
				out = append(out, x)
			}
		}
		p.Accounts = append(out, a)
	})
}

// editPublished changes ns's published credentials Secret, creating it.
func editPublished(t testing.TB, ns string, edit func(*credentials.Published)) {
	t.Helper()
	ctx := context.Background()
	key := types.NamespacedName{Namespace: ns, Name: credentialsSecretName}
	for range 10 {
		sec := &corev1.Secret{}
		err := k8s.Get(ctx, key, sec)
		if err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
		exists := err == nil
		p, err := credentials.Parse(sec.Data[credentials.Key])
		if err != nil {
			t.Fatal(err)
		}
		edit(&p)
		data, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		if !exists {
			sec = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: credentialsSecretName}, Data: map[string][]byte{credentials.Key: data}}
			err = k8s.Create(ctx, sec)
		} else {
			sec.Data = map[string][]byte{credentials.Key: data}
			err = k8s.Update(ctx, sec)
		}
		if err == nil {
			return
		}
		if !apierrors.IsConflict(err) && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	t.Fatal("publish credentials: too many conflicts")
}

// numberOpt adjusts a TwilioPhoneNumber before it is created.
type numberOpt func(*twiliov1.TwilioPhoneNumber)

func disabled() numberOpt {
	return func(n *twiliov1.TwilioPhoneNumber) { n.Spec.VoiceRouting = twiliov1.VoiceRoutingDisabled }
}

func recordingOff() numberOpt {
	return func(n *twiliov1.TwilioPhoneNumber) { off := false; n.Spec.Recording.Enabled = &off }
}

// createNumber creates a TwilioPhoneNumber for number in ns, routed to agentURL.
func createNumber(t testing.TB, ns, name, number, accountName, agentURL string, opts ...numberOpt) *twiliov1.TwilioPhoneNumber {
	t.Helper()
	n := &twiliov1.TwilioPhoneNumber{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: twiliov1.TwilioPhoneNumberSpec{
			AccountRef:  twiliov1.LocalObjectReference{Name: accountName},
			PhoneNumber: number,
		},
	}
	if agentURL != "" {
		n.Spec.Agent = &twiliov1.AgentSpec{URL: agentURL}
	}
	for _, o := range opts {
		o(n)
	}
	if err := k8s.Create(context.Background(), n); err != nil {
		t.Fatalf("create number: %v", err)
	}
	// The operator's part: it found the number in its account.
	n.Status.PhoneNumberSID = fmt.Sprintf("PN%032x", sidSeq.Add(1))
	if err := k8s.Status().Update(context.Background(), n); err != nil {
		t.Fatalf("write number status: %v", err)
	}
	return n
}

// harness is one running server, its routing and its metrics.
type harness struct {
	t        testing.TB
	ns       string
	addr     string // where the listener is (the public URL is elsewhere)
	srv      *Server
	routing  *Routing
	metrics  *Metrics
	stop     context.CancelFunc // ends Serve's context: SIGTERM
	done     chan struct{}      // closed when Serve returned
	serveErr error              // Serve's result, valid after done
	client   *http.Client
}

// routedNumber sets up the common case: a namespace with account "main", a
// test agent (stalling when asked) and the number "support" routed to it, and
// a server for the namespace.
func routedNumber(t testing.TB, number string, stallAgent bool, adjust ...func(*Options)) (string, account, *testAgent, *harness) {
	t.Helper()
	ns := newNamespace(t)
	acct := createAccount(t, ns, "main")
	agent := newTestAgent(t, stallAgent)
	createNumber(t, ns, "support", number, "main", agent.url)
	return ns, acct, agent, startServer(t, ns, adjust...)
}

// startServer runs a server for ns on a loopback listener, with public URL
// testPublicURL, and waits until its routing table has synced.
func startServer(t testing.TB, ns string, adjust ...func(*Options)) *harness {
	t.Helper()
	metrics, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	routing, err := NewRouting(restCfg, RoutingOptions{Namespaces: []string{ns}, Log: testLog(), Metrics: metrics,
		CredentialsSecret: types.NamespacedName{Namespace: ns, Name: credentialsSecretName}})
	if err != nil {
		t.Fatal(err)
	}
	// Test agents run on 127.0.0.1: allowed as with --allow-loopback-agents
	// (TestAgentDestinationRefused runs without it).
	agentEgress, err := egress.New(egress.Options{AllowLoopback: true})
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{
		PublicURL:           testPublicURL,
		Routes:              routing,
		TokenKeys:           [][]byte{testKey},
		AgentEgress:         agentEgress,
		ShutdownGracePeriod: time.Minute,
		Metrics:             metrics,
		Log:                 testLog(),
		// Tests send many refused requests from one address: no throttling
		// unless a test turns it on (TestSignatureFailuresThrottled).
		Limits: Limits{CloseTimeout: 2 * time.Second, SignatureFailureBurst: -1},
	}
	for _, a := range adjust {
		a(&opts)
	}
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	routingCtx, stopRouting := context.WithCancel(context.Background())
	routingDone := make(chan error, 1)
	go func() { routingDone <- routing.Start(routingCtx) }()
	serveCtx, stop := context.WithCancel(context.Background())
	h := &harness{
		t: t, ns: ns, addr: ln.Addr().String(), srv: srv, routing: routing, metrics: metrics,
		stop: stop, done: make(chan struct{}),
		client: &http.Client{Timeout: 30 * time.Second},
	}
	go func() {
		defer close(h.done)
		h.serveErr = srv.Serve(serveCtx, ln)
	}()
	t.Cleanup(func() {
		stop()
		<-h.done
		if h.serveErr != nil {
			t.Errorf("serve: %v", h.serveErr)
		}
		stopRouting()
		if err := <-routingDone; err != nil {
			t.Errorf("routing: %v", err)
		}
		h.client.CloseIdleConnections()
	})
	NewWithT(t).Eventually(routing.Synced, 30*time.Second, 10*time.Millisecond).Should(BeTrue(), "routing synced")
	return h
}

// sign computes X-Twilio-Signature independently of twilio-go:
// base64(HMAC-SHA1(token, url + concatenation of key+value sorted by key)).
// TestSignerMatchesTwilioValidator checks it against twilio-go, so a bug
// cannot hide in both the server and the tests.
func sign(token, fullURL string, params url.Values) string {
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(fullURL)
	for _, k := range keys {
		b.WriteString(k)
		b.WriteString(params.Get(k))
	}
	m := hmac.New(sha1.New, []byte(token))
	m.Write([]byte(b.String()))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// post sends a form POST to path, signed with token over the public URL.
// An empty token sends no signature.
func (h *harness) post(path string, form url.Values, token string) *http.Response {
	h.t.Helper()
	sig := ""
	if token != "" {
		sig = sign(token, testPublicURL+path, form)
	}
	return h.postSigned(path, form, sig)
}

// postSigned sends a form POST to path with the given signature header.
func (h *harness) postSigned(path string, form url.Values, sig string) *http.Response {
	h.t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+h.addr+path, strings.NewReader(form.Encode()))
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if sig != "" {
		req.Header.Set(signatureHeader, sig)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	return resp
}

// readBody reads and closes a response body.
func readBody(t testing.TB, resp *http.Response) string {
	t.Helper()
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// voiceForm is the inbound call webhook Twilio sends.
func voiceForm(accountSID, callSID, from, to string) url.Values {
	return url.Values{
		"AccountSid": {accountSID}, "CallSid": {callSID}, "From": {from}, "To": {to},
		"CallStatus": {"ringing"}, "Direction": {"inbound"}, "ApiVersion": {"2010-04-01"},
	}
}

var callSeq atomic.Int64

func newCallSID() string { return fmt.Sprintf("CA%032x", callSeq.Add(1)) }

// counterValue reads a counter or gauge.
func counterValue(c prometheus.Collector) float64 {
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	m := &dto.Metric{}
	_ = (<-ch).Write(m)
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	if m.Gauge != nil {
		return m.Gauge.GetValue()
	}
	if m.Histogram != nil {
		return float64(m.Histogram.GetSampleCount())
	}
	return 0
}
